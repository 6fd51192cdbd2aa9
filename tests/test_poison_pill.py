"""One server's data never stops a watch or a worker, with and without the `speed` extra.

A run whose `metadata` nests 300 levels deep cannot be fingerprinted (orjson refuses to
encode more than 254 levels; the stdlib path refuses alike). In each place (an in-process
`client.runs.watch`, a fleet worker run as the CLI, `acp-async runs watch`) the poisoned
server shows as failing or as error events, the healthy servers' changes still arrive,
and the process lives on. "Without" runs the place in a subprocess where `import
orjson` (and the rest of the extra) fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from acp_async.fleet import RedisFleet
from acp_async.testing import FakeACPServer

from .cli_processes import kill_group
from .conftest import wait_until
from .redis_server import RedisServer
from .test_cli import Result, cli_env, read_line

pytestmark = pytest.mark.usefixtures("no_backoff")

# `import orjson` (and xxhash, uvloop: the rest of the extra) raises ImportError after this.
WITHOUT_SPEED = "import sys; sys.modules.update(orjson=None, xxhash=None, uvloop=None);"
CLI_MAIN = "from acp_async.cli import main; sys.exit(main(sys.argv[1:]))"
SPEEDS = [pytest.param(True, id="orjson"), pytest.param(False, id="without-orjson")]


def poisoned(depth: int = 300) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def cli_code(speed: bool) -> str | None:
    """None: `python -m acp_async`, as users run it; else the CLI behind WITHOUT_SPEED."""
    return None if speed else WITHOUT_SPEED + CLI_MAIN


async def start(code: str | None, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    program = ["-m", "acp_async"] if code is None else ["-c", code]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *program,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, killed whole in `finally`
    )


@contextlib.asynccontextmanager
async def running(
    code: str | None, *args: str, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await start(code, *args, env=env)
    try:
        yield proc
    finally:
        await kill_group(proc)


async def stop(proc: asyncio.subprocess.Process) -> Result:
    """SIGTERM, then what is left of its output and its exit code."""
    assert proc.returncode is None, "the process died"
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


# -- in-process client.runs.watch --------------------------------------------------------------

WATCH_SCRIPT = """
import asyncio, contextlib, json, sys
from acp_async import ACPClient, _json
from acp_async.testing import FakeACPServer, instant_backoff

async def main():
    nested = {}
    for _ in range(300):
        nested = {"a": nested}
    async with FakeACPServer(servers=3, runs_per_server=1) as fake:
        bad, *good = fake.server_ids
        fake.set_run(bad, fake.runs(bad)[0]["id"], metadata=nested)
        seen, changed = [], False
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch(fake.server_ids, interval=0.02)
            async with contextlib.aclosing(stream), asyncio.timeout(20):
                async for event in stream:
                    error = event.error and type(event.error).__name__
                    seen.append([event.kind, event.server_id, error])
                    errors = sum(e[1] == bad for e in seen)
                    created = {e[1] for e in seen if e[0] == "created"}
                    if event.kind == "updated":
                        break
                    if errors >= 2 and created == set(good) and not changed:
                        fake.set_run(good[0], fake.runs(good[0])[0]["id"], title="changed")
                        changed = True
        print(json.dumps({"fast": _json.fast(), "bad": bad, "good": good, "seen": seen}))

with instant_backoff():
    asyncio.run(main())
"""


@pytest.mark.parametrize("speed", SPEEDS)
async def test_an_in_process_watch_fails_only_the_poisoned_server(speed: bool) -> None:
    """client.runs.watch: error events (ResponseValidationError) for the poisoned server,
    on and on; the others' runs are created, and a later change arrives."""
    code = ("import sys;" if speed else WITHOUT_SPEED) + WATCH_SCRIPT
    async with running(code, env=cli_env()) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["fast"] is speed
    bad, good, seen = report["bad"], report["good"], report["seen"]
    poisoned_events = [e for e in seen if e[1] == bad]
    assert len(poisoned_events) >= 2
    assert all(e[0] == "error" and e[2] == "ResponseValidationError" for e in poisoned_events)
    assert {e[1] for e in seen if e[0] == "created"} == set(good)
    assert seen[-1] == ["updated", good[0], None]
    assert b"Traceback" not in err


# -- a fleet worker run as the CLI ---------------------------------------------------------------


@pytest.mark.parametrize(
    "speeds", [[True], [False], [True, False]], ids=["orjson", "without-orjson", "mixed"]
)
async def test_a_fleet_worker_lives_on_and_streams_the_healthy_servers(
    speeds: list[bool], redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet worker` (with orjson, without, or one of each in one fleet): the poisoned
    server is failing, every healthy change is streamed once, the workers live on and
    exit 0 on SIGTERM."""
    async with (
        FakeACPServer(servers=3, runs_per_server=2) as fake,
        RedisFleet(redis_server.url, name=fleet_name, interval=0.05) as fleet,
        contextlib.AsyncExitStack() as stack,
    ):
        bad, *good = fake.server_ids
        fake.set_run(bad, fake.runs(bad)[0]["id"], metadata=poisoned())
        await fleet.add(fake.server_ids)
        args = ("fleet", "worker", "--redis", redis_server.url, "--fleet", fleet_name)
        args += ("--interval", "0.05", "--lease", "2")
        procs = [
            await stack.enter_async_context(running(cli_code(speed), *args, env=cli_env(fake)))
            for speed in speeds
        ]
        for proc in procs:  # each up (its start line), so each meets the poisoned server
            assert proc.stderr is not None
            while "started:" not in await read_line(proc.stderr, 20):
                pass
        events = fleet.events("check", "c", block=0.05)
        stack.push_async_callback(events.aclose)
        seen = []

        async def take() -> None:
            seen.append(await anext(events))
            await fleet.ack("check", seen[-1])

        async with asyncio.timeout(20):
            while len(seen) < 2 * len(good):
                await take()
            while (await fleet.status()).failing != 1:
                await asyncio.sleep(0.02)
            changed = fake.runs(good[1])[0]["id"]
            fake.set_run(good[1], changed, title="changed")
            while seen[-1].kind != "updated":
                await take()
        # The poisoned server polled again (at its failing cadence), the others too.
        await wait_until(lambda: sum(r.server_id == bad for r in fake.requests) >= 4, 15)
        results = [await stop(proc) for proc in procs]
        status = await fleet.status()
    assert all(r.code == 0 for r in results), results
    assert all("Traceback" not in r.err for r in results)
    assert {(e.kind, e.server_id) for e in seen[:-1]} == {("created", sid) for sid in good}
    last = seen[-1]
    assert (last.server_id, last.run.id, last.run.title) == (good[1], changed, "changed")
    assert status.stream_length == len(seen) == 2 * len(good) + 1, "a change reported twice"
    assert bad not in {e.server_id for e in seen}
    assert status.failing == 1


# -- acp-async runs watch ------------------------------------------------------------------------


@pytest.mark.parametrize("speed", SPEEDS)
async def test_cli_runs_watch_prints_errors_for_the_poisoned_server_and_goes_on(
    speed: bool,
) -> None:
    """`runs watch --json`: error lines (ResponseValidationError) for the poisoned server,
    the others' runs created, a later change printed, exit 0 on SIGTERM."""
    async with FakeACPServer(servers=3, runs_per_server=1) as fake:
        bad, *good = fake.server_ids
        fake.set_run(bad, fake.runs(bad)[0]["id"], metadata=poisoned())
        args = ("runs", "watch", *fake.server_ids, "--interval", "0.05", "--json")
        async with running(cli_code(speed), *args, env=cli_env(fake)) as proc:
            assert proc.stdout is not None
            lines = []

            def created() -> set[str]:
                return {e["serverId"] for e in lines if e["kind"] == "created"}

            while sum(e["serverId"] == bad for e in lines) < 2 or created() != set(good):
                lines.append(json.loads(await read_line(proc.stdout)))
            fake.set_run(good[0], fake.runs(good[0])[0]["id"], title="changed")
            while lines[-1]["kind"] != "updated":
                lines.append(json.loads(await read_line(proc.stdout)))
            result = await stop(proc)
    assert result.code == 0, result.err
    for line in (e for e in lines if e["serverId"] == bad):
        assert line["kind"] == "error"
        assert line["error"]["type"] == "ResponseValidationError"
        assert "cannot be fingerprinted" in line["error"]["message"]
    assert {e["serverId"] for e in lines if e["kind"] == "created"} == set(good)
    assert (lines[-1]["serverId"], lines[-1]["run"]["title"]) == (good[0], "changed")
    assert "Traceback" not in result.err
    # Logged once, when it starts failing (not at each failed poll).
    assert result.err.count(f"WARNING watch: {bad} is failing: run 0 of the page: its fields") == 1
