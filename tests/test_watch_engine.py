"""The watch engine: compact state, fingerprints before structuring, errors that end it,
and one server's boundary (a bug fails that server only)."""

from __future__ import annotations

import asyncio
import sys
from contextlib import aclosing

import pytest

from acp_async import (
    ACPClient,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ResponseValidationError,
    UnprocessableEntityError,
    WatchState,
    _converter,
    _json,
)
from acp_async.testing import FakeACPServer

from .test_watch import INTERVAL, take


def _state_bytes(state: WatchState) -> int:
    """What the state holds per server: the id strings and their packed records."""
    return sum(sys.getsizeof(sid) + sys.getsizeof(blob) for sid, blob in state.servers.items())


async def _watched_state(output_size: int) -> WatchState:
    state = WatchState()
    async with FakeACPServer(servers=20, runs_per_server=50, seed=5) as fake:
        for sid in fake.server_ids:
            for run in fake.runs(sid):
                fake.set_run(sid, run["id"], output="x" * output_size, status="completed")
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch(fake.server_ids, interval=INTERVAL, limit=50, state=state)
            async with aclosing(stream):
                await take(stream, 20 * 50, timeout=30)
    return state


async def test_memory_per_server_does_not_grow_with_run_text(no_backoff: None) -> None:
    """50 runs per server with 100 B or 50 KB outputs: the same few hundred bytes kept."""
    small = await _watched_state(100)
    large = await _watched_state(50_000)
    per_server_small = _state_bytes(small) / 20
    per_server_large = _state_bytes(large) / 20
    assert per_server_large == per_server_small
    assert per_server_large < 2048


async def test_unchanged_runs_are_not_structured_again(
    no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only new or changed runs are structured: a quiet poll structures none, and a page
    byte-identical to the last one (with the `speed` extra) is not even decoded."""
    calls: list[object] = []
    decoded: list[bytes] = []
    structure = _converter.structure
    _json.fast()  # the decoder is chosen on first use: choose it now, then wrap it
    loads = _json.loads

    def counting(body: object, cls: type) -> object:
        calls.append(cls)
        return structure(body, cls)

    def counting_loads(body: bytes) -> object:
        decoded.append(body)
        return loads(body)

    monkeypatch.setattr(_converter, "structure", counting)
    monkeypatch.setattr(_json, "loads", counting_loads)
    async with FakeACPServer(servers=1, runs_per_server=10, seed=2) as fake:
        sid = fake.server_ids[0]
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            stream = client.runs.watch([sid], interval=INTERVAL, limit=50)
            async with aclosing(stream):
                await take(stream, 10)
                assert len(calls) == 10
                polls = len(fake.requests)
                waiting = asyncio.ensure_future(anext(stream))
                async with asyncio.timeout(5):
                    while len(fake.requests) < polls + 3:  # three polls of an unchanged page
                        await asyncio.sleep(0.005)
                assert not waiting.done()
                assert len(calls) == 10
                assert len(decoded) == 1  # only the first page was decoded
                fake.set_run(sid, fake.runs(sid)[3]["id"], output="changed")
                async with asyncio.timeout(5):
                    event = await waiting
    assert event.kind == "updated"
    assert event.run is not None
    assert event.run.output == "changed"
    assert len(calls) == 11


@pytest.mark.parametrize(
    ("status", "error"), [(400, BadRequestError), (422, UnprocessableEntityError)]
)
async def test_a_refused_watch_request_ends_the_watch(
    no_backoff: None, status: int, error: type[Exception]
) -> None:
    """A 400/422 for the watch's own request is raised: no later poll can fix it."""
    async with FakeACPServer(servers=1, runs_per_server=1) as fake:
        fake.fail("status", status=status, times=1)
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch(fake.server_ids, interval=INTERVAL)
            async with aclosing(stream):
                with pytest.raises(error):
                    await take(stream, 1)


@pytest.mark.parametrize(("status", "error"), [(403, PermissionDeniedError), (404, NotFoundError)])
async def test_a_forbidden_or_missing_server_stays_watched(
    no_backoff: None, status: int, error: type[Exception]
) -> None:
    """403/404: an error event each poll, backing off, and the server is still watched."""
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        bad, good = fake.server_ids
        fake.fail("status", status=status, times=3, server_id=bad)
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch([bad, good], interval=0.005)
            async with aclosing(stream):
                events = await take(stream, 5)
                new = fake.add_run(bad)
                while True:
                    [event] = await take(stream, 1)
                    if event.server_id == bad and event.kind == "created":
                        break
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 3
    assert all(isinstance(e.error, error) and e.server_id == bad for e in errors)
    assert event.run is not None
    # The bad server's first successful poll reports its runs, the new one included.
    assert event.run.id in {new["id"], *(r["id"] for r in fake.runs(bad))}


def test_state_resumes_from_its_own_dict_and_refuses_garbage() -> None:
    """to_dict/from_dict round-trip; a corrupt blob is a ResponseValidationError."""
    from acp_async import ResponseValidationError

    assert WatchState.from_dict({}) == WatchState()
    with pytest.raises(ResponseValidationError):
        WatchState.from_dict({"srv": "not base64!"})
    with pytest.raises(ResponseValidationError):
        WatchState.from_dict({"srv": "AAAA"})


def test_packed_state_round_trips_and_stays_under_a_redis_size_class() -> None:
    """Change numbers past one varint byte, an unknown status, the schedule counters: all
    come back; 50 runs pack into 663 bytes; a format-0 blob (16-byte records) is refused."""
    import struct

    from acp_async._watch._state import Seen, ServerState

    runs = {i.to_bytes(5, "big"): Seen(bytes(6), "completed", 1) for i in range(48)}
    runs[b"big!!"] = Seen(b"fields", "running", 300_000)
    runs[b"new!!"] = Seen(b"fields", "not-a-status-yet", 2)
    state = ServerState(runs, polled=True, quiet_polls=4, errors=2, page=b"12345678")
    blob = state.pack()
    assert ServerState.unpack(blob) == state
    known_statuses = ServerState({**runs, b"new!!": Seen(b"fields", None, 2)})
    assert len(known_statuses.pack()) == 13 + 50 * 12 + 52
    old = struct.pack(">BBBH8s", 1, 0, 0, 1, bytes(8)) + bytes(16)
    with pytest.raises(ValueError, match="format"):
        ServerState.unpack(old)
    with pytest.raises(ValueError, match="truncated"):  # not even a byte a change number
        ServerState.unpack(blob[: 13 + 50 * 12 + 3])
    cut = ServerState.unpack(blob[: 13 + 50 * 12 + 50])  # runs are read when first used
    with pytest.raises(ValueError, match="cut short"):
        _ = cut.runs


def test_a_state_packed_before_the_busy_flag_is_read_whole_and_stays_busy() -> None:
    """A state packed before the "busy" flag existed: its runs are read at once, so a busy
    server keeps the busy cadence, and it is written back with the flag."""
    from acp_async._watch._state import Seen, ServerState

    runs = {i.to_bytes(5, "big"): Seen(bytes(6), "running", 1) for i in range(3)}
    now = ServerState(runs, polled=True).pack()
    assert now[0] == 0x17  # format 1: polled, busy, "busy" is set
    old = bytes([0x11]) + now[1:]  # format 1, polled: the same bytes but for the flags
    state = ServerState.unpack(old)
    assert state.busy()
    assert state.unchanged().pack() == now


def test_from_dict_checks_a_saved_state_whole() -> None:
    """A saved state cut inside its change numbers is refused by from_dict, not later."""
    import base64

    from acp_async import ResponseValidationError
    from acp_async._watch._state import Seen, ServerState

    runs = {i.to_bytes(5, "big"): Seen(bytes(6), "completed", 300) for i in range(3)}
    blob = ServerState(runs, polled=True).pack()  # 13 + 36 bytes, then 2 bytes a number
    cut = base64.b64encode(blob[: 13 + 36 + 4]).decode()
    with pytest.raises(ResponseValidationError, match="cut short"):
        WatchState.from_dict({"srv": cut})


async def test_an_unchanged_page_leaves_the_packed_runs_unread() -> None:
    """The steady state: a page identical to the last one reads none of the state's runs
    and packs them again by copying; the runs are still there when read."""
    from acp_async._watch._diff import diff
    from acp_async._watch._poll import poll
    from acp_async._watch._state import ServerState, body_digest

    page = {"data": [{"id": f"r{i}", "status": "running"} for i in range(50)]}
    body = _json.dumps(page)
    first = diff(_converter.page_items(page), ServerState())[0]
    first.page = body_digest(body)
    saved = first.pack()

    async def fetch(sid: str, limit: int, parse: object, peek: object) -> object:
        return peek(body)  # type: ignore[operator]

    polled = await poll(fetch, "srv", 50, ServerState.unpack(saved))
    fresh = polled.fresh
    assert polled.changes == []
    assert fresh.busy()  # known from the header alone
    assert fresh._runs is None  # never read
    assert fresh.pack() == saved
    assert fresh.runs == first.runs


async def test_a_watch_reads_past_an_unreadable_state(no_backoff: None) -> None:
    """A state whose run records cannot be read (a good header, a bad status code) does
    not end the watch: the server starts afresh and its runs come as created."""
    from acp_async._watch._state import Seen, ServerState

    good = ServerState({b"12345": Seen(bytes(6), "running", 1)}, polled=True).pack()
    bad = good[:24] + bytes([200]) + good[25:]  # the run's status code
    async with FakeACPServer(servers=1, runs_per_server=2) as fake:
        [sid] = fake.server_ids
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch(
                [sid], interval=INTERVAL, state=WatchState(servers={sid: bad})
            )
            async with aclosing(stream):
                events = await take(stream, 2, timeout=10)
    assert [e.kind for e in events] == ["created", "created"]


def test_failing_cadence_never_exceeds_32_intervals() -> None:
    """Jitter cannot push a failing server past the 32x interval cap."""
    from acp_async._watch._schedule import ERROR_CAP, next_delay
    from acp_async._watch._state import ServerState

    state = ServerState()
    delays = []
    for _ in range(2000):
        delay, state = next_delay(state, 1.0, failed=True, busy=False)
        delays.append(delay)
    assert min(delays) >= 1.0  # never sooner than a healthy server
    assert max(delays) <= ERROR_CAP
    assert max(delays) > ERROR_CAP * 0.8  # still jittered below the cap


def test_fleet_event_keys_tell_a_returning_changed_run_apart() -> None:
    """A run created again (n = 1) after leaving the page gets a new key if it changed,
    and the same key if it did not (a retried commit, or the same content seen again)."""
    from acp_async._watch._state import fingerprint
    from acp_async.fleet._worker import event_key

    before = fingerprint({"id": "r/1", "status": "running"})
    after = fingerprint({"id": "r/1", "status": "completed"})
    first = event_key("srv 1", "r/1", 1, before)
    assert first.startswith("srv%201/r%2F1/1.")
    assert event_key("srv 1", "r/1", 1, before) == first
    assert event_key("srv 1", "r/1", 1, after) != first


@pytest.mark.parametrize("status", [400, 422])
async def test_a_refused_request_after_an_answer_makes_only_that_server_failing(
    no_backoff: None, status: int
) -> None:
    """Once a server has answered the watch's request, a 400/422 from one server is an
    error event for that server (which stays watched), not the end of the watch."""
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        bad, good = fake.server_ids
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch([bad, good], interval=INTERVAL)
            async with aclosing(stream):
                first = await take(stream, 2)
                fake.fail("status", status=status, times=2, server_id=bad)
                errors = await take(stream, 2)
                fake.add_run(bad)
                fake.add_run(good)
                after = await take(stream, 2)
    assert {(e.kind, e.server_id) for e in first} == {("created", bad), ("created", good)}
    assert [(e.kind, e.server_id) for e in errors] == [("error", bad)] * 2
    assert all(isinstance(e.error, (BadRequestError, UnprocessableEntityError)) for e in errors)
    assert {(e.kind, e.server_id) for e in after} == {("created", bad), ("created", good)}


async def test_a_bug_in_one_servers_diff_fails_only_that_server(
    no_backoff: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception injected into the diff step of one server's polls: that server gets
    error events ("internal error", the exception as the cause), each logged once at
    ERROR with its traceback and never retried as a connection error; the other server
    goes on, and the first server recovers when the bug is gone."""
    from acp_async import ACPError
    from acp_async._watch import _poll

    real_diff = _poll.diff
    broken: set[str] = set()

    def diff(items: list[dict[str, object]], known: object) -> object:
        if any(item.get("serverId") in broken for item in items):
            raise RuntimeError("injected into the diff step")
        return real_diff(items, known)  # type: ignore[arg-type]

    monkeypatch.setattr(_poll, "diff", diff)
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        bad, good = fake.server_ids
        broken.add(bad)
        # Retries on: a bug must not be retried as if it were a connection error.
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=2) as client:
            stream = client.runs.watch([bad, good], interval=INTERVAL)
            async with aclosing(stream):
                events = []
                while not any(e.server_id == good for e in events) or len(events) < 4:
                    events += await take(stream, 1)
                fake.add_run(good)
                while (event := (await take(stream, 1))[0]).server_id != good:
                    events.append(event)
                assert event.kind == "created"  # the good server's new run, still reported
                broken.clear()
                while (event := (await take(stream, 1))[0]).kind == "error":
                    events.append(event)
                requests_of_bad = sum(r.server_id == bad for r in fake.requests)
    assert (event.kind, event.server_id) == ("created", bad)  # recovered
    errors = [e for e in events if e.kind == "error"]
    assert errors
    assert all(e.server_id == bad for e in errors)
    for error_event in errors:
        assert type(error_event.error) is ACPError
        assert str(error_event.error) == "internal error: RuntimeError: injected into the diff step"
        assert isinstance(error_event.error.__cause__, RuntimeError)
    assert requests_of_bad == len(errors) + 1  # one request a poll: none retried
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == len(errors)  # once each, with the traceback
    assert all(bad in r.getMessage() and r.exc_info is not None for r in logged)
    assert all(r.exc_info[0] is RuntimeError for r in logged if r.exc_info)


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_a_run_nested_300_levels_deep_fails_only_its_server(
    no_backoff: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A run nested 300 levels deep cannot be fingerprinted (orjson, and the stdlib path
    alike, refuse to encode more than 254): the poisoned server gets error events
    (ResponseValidationError: its data, not a bug, so no ERROR), every other server goes
    on. Without orjson: tests/test_poison_pill.py."""
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        bad, good = fake.server_ids
        fake.set_run(bad, fake.runs(bad)[0]["id"], metadata=_nested(300))
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch([bad, good], interval=INTERVAL)
            async with aclosing(stream):
                events = await take(stream, 2)
                while not any(e.server_id == bad for e in events):
                    events += await take(stream, 1)
                fake.set_run(good, fake.runs(good)[0]["id"], title="changed")
                while (event := (await take(stream, 1))[0]).kind != "updated":
                    events.append(event)
    assert (event.server_id, event.run and event.run.title) == (good, "changed")
    assert ("created", good) in {(e.kind, e.server_id) for e in events}
    poisoned = [e for e in events if e.server_id == bad]
    assert poisoned
    assert all(e.kind == "error" for e in poisoned)
    assert all(type(e.error) is ResponseValidationError for e in poisoned)
    assert all(
        "run 0 of the page: its fields cannot be fingerprinted" in str(e.error) for e in poisoned
    )
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_settle_is_one_pure_step_for_both_stores(no_backoff: None) -> None:
    """settle() turns a poll's outcome into the new state, the next delay and the changes,
    changing neither the known state nor the poll: a failure keeps the known runs at the
    failing cadence, a busy page keeps the interval."""
    from acp_async import InternalServerError
    from acp_async._watch._diff import diff
    from acp_async._watch._poll import Polled
    from acp_async._watch._settle import settle
    from acp_async._watch._state import ServerState

    items = [{"id": "r1", "status": "running"}, {"id": "r2", "status": "completed"}]
    known = ServerState(polled=True, quiet_polls=2, errors=0)
    fresh, changes = diff(items, known)
    polled = Polled(items, fresh, changes, known)
    known_before, fresh_before = known.pack(), fresh.pack()

    good = settle(known, polled, 2.0)
    error = InternalServerError("x", status=503)
    failed = settle(known, error, 2.0)
    again = settle(failed.state, error, 2.0)

    assert (known.pack(), fresh.pack()) == (known_before, fresh_before)
    assert (good.error, good.delay, [c.run_id for c in good.changes]) == (None, 2.0, ["r2", "r1"])
    assert good.state.runs == fresh.runs
    assert (good.state.quiet_polls, good.state.errors) == (0, 0)  # busy: a run is running
    assert (failed.error, failed.changes, failed.state.runs) == (error, (), known.runs)
    assert (failed.state.errors, again.state.errors) == (1, 2)
    assert failed.delay == again.delay == 2.0  # one interval under the testing switch
