"""Where ``fleet ...`` finds Redis: its options, each also an ``ACP_REDIS_*`` variable.

``--redis URL`` (``ACP_REDIS_URL``), ``--redis-cluster`` (``ACP_REDIS_CLUSTER=1``),
``--redis-sentinel HOST:PORT[,...]`` (``ACP_REDIS_SENTINEL``) with ``--redis-master NAME``
(``ACP_REDIS_MASTER``), and ``--redis-ca FILE`` (``ACP_REDIS_CA``). An option on the
command line wins over its variable. Checked before anything connects; the client is
made by the fleet package (``fleet._connection``) and closed by the command.

Credentials come from the environment only, never from a flag (argv is visible to every
user of the host): ``ACP_REDIS_USERNAME`` and ``ACP_REDIS_PASSWORD`` for Redis (the URL's
server or Cluster, or the master the sentinels name), ``ACP_REDIS_SENTINEL_USERNAME`` and
``ACP_REDIS_SENTINEL_PASSWORD`` for the sentinels, which have passwords of their own. A
URL that holds a user or password as well is a usage error: one of the two would be
silently ignored.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import attrs

from ._parser import UsageError

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ("Credentials", "RedisTarget", "add_options", "resolve")

URL_ENV = "ACP_REDIS_URL"
CLUSTER_ENV = "ACP_REDIS_CLUSTER"
SENTINEL_ENV = "ACP_REDIS_SENTINEL"
MASTER_ENV = "ACP_REDIS_MASTER"
CA_ENV = "ACP_REDIS_CA"
USERNAME_ENV = "ACP_REDIS_USERNAME"
PASSWORD_ENV = "ACP_REDIS_PASSWORD"
SENTINEL_USERNAME_ENV = "ACP_REDIS_SENTINEL_USERNAME"
SENTINEL_PASSWORD_ENV = "ACP_REDIS_SENTINEL_PASSWORD"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        metavar="URL",
        help=f"the Redis URL, redis://, rediss:// or unix:// (default: ${URL_ENV}); a "
        f"password goes in ${PASSWORD_ENV} (and a user in ${USERNAME_ENV}) or in a URL in "
        f"${URL_ENV}, not here: argv shows in the process list",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help=f"the URL names a node of a Redis Cluster (default: ${CLUSTER_ENV}=1)",
    )
    parser.add_argument(
        "--redis-sentinel",
        metavar="HOST:PORT[,HOST:PORT...]",
        help="reach Redis through these sentinels instead of a URL (default: "
        f"${SENTINEL_ENV}); the master's password from ${PASSWORD_ENV} (user: "
        f"${USERNAME_ENV}), the sentinels' own from ${SENTINEL_PASSWORD_ENV} (user: "
        f"${SENTINEL_USERNAME_ENV})",
    )
    parser.add_argument(
        "--redis-master",
        metavar="NAME",
        help=f"the master's name the sentinels know (default: ${MASTER_ENV})",
    )
    parser.add_argument(
        "--redis-ca",
        metavar="FILE",
        help="a CA certificate (PEM) to trust for TLS: with a rediss:// URL, or with "
        f"--redis-sentinel (TLS to the sentinels and the master) (default: ${CA_ENV})",
    )


@attrs.frozen
class Credentials:
    """A user and a password, either of them None (not given); never in a repr."""

    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)

    def pair(self) -> tuple[str | None, str | None]:
        return self.username, self.password


@attrs.frozen
class RedisTarget:
    """The Redis a command was told to use, checked. ``url`` is ``repr=False``: it may
    hold a password."""

    url: str | None = attrs.field(repr=False)
    cluster: bool
    sentinels: tuple[tuple[str, int], ...]
    master: str | None
    ca: str | None
    credentials: Credentials = Credentials()  # Redis's (the master's, with sentinels)
    sentinel_credentials: Credentials = Credentials()

    def secrets(self) -> tuple[str, ...]:
        """Every password given for Redis (the URL's as written and decoded, and those of
        the variables), for the CLI to blank in whatever it prints."""
        in_url = urlsplit(self.url or "").password or ""
        given = (
            in_url,
            unquote(in_url),
            self.credentials.password,
            self.sentinel_credentials.password,
        )
        return tuple(secret for secret in given if secret)

    def client(self, timeout: float) -> Redis | RedisCluster:
        """A client of the command's own (it closes it): the fleet borrows it."""
        from ..fleet import _connection  # noqa: PLC0415 - the optional extra

        if self.sentinels:
            assert self.master is not None
            return _connection.from_sentinels(
                self.sentinels,
                self.master,
                timeout=timeout,
                ca=self.ca,
                credentials=self.credentials.pair(),
                sentinel_credentials=self.sentinel_credentials.pair(),
            )
        assert self.url is not None
        try:
            return _connection.from_url(
                self.url,
                cluster=self.cluster,
                timeout=timeout,
                ca=self.ca,
                username=self.credentials.username,
                password=self.credentials.password,
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None


def _setting(args: argparse.Namespace, option: str, env: str) -> str | None:
    value = getattr(args, option)
    return value if value is not None else os.environ.get(env) or None


def resolve(args: argparse.Namespace) -> RedisTarget:
    """The command's Redis from its options and ``ACP_REDIS_*``; a usage error for a
    missing, conflicting or malformed one, before anything connects."""
    url = _setting(args, "redis", URL_ENV)
    sentinel = _setting(args, "redis_sentinel", SENTINEL_ENV)
    master = _setting(args, "redis_master", MASTER_ENV)
    ca = _setting(args, "redis_ca", CA_ENV)
    cluster = args.redis_cluster or _flag(os.environ.get(CLUSTER_ENV, ""), CLUSTER_ENV)
    if url and sentinel:
        raise UsageError(
            f"give a Redis URL (--redis or ${URL_ENV}) or sentinels (--redis-sentinel or "
            f"${SENTINEL_ENV}), not both"
        )
    if not (url or sentinel):
        raise UsageError(
            f"no Redis: give --redis URL (or set {URL_ENV}), or --redis-sentinel "
            "HOST:PORT --redis-master NAME"
        )
    if master and not sentinel:
        raise UsageError("--redis-master names a master the sentinels know: give --redis-sentinel")
    if sentinel and not master:
        raise UsageError(f"--redis-sentinel needs --redis-master NAME (or ${MASTER_ENV})")
    if sentinel and cluster:
        raise UsageError("a Redis Cluster has no sentinels: give --redis-cluster with --redis")
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"--redis-ca: no such file: {ca}")
    if url:
        from ..fleet import _connection  # noqa: PLC0415 - the optional extra

        try:
            _connection.check_url(url, cluster=cluster, ca=ca)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    sentinels = _sentinels(sentinel) if sentinel else ()
    credentials = _credentials(url)
    sentinel_credentials = Credentials(
        os.environ.get(SENTINEL_USERNAME_ENV) or None,
        os.environ.get(SENTINEL_PASSWORD_ENV) or None,
    )
    if sentinel_credentials != Credentials() and not sentinel:
        raise UsageError(
            f"${SENTINEL_USERNAME_ENV} and ${SENTINEL_PASSWORD_ENV} are for sentinels: give "
            f"--redis-sentinel (or unset them; Redis's own password is ${PASSWORD_ENV})"
        )
    return RedisTarget(
        url=url,
        cluster=cluster,
        sentinels=sentinels,
        master=master,
        ca=ca,
        credentials=credentials,
        sentinel_credentials=sentinel_credentials,
    )


def _credentials(url: str | None) -> Credentials:
    """``ACP_REDIS_USERNAME`` and ``ACP_REDIS_PASSWORD``; a usage error where the URL
    holds the same one too (which would win is not obvious, and one would be ignored).
    Neither value is ever quoted."""
    found = Credentials(os.environ.get(USERNAME_ENV) or None, os.environ.get(PASSWORD_ENV) or None)
    parts = urlsplit(url or "")
    if found.username is not None and parts.username:
        raise UsageError(_twice("user", USERNAME_ENV))
    if found.password is not None and parts.password:
        raise UsageError(_twice("password", PASSWORD_ENV))
    return found


def _twice(what: str, env: str) -> str:
    return (
        f"the Redis URL holds a {what} and ${env} is set: give the {what} in one place "
        "(the variable keeps it out of the URL)"
    )


def _flag(value: str, env: str) -> bool:
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise UsageError(f"${env} must be 1 or 0 (true or false), not {value!r}")


def _sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``HOST:PORT[,HOST:PORT...]`` (an IPv6 host in brackets) as (host, port) pairs."""
    found = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"--redis-sentinel takes HOST:PORT[,HOST:PORT...], not {item!r}")
        found.append((host, int(port)))
    return tuple(found)
