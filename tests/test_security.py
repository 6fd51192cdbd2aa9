"""Security: the token stays secret and home, ids stay in their segment, sizes are capped."""

from __future__ import annotations

import warnings

import pytest

from acp_async import ACPClient, ACPError, InsecureTransportWarning


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.example.com",
        "http://10.0.0.7:8080/acp",
        "http://[2001:db8::1]",
        "http://localhost.evil.com",
    ],
)
def test_plain_http_to_a_remote_host_warns_once(base_url: str) -> None:
    """http:// to a non-loopback host warns once, at construction, pointing at the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = ACPClient("secret-token", base_url=base_url)
        assert client.config.base_url.scheme == "http"
    insecure = [w for w in caught if issubclass(w.category, InsecureTransportWarning)]
    assert len(insecure) == 1
    assert insecure[0].filename == __file__
    assert "secret-token" not in str(insecure[0].message)
    assert "https://" in str(insecure[0].message)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.example.com",
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:9000/acp",
        "http://api.localhost",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_do_not_warn(base_url: str) -> None:
    """https:// anywhere, and http:// to loopback (tests, sidecars), stay quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ACPClient("secret-token", base_url=base_url)


async def test_the_warning_is_not_repeated_per_request(no_backoff: None) -> None:
    """Requests made by a warned client add no further warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = ACPClient("k", base_url="http://192.0.2.1", timeout=0.05, max_retries=1)
        async with client:
            for _ in range(3):
                with pytest.raises(ACPError):  # 192.0.2.1 is TEST-NET: never answers
                    await client.runs.list("srv")
    assert sum(issubclass(w.category, InsecureTransportWarning) for w in caught) == 1
