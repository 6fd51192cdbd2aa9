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
RUNTIME_TOKEN_ENV = ("COMPUTER_AGENTS_RUNTIME_TOKEN",)
# The official SDK reads both of its own names, in this order.
BASE_URL_ENV = ("ACP_BASE_URL", "COMPUTER_AGENTS_BASE_URL", "COMPUTER_AGENTS_API_URL")
# Where the platform tells code inside a resource to call it (runtime authorization only).
PLATFORM_URL_ENV = ("COMPUTER_AGENTS_PLATFORM_API_URL",)
ORGANIZATION_HEADER = "X-Computer-Agents-Organization"
RUNTIME_TOKEN_HEADER = "X-Computer-Agents-Runtime-Token"
_AUTH_HEADERS = ("Authorization", RUNTIME_TOKEN_HEADER)
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


def _credentials(api_key: str | None, runtime_token: str | None) -> tuple[str | None, str | None]:
    """(api key, runtime token), exactly one set: an argument beats the environment, and an
    API key found there beats a runtime token found there."""
    if api_key is not None and runtime_token is not None:
        raise ValueError("pass api_key or runtime_token, not both")
    if api_key is None and runtime_token is None:
        api_key = _from_env(API_KEY_ENV)
        if api_key is None:
            runtime_token = _from_env(RUNTIME_TOKEN_ENV)
    if not api_key and not runtime_token:
        raise ValueError(
            "no API key: pass ACPClient(api_key=...) or set the ACP_API_KEY "
            "(or COMPUTER_AGENTS_API_KEY) environment variable; code running inside an ACP "
            "resource may pass runtime_token=... or set COMPUTER_AGENTS_RUNTIME_TOKEN instead"
        )
    if api_key is not None:
        return _header_value("api_key", api_key), None
    return None, _header_value("runtime_token", runtime_token)


@attrs.frozen
class ClientConfig:
    """Everything a client needs to send requests; the token never shows in ``repr``.

    Exactly one of ``api_key`` (sent as ``Authorization: Bearer``) and ``runtime_token``
    (sent as ``X-Computer-Agents-Runtime-Token``, for code inside an ACP resource) is set.
    """

    api_key: str | None = attrs.field(repr=False)
    runtime_token: str | None = attrs.field(repr=False)
    base_url: URL
    organization_id: str | None
    timeout: float
    connect_timeout: float
    max_retries: int
    max_connections: int
    max_response_bytes: int
    headers: CIMultiDictProxy[str] = attrs.field(repr=False)

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
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        max_connections: int,
        default_headers: Mapping[str, str] | None,
        max_response_bytes: int,
    ) -> ClientConfig:
        """Apply argument > ``ACP_*`` > ``COMPUTER_AGENTS_*`` > default, and validate."""
        key, runtime = _credentials(api_key, runtime_token)
        url_env = BASE_URL_ENV if key else BASE_URL_ENV + PLATFORM_URL_ENV
        url = normalize_base_url(base_url or _from_env(url_env) or DEFAULT_BASE_URL)
        # Case-insensitive, so a caller's "authorization" cannot ride along beside ours.
        headers = CIMultiDict(
            # We inflate bodies ourselves (see _response), so we name what we can inflate.
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        for raw_name, value in (default_headers or {}).items():
            name = _header_value("default_headers key", raw_name)
            if name.lower() in (h.lower() for h in _AUTH_HEADERS):
                raise ValueError(
                    f"default_headers must not set {name}: pass the token as "
                    "api_key= or runtime_token= (it is then kept out of reprs and logs)"
                )
            headers[name] = _header_value(name, value)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers[RUNTIME_TOKEN_HEADER] = runtime or ""
        if organization_id:
            headers[ORGANIZATION_HEADER] = _header_value("organization_id", organization_id)
        return cls(
            api_key=key,
            runtime_token=runtime,
            base_url=url,
            organization_id=organization_id,
            timeout=positive_seconds("timeout", timeout),
            connect_timeout=positive_seconds("connect_timeout", connect_timeout),
            max_retries=int_at_least("max_retries", max_retries, 0),
            max_connections=int_at_least("max_connections", max_connections, 1),
            max_response_bytes=int_at_least("max_response_bytes", max_response_bytes, 1),
            headers=CIMultiDictProxy(headers),
        )
