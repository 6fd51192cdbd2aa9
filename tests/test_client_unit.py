"""Narrow unit tests of request shape and error mapping, with aiohttp mocked by aioresponses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

from acp_async import (
    ACPClient,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
)
from acp_async._config import USER_AGENT
from acp_async.testing import instant_backoff

pytestmark = pytest.mark.aioresponses

BASE = "https://acp.test/v1"
RUNS = f"{BASE}/servers/srv-1/runtime/agent/runs"


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as mock, instant_backoff():
        yield mock


@pytest.fixture
async def client() -> AsyncIterator[ACPClient]:
    async with ACPClient(
        "tok-unit", base_url="https://acp.test", organization_id="org-9", max_retries=0
    ) as acp:
        yield acp


def sent(mocked: aioresponses) -> list[tuple[URL, dict[str, Any]]]:
    return [(url, call.kwargs) for (_, url), calls in mocked.requests.items() for call in calls]


async def test_request_line_and_headers(mocked: aioresponses, client: ACPClient) -> None:
    """One GET to the runs path with limit, bearer token, User-Agent and organization."""
    mocked.get(f"{RUNS}?limit=7", payload={"data": [{"id": "r1"}]})
    runs = await client.runs.list("srv-1", limit=7)
    assert [r.id for r in runs.data] == ["r1"]
    [(url, kwargs)] = sent(mocked)
    assert url == URL(f"{RUNS}?limit=7")
    headers = kwargs["headers"]
    assert headers["Authorization"] == "Bearer tok-unit"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["X-Computer-Agents-Organization"] == "org-9"
    assert kwargs["allow_redirects"] is False


async def test_no_limit_means_no_query(mocked: aioresponses, client: ACPClient) -> None:
    """Without limit the request carries no query string."""
    mocked.get(RUNS, payload={})
    await client.runs.list("srv-1")
    [(url, _)] = sent(mocked)
    assert url.query_string == ""


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, APIStatusError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
    ],
)
async def test_error_body_maps_to_typed_error(
    mocked: aioresponses, client: ACPClient, status: int, cls: type[APIStatusError]
) -> None:
    """The API's JSON error body fills message, code, details and request id."""
    mocked.get(
        RUNS,
        status=status,
        payload={"error": "kind", "message": "it broke", "code": "E42", "details": [{"f": 1}]},
        headers={"X-Request-Id": "req-77", "Retry-After": "120"},
    )
    with pytest.raises(cls) as info:
        await client.runs.list("srv-1")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.message, exc.code, exc.details, exc.request_id) == (
        status,
        "it broke",
        "E42",
        [{"f": 1}],
        "req-77",
    )
    assert exc.body is not None
    assert "it broke" in exc.body


async def test_html_error_page_is_a_normal_status_error(
    mocked: aioresponses, client: ACPClient
) -> None:
    """A proxy's HTML 502 becomes InternalServerError with the page excerpt as body."""
    mocked.get(RUNS, status=502, body="<html><h1>Bad Gateway</h1></html>", content_type="text/html")
    with pytest.raises(InternalServerError) as info:
        await client.runs.list("srv-1")
    assert info.value.status == 502
    assert info.value.code is None
    assert "Bad Gateway" in (info.value.body or "")


async def test_rate_limit_carries_retry_after(mocked: aioresponses, client: ACPClient) -> None:
    """A 429 over the 60 s cap is raised at once with its retry_after."""
    mocked.get(RUNS, status=429, payload={"error": "rate"}, headers={"Retry-After": "90"})
    with pytest.raises(RateLimitError) as info:
        await client.runs.list("srv-1")
    assert info.value.retry_after == 90.0


async def test_non_json_success_is_a_validation_error(
    mocked: aioresponses, client: ACPClient
) -> None:
    """A 200 whose body is not JSON raises ResponseValidationError, not a decode error."""
    mocked.get(RUNS, body="<html>hello</html>", content_type="text/html")
    with pytest.raises(ResponseValidationError, match="not valid JSON"):
        await client.runs.list("srv-1")


async def test_wrong_shape_names_the_request_and_path(
    mocked: aioresponses, client: ACPClient
) -> None:
    """A shape error carries the request's URL as data and names the field in its message."""
    mocked.get(RUNS, payload={"data": [{"status": 1}]})
    with pytest.raises(ResponseValidationError) as info:
        await client.runs.list("srv-1")
    assert info.value.url == "https://acp.test/v1/servers/srv-1/runtime/agent/runs"
    assert "GET" not in str(info.value)  # the URL is data, not repeated in the message
    assert "$.data[0].status" in str(info.value)
    assert info.value.problems == (str(info.value).removeprefix("unexpected response shape: "),)
