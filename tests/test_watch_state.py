"""WatchState holds only packed records (bytes), even while a poll's events are handed over."""

from __future__ import annotations

import json
from contextlib import aclosing

from acp_async import ACPClient, WatchState
from acp_async.testing import FakeACPServer

from .test_watch import take


async def test_a_state_saved_mid_hand_over_resumes_after_the_delivered_runs(
    no_backoff: None,
) -> None:
    """Two of a new server's four runs taken, then the loop closed: its record is bytes, it
    is in to_dict, and a resumed watch reports only the two runs not delivered."""
    async with FakeACPServer(servers=1, runs_per_server=4, seed=3) as fake:
        [sid] = fake.server_ids
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            state = WatchState()
            stream = client.runs.watch([sid], interval=0.02, limit=10, state=state)
            async with aclosing(stream):
                first = await take(stream, 2)
                assert all(isinstance(saved, bytes) for saved in state.servers.values())
                saved = json.dumps(state.to_dict())
            assert list(json.loads(saved)) == [sid]
            restored = WatchState.from_dict(json.loads(saved))
            stream = client.runs.watch([sid], interval=0.02, limit=10, state=restored)
            async with aclosing(stream):
                rest = await take(stream, 2)
    assert {e.kind for e in rest} == {"created"}
    assert {e.run.id for e in first if e.run} | {e.run.id for e in rest if e.run} == {
        run["id"] for run in fake.runs(sid)
    }


async def test_a_live_record_gives_way_to_later_polls(no_backoff: None) -> None:
    """A watch closed mid-hand-over and resumed on the same state object: after later
    polls, the saved state knows every run, so a watch resumed from it reports only the
    run added since."""
    async with FakeACPServer(servers=1, runs_per_server=3, seed=5) as fake:
        [sid] = fake.server_ids
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            state = WatchState()
            stream = client.runs.watch([sid], interval=0.02, limit=10, state=state)
            async with aclosing(stream):
                await take(stream, 1)
            stream = client.runs.watch([sid], interval=0.02, limit=10, state=state)
            async with aclosing(stream):
                rest = await take(stream, 2)
                polled = len(fake.requests)
                fake.add_run(sid, status="queued")
                await take(stream, 1)  # a later poll, its hand-over begun
                assert len(fake.requests) > polled
            saved = json.dumps(state.to_dict())
            newest = fake.add_run(sid, status="queued")
            stream = client.runs.watch(
                [sid], interval=0.02, limit=10, state=WatchState.from_dict(json.loads(saved))
            )
            async with aclosing(stream):
                [event] = await take(stream, 1)
    assert [e.kind for e in rest] == ["created", "created"]
    assert (event.kind, event.run.id if event.run else None) == ("created", newest["id"])
