"""Configuration: arguments, then ACP_*, then COMPUTER_AGENTS_*, then defaults."""

from __future__ import annotations

import pytest

from acp_async import ACPClient
from acp_async._config import USER_AGENT


def test_missing_api_key_names_both_ways_to_set_it() -> None:
    """No key anywhere is a ValueError that names the argument and the variables."""
    with pytest.raises(ValueError, match="api_key") as info:
        ACPClient()
    assert "ACP_API_KEY" in str(info.value)
    assert "COMPUTER_AGENTS_API_KEY" in str(info.value)


def test_api_key_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """ACP_API_KEY wins over COMPUTER_AGENTS_API_KEY; an argument wins over both."""
    monkeypatch.setenv("COMPUTER_AGENTS_API_KEY", "from-official")
    assert ACPClient().config.api_key == "from-official"
    monkeypatch.setenv("ACP_API_KEY", "from-acp")
    assert ACPClient().config.api_key == "from-acp"
    assert ACPClient("explicit").config.api_key == "explicit"


def test_base_url_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url falls back to ACP_BASE_URL, COMPUTER_AGENTS_BASE_URL, then the default host."""
    assert str(ACPClient("k").config.base_url) == "https://api.computer-agents.com/v1"
    monkeypatch.setenv("COMPUTER_AGENTS_BASE_URL", "https://official.test")
    assert str(ACPClient("k").config.base_url) == "https://official.test/v1"
    monkeypatch.setenv("ACP_BASE_URL", "https://acp.test")
    assert str(ACPClient("k").config.base_url) == "https://acp.test/v1"
    assert str(ACPClient("k", base_url="https://arg.test").config.base_url) == "https://arg.test/v1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/acp", "http://127.0.0.1:8080/acp/v1"),
        ("http://127.0.0.1:8080/acp//", "http://127.0.0.1:8080/acp/v1"),
        ("https://host.test/acp/v1", "https://host.test/acp/v1"),
    ],
)
def test_base_url_gets_v1_once_and_keeps_its_prefix(given: str, expected: str) -> None:
    """`/v1` is appended unless present; prefixes and trailing slashes are handled."""
    assert str(ACPClient("k", base_url=given).config.base_url) == expected


@pytest.mark.parametrize("bad", ["ftp://host", "not a url", "/relative", "http://h/?q=1"])
def test_bad_base_url_is_a_value_error(bad: str) -> None:
    """A base URL that is not an absolute http(s) URL fails at construction."""
    with pytest.raises(ValueError, match="base_url"):
        ACPClient("k", base_url=bad)


def test_headers_carry_auth_agent_and_organization() -> None:
    """Bearer auth, our User-Agent and the official organization header are sent."""
    headers = ACPClient(
        "tok", organization_id="org_1", default_headers={"X-Extra": "1"}
    ).config.headers
    assert headers["Authorization"] == "Bearer tok"
    assert headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("acp-async/")
    assert headers["X-Computer-Agents-Organization"] == "org_1"
    assert headers["X-Extra"] == "1"


@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "X-Computer-Agents-Runtime-Token"]
)
def test_default_headers_cannot_carry_a_token(name: str) -> None:
    """A token header in default_headers is refused at construction, not silently dropped."""
    with pytest.raises(ValueError, match=name):
        ACPClient("tok", default_headers={name: "Bearer other"})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": -1.0}, ValueError),
        ({"timeout": float("inf")}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"connect_timeout": True}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"max_connections": 0}, ValueError),
        ({"max_response_bytes": 0}, ValueError),
    ],
)
def test_invalid_settings_fail_at_construction(kwargs: dict[str, object], error: type) -> None:
    """Bad numbers are refused with a typed error before any session exists."""
    with pytest.raises(error):
        ACPClient("k", **kwargs)  # type: ignore[arg-type]


def test_token_is_not_in_repr() -> None:
    """Neither the client's nor its config's repr shows the token."""
    client = ACPClient("sk-secret-token")
    assert "sk-secret-token" not in repr(client)
    assert "sk-secret-token" not in repr(client.config)
    assert "sk-secret-token" not in str(client.config)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"organization_id": "org\r\nX-Evil: 1"}, ValueError),
        ({"default_headers": {"X-A": "a\nb"}}, ValueError),
        ({"default_headers": {"X-A": 5}}, TypeError),
        ({"default_headers": {5: "x"}}, TypeError),
        ({"api_key": "tok\nen"}, ValueError),
    ],
)
def test_header_values_are_checked_at_construction(kwargs: dict[str, object], error: type) -> None:
    """Newlines or non-strings in headers fail when the client is made, not on every request."""
    kwargs.setdefault("api_key", "k")
    with pytest.raises(error) as info:
        ACPClient(**kwargs)  # type: ignore[arg-type]
    assert "tok\nen" not in str(info.value)


def test_official_sdk_api_url_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """COMPUTER_AGENTS_API_URL, the official SDK's second name, comes after its BASE_URL."""
    monkeypatch.setenv("COMPUTER_AGENTS_API_URL", "http://127.0.0.1:8081")
    assert str(ACPClient("tok").config.base_url) == "http://127.0.0.1:8081/v1"
    monkeypatch.setenv("COMPUTER_AGENTS_BASE_URL", "http://127.0.0.1:8082")
    assert str(ACPClient("tok").config.base_url) == "http://127.0.0.1:8082/v1"


def test_a_session_that_is_not_a_client_session_is_refused() -> None:
    """session= of the wrong type is a TypeError at construction, not an AttributeError later."""
    with pytest.raises(TypeError, match=r"aiohttp\.ClientSession"):
        ACPClient("tok", session="x")  # type: ignore[arg-type]


def test_metrics_and_trace_configs_are_checked() -> None:
    """metrics= must be an Observer; trace_configs= a list of TraceConfig, for our session."""
    import aiohttp

    with pytest.raises(TypeError, match="metrics"):
        ACPClient("tok", metrics=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="trace_configs"):
        ACPClient("tok", trace_configs=aiohttp.TraceConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="trace_configs"):
        ACPClient("tok", trace_configs=["x"])  # type: ignore[list-item]
