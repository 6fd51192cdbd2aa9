"""wait_for: returns the terminal run, retries transient errors, times out with the last state."""

from __future__ import annotations

import asyncio

import pytest

from acp_async import (
    ACPClient,
    AuthenticationError,
    NotFoundError,
    ResponseValidationError,
    RunStatus,
    WaitTimeoutError,
)
from acp_async.testing import FakeACPServer

from .conftest import settled, wait_until

SERVER = "srv-0001"


async def test_returns_once_terminal(fake: FakeACPServer, client: ACPClient) -> None:
    """The run is returned as soon as a poll sees it completed."""
    run = fake.add_run(SERVER, status="running")

    async def finish_once_seen_running() -> None:
        await wait_until(lambda: any(r.status == 200 for r in fake.requests))
        fake.set_run(SERVER, run["id"], status="completed")

    finisher = asyncio.create_task(finish_once_seen_running())
    done = await client.runs.wait_for(SERVER, run["id"], interval=0.01, timeout=5)
    await finisher
    assert done.status is RunStatus.COMPLETED
    assert done.id == run["id"]


async def test_transient_errors_are_retried(fake: FakeACPServer, no_backoff: None) -> None:
    """503s while waiting are retried within the deadline."""
    run = fake.add_run(SERVER, status="failed")
    fake.fail("status", status=503, times=3)
    async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
        done = await client.runs.wait_for(SERVER, run["id"], interval=0.01, timeout=5)
    assert done.status is RunStatus.FAILED


async def test_permanent_errors_are_raised(fake: FakeACPServer, client: ACPClient) -> None:
    """A 404 is not waited out."""
    with pytest.raises(NotFoundError):
        await client.runs.wait_for("nope", "run-x", interval=0.01, timeout=5)


async def test_timeout_carries_the_last_seen_run(fake: FakeACPServer, client: ACPClient) -> None:
    """A run that never finishes raises WaitTimeoutError (a TimeoutError) with its last state."""
    run = fake.add_run(SERVER, status="running")
    with pytest.raises(TimeoutError) as info:
        await client.runs.wait_for(SERVER, run["id"], interval=0.01, timeout=0.2)
    assert isinstance(info.value, WaitTimeoutError)
    assert info.value.run is not None
    assert info.value.run.status is RunStatus.RUNNING
    assert "still running" in str(info.value)


async def test_absent_run_is_reported_clearly(
    fake: FakeACPServer, client: ACPClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that is never in the list times out saying so, with run None, and logs a warning."""
    with pytest.raises(WaitTimeoutError, match="never appeared") as info:
        await client.runs.wait_for(SERVER, "run-ghost", interval=0.01, timeout=0.15)
    assert info.value.run is None
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # said once, not on every poll
    assert "run-ghost" in warnings[0].getMessage()


async def test_run_that_leaves_the_page_is_reported(fake: FakeACPServer, client: ACPClient) -> None:
    """A run pushed out of the newest `limit` runs is not reported as still running."""
    run = fake.add_run(SERVER, status="running")

    async def bury() -> None:  # once a poll has seen it running
        await wait_until(lambda: any(r.status == 200 for r in fake.requests))
        fake.set_run(SERVER, run["id"], status="completed")
        for _ in range(3):
            fake.add_run(SERVER)

    burier = asyncio.create_task(bury())
    with pytest.raises(WaitTimeoutError, match="left the newest 2 runs") as info:
        await client.runs.wait_for(SERVER, run["id"], interval=0.01, timeout=0.3, limit=2)
    await burier
    assert info.value.run is not None
    assert info.value.run.status is RunStatus.RUNNING


async def test_timeout_bounds_a_slow_request(no_backoff: None) -> None:
    """A poll stuck on a slow server is cut off by the wait's own deadline."""
    async with FakeACPServer() as fake:
        fake.fail("latency", delay=5.0, times=5)
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            with pytest.raises(WaitTimeoutError):
                await client.runs.wait_for(SERVER, "run-x", interval=0.01, timeout=0.2)
        # The one poll was cut by the deadline: left to run, it would have been answered.
        [poll] = await settled(fake)
        assert (poll.fault, poll.status) == ("latency", None)


async def test_an_invalid_page_is_retried(fake: FakeACPServer, no_backoff: None) -> None:
    """A page that cannot be read (a poisoned run elsewhere on it, a cut body) is polled
    again until the deadline: the run is returned once a page can be read."""
    run = fake.add_run(SERVER, status="completed")
    fake.fail("malformed", times=3)
    async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
        done = await client.runs.wait_for(SERVER, run["id"], interval=0.01, timeout=10)
    assert done.id == run["id"]
    assert [r.fault for r in fake.requests] == ["malformed"] * 3 + [None]


async def test_the_timeout_carries_the_last_error_as_its_cause(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """Every poll failing: the WaitTimeoutError's __cause__ is the last poll's error."""
    fake.fail("malformed", times=10_000)
    async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
        with pytest.raises(WaitTimeoutError, match="never appeared") as info:
            await client.runs.wait_for(SERVER, "run-x", interval=0.01, timeout=0.5)
    assert isinstance(info.value.__cause__, ResponseValidationError)


async def test_a_refused_token_is_raised_at_once(fake: FakeACPServer, no_backoff: None) -> None:
    """A 401 ends the wait: no later poll can succeed."""
    fake.fail("status", status=401, times=10)
    async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError):
            await client.runs.wait_for(SERVER, "run-x", interval=0.01, timeout=10)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"interval": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": "1"}, TypeError),
        ({"limit": 0}, ValueError),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    fake: FakeACPServer, client: ACPClient, kwargs: dict[str, object], error: type
) -> None:
    """Bad interval, timeout or limit raise before a request is sent."""
    with pytest.raises(error):
        await client.runs.wait_for(SERVER, "run-x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_id"):
        await client.runs.wait_for(SERVER, "")
    assert fake.requests == []
