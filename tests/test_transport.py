"""The send path's own promises: `.url` on every error, one loop per client, nested
`async with`, and the observer told about every request exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from acp_async import (
    ACPClient,
    ACPError,
    APIConnectionError,
    APITimeoutError,
    InternalServerError,
    NotFoundError,
    ResponseValidationError,
)
from acp_async._observe import Observer
from acp_async.testing import FakeACPServer


class Recorder(Observer):
    """Counts what the send path reports."""

    def __init__(self) -> None:
        self.started = 0
        self.finished: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.paused = 0.0

    def request_started(self) -> None:
        self.started += 1

    def request_finished(self, outcome: str, seconds: float) -> None:  # type: ignore[override]
        assert seconds >= 0
        self.finished[outcome] += 1

    def retried(self, reason: str) -> None:
        self.retries[reason] += 1

    def rate_limited(self, seconds: float) -> None:
        self.paused += seconds


def _url(fake: FakeACPServer, sid: str) -> str:
    return f"{fake.base_url}/v1/servers/{sid}/runtime/agent/runs"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "status", "status": 503, "times": 3}, InternalServerError),
        ({"kind": "malformed"}, ResponseValidationError),
        ({"kind": "drop", "times": 6}, APIConnectionError),
        ({"kind": "latency", "delay": 2.0, "times": 3}, APITimeoutError),
    ],
)
async def test_every_error_carries_the_request_url(
    fake: FakeACPServer, no_backoff: None, fault: dict[str, object], error: type[ACPError]
) -> None:
    """Status, validation, connection and timeout errors all carry `.url`, not in the text."""
    fake.fail(**fault)  # type: ignore[arg-type]
    sid = fake.server_ids[0]
    async with ACPClient(fake.token, base_url=fake.base_url, timeout=0.2) as client:
        with pytest.raises(error) as info:
            await client.runs.list(sid)
    assert info.value.url == _url(fake, sid)
    assert info.value.url not in str(info.value)


async def test_unknown_server_error_url(fake: FakeACPServer, client: ACPClient) -> None:
    """A 404 names the URL that was asked for, percent-encoded as sent."""
    with pytest.raises(NotFoundError) as info:
        await client.runs.list("no such/server")
    assert info.value.url == _url(fake, "no%20such%2Fserver")


async def test_observer_hears_each_request_once(fake: FakeACPServer, no_backoff: None) -> None:
    """Every request started is finished once, with its outcome; retries say why."""
    recorder = Recorder()
    sid = fake.server_ids[0]
    fake.fail("status", status=503, times=1)
    async with ACPClient(fake.token, base_url=fake.base_url, metrics=recorder) as client:
        await client.runs.list(sid)  # 503, then 200
        fake.fail("malformed", times=1)
        with pytest.raises(ResponseValidationError):
            await client.runs.list(sid)
        with pytest.raises(NotFoundError):
            await client.runs.list("missing")
    assert recorder.started == 4 == sum(recorder.finished.values())
    assert recorder.finished == Counter({"2xx": 1, "5xx": 1, "invalid": 1, "4xx": 1})
    assert recorder.retries == Counter({"503": 1})


async def test_observer_hears_timeouts_cancellations_and_cool_down(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """A timed-out attempt is a "timeout"; a cancelled one still ends; a 429 pause counts."""
    recorder = Recorder()
    sid = fake.server_ids[0]
    async with ACPClient(
        fake.token, base_url=fake.base_url, timeout=0.2, max_retries=1, metrics=recorder
    ) as client:
        fake.fail("latency", delay=2.0, times=1)
        await client.runs.list(sid)
        fake.fail("status", status=429, retry_after="0.05", times=1)
        await client.runs.list(sid)
        fake.fail("latency", delay=5.0, times=1)
        call = asyncio.ensure_future(client.runs.list(sid))
        while fake.in_flight == 0:  # the request reached the server
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert recorder.started == 5 == sum(recorder.finished.values())
    assert recorder.finished["timeout"] == 1
    assert recorder.retries == Counter({"timeout": 1, "429": 1})
    assert recorder.paused == pytest.approx(0.05, abs=0.02)


async def test_nested_async_with_closes_at_the_outermost_exit(fake: FakeACPServer) -> None:
    """A helper that enters a client it was handed does not close it under its owner."""
    async with ACPClient(fake.token, base_url=fake.base_url) as client:
        async with client:
            await client.runs.list(fake.server_ids[0])
        assert not client.closed
        await client.runs.list(fake.server_ids[0])
    assert client.closed


def test_a_client_belongs_to_one_event_loop(fake_url: str) -> None:
    """Using a client from a second asyncio.run() raises a clear RuntimeError, no warnings."""
    client = ACPClient("tok", base_url=fake_url, max_retries=0, timeout=0.5)

    async def use() -> None:
        with contextlib.suppress(ACPError):
            await client.runs.list("srv-1")

    async def use_and_leave_open() -> None:
        await use()
        # What a user forgets: the session stays with the first loop. Closed here only so
        # this test itself leaves nothing unclosed; the client does not know.
        session = client._transport._session
        assert session is not None
        await session.close()

    asyncio.run(use_and_leave_open())
    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(use())
    assert not client.closed


@pytest.fixture
def fake_url() -> str:
    return "http://127.0.0.1:9"


async def test_a_2xx_of_the_wrong_shape_is_an_invalid_request_with_its_url(
    no_backoff: None,
) -> None:
    """Structuring runs inside the request: a 200 whose runs are malformed counts as
    "invalid" (not "2xx"), for list() and for the watch, and its error carries `.url`."""
    from aiohttp import web

    from .conftest import serve_runs

    async def bad_run(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "r1", "status": 7}]})

    recorder = Recorder()
    async with (
        serve_runs(bad_run) as base,
        ACPClient("tok", base_url=base, metrics=recorder) as client,
    ):
        with pytest.raises(ResponseValidationError) as info:
            await client.runs.list("srv-1")
        assert info.value.url == f"{base}/v1/servers/srv-1/runtime/agent/runs"
        watch = client.runs.watch(["srv-2"], interval=0.01, limit=5)
        event = await anext(watch)
        await watch.aclose()
    assert event.kind == "error"
    assert isinstance(event.error, ResponseValidationError)
    assert event.error.url == f"{base}/v1/servers/srv-2/runtime/agent/runs?limit=5"
    assert recorder.finished == Counter({"invalid": 2})


def test_iterators_can_be_made_outside_a_running_loop() -> None:
    """list_many() and watch() check their arguments and return, without a running loop
    or a session, like iter() and pages(); the first iteration does the work."""
    client = ACPClient("tok", base_url="http://127.0.0.1:9")
    for stream in (
        client.runs.list_many(["a"], concurrency=500),
        client.runs.watch(["a"], concurrency=500),
        client.runs.iter("a"),
        client.runs.pages("a"),
    ):
        stream.aclose().close()  # never started: nothing to clean up
    assert client._transport._session is None
