"""The proxy a client sends through: worked out once, at construction.

``proxy=`` wins; else, with ``trust_env``, ``HTTP_PROXY``/``HTTPS_PROXY`` for the base URL's
scheme unless ``NO_PROXY`` names its host, read by the standard library as requests and
httpx do. Never aiohttp's own ``trust_env``: it reads ``~/.netrc`` (credentials we do not
want sent) and looks the proxy up in a thread on every request.

The proxy's user and password are split off before aiohttp sees the URL (aiohttp quotes
the proxy URL in its error messages, and ours quote those) into the ``Proxy-Authorization``
value the transport sends: aiohttp's ``BasicAuth``/``proxy_auth`` is deprecated from 3.14.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable

import attrs
from yarl import URL

_SCHEMES = ("http", "https")
# The standard library's NO_PROXY test (undocumented there, so not in typeshed), the one
# urllib applies to getproxies_environment()'s answer.
_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


@attrs.frozen
class Proxy:
    """A proxy URL without credentials, and the ``Proxy-Authorization`` value its
    credentials make (``Basic <base64 of user:password>``), which never shows in a repr."""

    url: URL
    authorization: str | None = attrs.field(default=None, repr=False)


def resolve_proxy(proxy: object, trust_env: object, target: URL) -> Proxy | None:
    """The proxy for requests to ``target``'s origin, or None to connect directly."""
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be a bool, got {type(trust_env).__name__}")
    if proxy is not None:
        if not isinstance(proxy, str):
            raise TypeError(f"proxy must be a str URL, got {type(proxy).__name__}")
        return _parse(proxy, "proxy")
    if not trust_env:
        return None
    proxies = urllib.request.getproxies_environment()
    raw = proxies.get(target.scheme)
    if not raw or _bypassed(target, proxies):
        return None
    scheme = target.scheme
    return _parse(raw, f"the {scheme}_proxy ({scheme.upper()}_PROXY) environment variable")


def _bypassed(target: URL, proxies: dict[str, str]) -> bool:
    """Does ``NO_PROXY`` name the target's host (with or without its port)?"""
    host = target.raw_host or ""
    bracketed = f"[{host}]" if ":" in host else host
    return _proxy_bypass(f"{bracketed}:{target.port}", proxies) or _proxy_bypass(host, proxies)


def _parse(raw: str, source: str) -> Proxy:
    """``raw`` as a proxy (``http://`` assumed without a scheme, as curl and httpx do).

    Errors name ``source``, never the value: it may hold a password.
    """
    text = raw.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        url = URL(text)
        valid = url.scheme in _SCHEMES and bool(url.host) and url.port is not None
    except ValueError:  # yarl parses lazily; a bad port or IDNA name fails here
        valid = False
    if not valid:
        raise ValueError(
            f"{source} must be an http:// or https:// proxy URL "
            "(like http://proxy.example:3128); its value is not"
        )
    if url.user is None and url.password is None:
        return Proxy(url.origin())
    user, password = url.user or "", url.password or ""
    if ":" in user:  # Basic auth cannot carry it (RFC 7617)
        raise ValueError(f"{source}: the proxy's user name must not contain ':'")
    pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return Proxy(url.origin(), f"Basic {pair}")
