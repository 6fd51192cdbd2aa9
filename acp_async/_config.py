"""Client configuration: resolved once from arguments and environment, then frozen."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._environment import (
    API_KEY_ENV,
    BASE_URL_ENV,
    PLATFORM_URL_ENV,
    RUNTIME_TOKEN_ENV,
    SERVER_ID_ENV,
    Runtime,
    from_env,
    runtime_description,
    value_from_env,
)
from ._proxy import resolve_proxy
from ._validate import int_at_least, path_segment, positive_seconds
from ._version import __version__

DEFAULT_BASE_URL = "https://api.computer-agents.com"
ORGANIZATION_HEADER = "X-Computer-Agents-Organization"
RUNTIME_TOKEN_HEADER = "X-Computer-Agents-Runtime-Token"
# The platform's own runtime client sends the token under both names.
RUNTIME_TOKEN_HEADERS = (RUNTIME_TOKEN_HEADER, "X-Testbase-Runtime-Token")
_AUTH_HEADERS = ("Authorization", *RUNTIME_TOKEN_HEADERS)
USER_AGENT = f"acp-async/{__version__}"


class MissingCredentialsError(ValueError):
    """Neither an API key nor a runtime token was given or found in the environment.

    A ``ValueError`` like every bad option (raised by ``ACPClient(...)``, before any
    request); its own class so a program can give its users its own advice, as the
    command line gives a shell user shell advice instead of Python advice::

        try:
            client = ACPClient()
        except acp_async.MissingCredentialsError:
            sys.exit("set ACP_API_KEY (or COMPUTER_AGENTS_API_KEY) first")
    """


def normalize_base_url(raw: str, source: str = "base_url", *, echo: bool = True) -> URL:
    """Make ``raw`` end in ``/v1``, like the official SDK, keeping any path prefix.

    Errors name ``source`` (the argument, or the variable it came from) and quote ``raw``
    unless ``echo`` is false.
    """
    got = f", got {raw!r}" if echo else ""
    try:
        url = URL(raw.strip())
        absolute = url.scheme in ("http", "https") and bool(url.host) and url.port is not None
    except ValueError as exc:  # yarl parses lazily; UnicodeError is a ValueError too
        raise ValueError(f"{source} is not a valid URL ({exc}){got}") from None
    if not absolute:
        raise ValueError(f"{source} must be an absolute http(s) URL{got}")
    if url.user is not None or url.password is not None:
        # aiohttp refuses them beside our Authorization header, and they would show in
        # every repr and error message.
        raise ValueError(f"{source} must not carry user:password; the API key authenticates")
    if url.query_string or url.fragment:
        raise ValueError(f"{source} must not carry a query or fragment{got}")
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


def _credentials(api_key: str | None, runtime_token: str | None) -> tuple[str | None, str | None]:
    """(api key, runtime token), exactly one set: an argument beats the environment, and an
    API key found there beats a runtime token found there."""
    if api_key is not None and runtime_token is not None:
        raise ValueError("pass api_key or runtime_token, not both")
    if api_key is None and runtime_token is None:
        api_key = value_from_env(API_KEY_ENV)
        if api_key is None:
            runtime_token = value_from_env(RUNTIME_TOKEN_ENV)
    if not api_key and not runtime_token:
        raise MissingCredentialsError(
            "no API key: pass ACPClient(api_key=...) or set the ACP_API_KEY "
            "(or COMPUTER_AGENTS_API_KEY) environment variable; code running inside an ACP "
            "resource may pass runtime_token=... or set COMPUTER_AGENTS_RUNTIME_TOKEN instead"
        )
    if api_key is not None:
        return _header_value("api_key", api_key), None
    return None, _header_value("runtime_token", runtime_token)


def _base_url(base_url: str | None, runtime_mode: bool, runtime: Runtime | None) -> URL:
    """The argument, ``ACP_BASE_URL``, ``COMPUTER_AGENTS_BASE_URL``, ``COMPUTER_AGENTS_API_URL``;
    in runtime mode then the platform's URL variables and the runtime JSON's
    ``platform.apiBaseUrl``; then the default host."""
    if base_url:
        return normalize_base_url(base_url)
    found = from_env(BASE_URL_ENV + PLATFORM_URL_ENV if runtime_mode else BASE_URL_ENV)
    if found is not None:
        name, value = found
        return normalize_base_url(value, f"base_url (from {name})")
    if runtime_mode and runtime is not None and runtime.api_base_url is not None:
        source = f"base_url (platform.apiBaseUrl of {runtime.source})"
        return normalize_base_url(runtime.api_base_url, source, echo=False)
    return normalize_base_url(DEFAULT_BASE_URL)


def _server_id(server_id: object, runtime: Runtime | None) -> str | None:
    """``server_id=``, ``COMPUTER_AGENTS_SERVER_ID``, ``TESTBASE_SERVER_ID``, then the runtime
    JSON's ``server.id``; checked like any server id, the error naming where it came from."""
    if server_id is not None:
        path_segment(server_id)  # TypeError for a wrong type, ValueError for a bad id
        return server_id  # type: ignore[return-value]
    found = from_env(SERVER_ID_ENV)
    if found is None and runtime is not None and runtime.server_id is not None:
        found = (f"server.id of {runtime.source}", runtime.server_id)
    if found is None:
        return None
    source, value = found
    try:
        path_segment(value)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return value


def _headers(
    base: Mapping[str, str], default_headers: Mapping[str, str] | None
) -> CIMultiDict[str]:
    """``base`` with ``default_headers`` merged over it; a token header is refused, so the
    caller's cannot ride along beside ours (case-insensitively)."""
    headers = CIMultiDict(base)
    if default_headers is not None and not isinstance(default_headers, Mapping):
        raise TypeError(f"default_headers must be a mapping, got {type(default_headers).__name__}")
    for raw_name, value in (default_headers or {}).items():
        name = _header_value("default_headers key", raw_name)
        if name.lower() in (h.lower() for h in _AUTH_HEADERS):
            raise ValueError(
                f"default_headers must not set {name}: pass the token as "
                "api_key= or runtime_token= (it is then kept out of reprs and logs)"
            )
        headers[name] = _header_value(name, value)
    return headers


# We inflate bodies ourselves (see _response), so we name what we can inflate.
_BASE_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
}


@attrs.frozen
class ClientConfig:
    """A client's resolved settings, frozen: ``client.config``.

    Attributes:
        api_key: the API key, sent as ``Authorization: Bearer``; None with a runtime token.
        runtime_token: the runtime token of code inside an ACP resource, sent as
            ``X-Computer-Agents-Runtime-Token`` and ``X-Testbase-Runtime-Token``; None
            with an API key. Exactly one of the two is set; neither shows in ``repr``.
        base_url: the API's base URL, ending in ``/v1`` (a ``yarl.URL``).
        organization_id: sent as ``X-Computer-Agents-Organization`` when set.
        server_id: the default server id of ``runs.list``/``iter``/``pages``, or None.
        timeout: seconds one attempt may take (connect, wait and read).
        connect_timeout: seconds to open a connection.
        max_retries: retries after the first attempt (0: none).
        max_connections: the connection pool's size.
        max_response_bytes: the largest body read, in bytes, after decompression.
        proxy: the proxy requests go through, without its credentials, or None.
        proxy_authorization: the ``Proxy-Authorization`` value the proxy's credentials
            make (not in ``repr``), or None.
        trust_env: whether ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` were consulted.
        headers: every header sent with each request (the token's included; not in
            ``repr``).
    """

    api_key: str | None = attrs.field(repr=False)
    runtime_token: str | None = attrs.field(repr=False)
    base_url: URL
    organization_id: str | None
    server_id: str | None
    timeout: float
    connect_timeout: float
    max_retries: int
    max_connections: int
    max_response_bytes: int
    proxy: URL | None
    trust_env: bool
    headers: CIMultiDictProxy[str] = attrs.field(repr=False)
    # The proxy's user and password, encoded: a secret like the token.
    proxy_authorization: str | None = attrs.field(default=None, repr=False)

    @property
    def secret(self) -> str:
        """The token this client authenticates with, whichever kind it is."""
        return self.api_key or self.runtime_token or ""

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        *,
        runtime_token: str | None,
        base_url: str | None,
        organization_id: str | None,
        server_id: str | None,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        max_connections: int,
        default_headers: Mapping[str, str] | None,
        max_response_bytes: int,
        proxy: str | None,
        trust_env: bool,
    ) -> ClientConfig:
        """The configuration of ``ACPClient(...)``: its arguments (api_key, runtime_token,
        base_url, organization_id, server_id, timeout, connect_timeout, max_retries,
        max_connections, default_headers, max_response_bytes, proxy, trust_env; see
        ``help(ACPClient)``), then the environment, then the defaults; checked.

        Raises ``ValueError`` or ``TypeError`` as ``ACPClient`` documents."""
        key, runtime_token = _credentials(api_key, runtime_token)
        runtime = runtime_description()  # in any mode: its server.id counts with a key too
        url = _base_url(base_url, key is None, runtime)
        headers = _headers(_BASE_HEADERS, default_headers)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            for name in RUNTIME_TOKEN_HEADERS:
                headers[name] = runtime_token or ""
        if organization_id:
            headers[ORGANIZATION_HEADER] = _header_value("organization_id", organization_id)
        through = resolve_proxy(proxy, trust_env, url)
        return cls(
            api_key=key,
            runtime_token=runtime_token,
            base_url=url,
            organization_id=organization_id,
            server_id=_server_id(server_id, runtime),
            timeout=positive_seconds("timeout", timeout),
            connect_timeout=positive_seconds("connect_timeout", connect_timeout),
            max_retries=int_at_least("max_retries", max_retries, 0),
            max_connections=int_at_least("max_connections", max_connections, 1),
            max_response_bytes=int_at_least("max_response_bytes", max_response_bytes, 1),
            proxy=None if through is None else through.url,
            trust_env=trust_env,
            headers=CIMultiDictProxy(headers),
            proxy_authorization=None if through is None else through.authorization,
        )

    def with_options(
        self,
        *,
        timeout: float | None,
        max_retries: int | None,
        default_headers: Mapping[str, str] | None,
    ) -> ClientConfig:
        """This configuration with ``timeout``, ``max_retries`` and ``default_headers``
        changed as ``ACPClient.with_options`` documents (None keeps one as it is), checked
        as at construction; ``default_headers`` are merged over the current headers."""
        return attrs.evolve(
            self,
            timeout=self.timeout if timeout is None else positive_seconds("timeout", timeout),
            max_retries=(
                self.max_retries
                if max_retries is None
                else int_at_least("max_retries", max_retries, 0)
            ),
            headers=CIMultiDictProxy(_headers(self.headers, default_headers)),
        )
