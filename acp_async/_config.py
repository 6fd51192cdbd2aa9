"""Client configuration: resolved once from arguments and environment, then frozen."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._validate import int_at_least, positive_seconds
from ._version import __version__

DEFAULT_BASE_URL = "https://api.computer-agents.com"
API_KEY_ENV = ("ACP_API_KEY", "COMPUTER_AGENTS_API_KEY")
BASE_URL_ENV = ("ACP_BASE_URL", "COMPUTER_AGENTS_BASE_URL")
ORGANIZATION_HEADER = "X-Computer-Agents-Organization"
USER_AGENT = f"acp-async/{__version__}"


def _from_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def normalize_base_url(raw: str) -> URL:
    """Make ``raw`` end in ``/v1``, like the official SDK, keeping any path prefix."""
    try:
        url = URL(raw.strip())
        absolute = url.scheme in ("http", "https") and bool(url.host) and url.port is not None
    except ValueError as exc:  # yarl parses lazily; UnicodeError is a ValueError too
        raise ValueError(f"base_url is not a valid URL ({exc}), got {raw!r}") from None
    if not absolute:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {raw!r}")
    if url.user is not None or url.password is not None:
        # aiohttp refuses them beside our Authorization header, and they would show in
        # every repr and error message.
        raise ValueError("base_url must not carry user:password; the API key authenticates")
    if url.query_string or url.fragment:
        raise ValueError(f"base_url must not carry a query or fragment, got {raw!r}")
    path = url.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return url.with_path(path)


class InsecureTransportWarning(UserWarning):
    """The client sends its bearer token over plain ``http://`` to a non-loopback host.

    A warning, not an ``ACPError``: nothing failed. Filter it with ``warnings`` if the
    network really is private (say a service mesh that encrypts for you).
    """


def is_cleartext_remote(url: URL) -> bool:
    """True when ``url`` is plain ``http://`` to a host other than loopback (the token is
    readable on the wire); ``localhost``, ``*.localhost``, 127.0.0.0/8 and ::1 are loopback."""
    if url.scheme != "http" or not url.host:
        return False
    host = url.host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a DNS name: it could resolve anywhere


def _header_value(name: str, value: object) -> str:
    """Checked now: aiohttp would only refuse it on every request, with a bare error."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{name} must be a single line")
    return value


@attrs.frozen
class ClientConfig:
    """Everything a client needs to send requests; the token never shows in ``repr``."""

    api_key: str = attrs.field(repr=False)
    base_url: URL
    organization_id: str | None
    timeout: float
    connect_timeout: float
    max_retries: int
    max_connections: int
    max_response_bytes: int
    headers: CIMultiDictProxy[str] = attrs.field(repr=False)

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        *,
        base_url: str | None,
        organization_id: str | None,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        max_connections: int,
        default_headers: Mapping[str, str] | None,
        max_response_bytes: int,
    ) -> ClientConfig:
        """Apply argument > ``ACP_*`` > ``COMPUTER_AGENTS_*`` > default, and validate."""
        key = api_key if api_key is not None else _from_env(API_KEY_ENV)
        if not key:
            raise ValueError(
                "no API key: pass ACPClient(api_key=...) or set the ACP_API_KEY "
                "(or COMPUTER_AGENTS_API_KEY) environment variable"
            )
        _header_value("api_key", key)
        url = normalize_base_url(base_url or _from_env(BASE_URL_ENV) or DEFAULT_BASE_URL)
        # Case-insensitive, so a caller's "authorization" cannot ride along beside ours.
        headers = CIMultiDict(
            # We inflate bodies ourselves (see _body), so we name what we can inflate.
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        for name, value in (default_headers or {}).items():
            headers[_header_value("default_headers key", name)] = _header_value(name, value)
        headers["Authorization"] = f"Bearer {key}"
        if organization_id:
            headers[ORGANIZATION_HEADER] = _header_value("organization_id", organization_id)
        return cls(
            api_key=key,
            base_url=url,
            organization_id=organization_id,
            timeout=positive_seconds("timeout", timeout),
            connect_timeout=positive_seconds("connect_timeout", connect_timeout),
            max_retries=int_at_least("max_retries", max_retries, 0),
            max_connections=int_at_least("max_connections", max_connections, 1),
            max_response_bytes=int_at_least("max_response_bytes", max_response_bytes, 1),
            headers=CIMultiDictProxy(headers),
        )
