"""Data never drives the terminal: every value from a server or from Redis is printed
with its control characters escaped, and no server id may hold one.

HOSTILE holds what a hostile server or Redis entry would try: clear the screen (ESC [ 2J),
set the window title (OSC ... BEL), overwrite the line (CR), forge a line (LF), and the
one-character C1 CSI (U+009B) some terminals obey. Text output shows each as an escape
(``\\x1b``, ``\\x07``, ``\\r``, ``\\n``, ``\\x9b``); ``--json`` output stays JSON.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from rich.console import Console

from acp_async import ACPClient, AgentRun, AgentRunList, NotFoundError, RunEvent, ServerRuns
from acp_async.cli._human import event_line, poll_table, runs_table
from acp_async.cli._redis_fleet import event_line as fleet_event_line
from acp_async.cli._redis_fleet import status_table
from acp_async.cli._report import clean, event_text
from acp_async.fleet import FleetEvent, FleetStatus, RedisFleet
from acp_async.testing import FakeACPServer

from .redis_server import RedisServer
from .test_cli import assert_clean_error, cli_env, interrupt, read_line, run, start

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\r\n\x9b31m"
SHOWN = "\\x1b[2J\\x1b]0;pwned\\x07\\r\\n\\x9b31m"
RAW = ("\x1b", "\x07", "\r", "\x9b")  # none may reach a terminal


def assert_escaped(text: str, lines: int | None = None) -> None:
    assert not any(c in text for c in RAW), repr(text)
    if lines is not None:
        assert len(text.splitlines()) == lines, text


def test_clean_escapes_every_control_character_and_keeps_the_rest() -> None:
    """C0, DEL and C1 become readable escapes; everything else (unicode, backslashes,
    markup) is kept as it is."""
    assert clean(HOSTILE) == SHOWN
    assert clean("a\tb\x00c\x7fd\x85e") == "a\\tb\\x00c\\x7fd\\x85e"
    assert clean("café 😀 [bold]x[/] C:\\path\u00a0") == "café 😀 [bold]x[/] C:\\path\u00a0"
    for code in (*range(0x20), *range(0x7F, 0xA0)):
        assert clean(chr(code)).startswith("\\"), code


def _render(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=300, color_system=None, legacy_windows=False).print(renderable)
    return out.getvalue()


def test_every_text_renderer_escapes_server_values() -> None:
    """Tables, watch lines (plain and rich), fleet event lines and `fleet status`."""
    run = AgentRun(id=f"run{HOSTILE}", status=f"[bold]paused[/]{HOSTILE}", title=f"title{HOSTILE}")
    page = AgentRunList(data=[run])
    event = RunEvent("created", f"srv{HOSTILE}", run)
    failed = ServerRuns(f"srv{HOSTILE}", error=NotFoundError(f"gone{HOSTILE}", status=404))
    fleet_event = FleetEvent(
        id="1764741600000-0",
        key="k",
        kind="updated",
        server_id=f"srv{HOSTILE}",
        run=run,
        previous_status=f"queued{HOSTILE}",
    )
    status = FleetStatus(1, 1, 0, 0.0, 0, 3, {f"billing{HOSTILE}": 2, "ops\\xff": 1})
    texts = [
        _render(runs_table(page.data, width=300)),
        _render(poll_table([ServerRuns("ok", result=page), failed])),
        _render(event_line(event, 20, 300)),
        event_text(event, 20),
        fleet_event_line(fleet_event),
        status_table(status),
    ]
    for text in texts:
        assert_escaped(text)
        assert "\\x1b[2J" in text, text
    assert "[bold]paused[/]" in texts[1]  # a status the server made up names a column: as text
    assert_escaped(fleet_event_line(fleet_event), lines=1)
    assert f"pending [billing{SHOWN}]  2" in status_table(status)


pytestmark = pytest.mark.fleet(servers=3, runs_per_server=1, seed=5)


async def test_runs_list_poll_and_watch_text_escape_titles_ids_and_errors(
    fleet: FakeACPServer,
) -> None:
    """`runs list`, `runs poll` and `runs watch` text: a hostile title and a hostile error
    message arrive escaped, each line one line; `--json` keeps them as JSON strings."""
    sid, broken, _ = fleet.server_ids
    fleet.set_run(sid, fleet.runs(sid)[0]["id"], title=f"t{HOSTILE}")
    error = json.dumps({"error": "not_found", "message": f"no{HOSTILE}"}).encode()
    fleet.fail("status", status=404, server_id=broken, body=error, times=100)
    env = cli_env(fleet)
    listed = await run("runs", "list", sid, env=env)
    polled = await run("runs", "poll", sid, broken, env=env)
    as_json = await run("runs", "list", sid, "--json", env=env)
    watch = await start("runs", "watch", sid, broken, "--interval", "0.05", env=env)
    assert watch.stdout is not None
    assert watch.stderr is not None
    first = await read_line(watch.stdout)
    errors = [await read_line(watch.stderr)]
    while broken not in errors[-1]:  # the error line for the broken server, when it comes
        errors.append(await read_line(watch.stderr))
    watched = await interrupt(watch)
    assert listed.code == 0, listed
    assert_escaped(listed.out + listed.err)
    assert "t\\x1b[2J" in listed.out
    assert polled.code == 1, polled
    assert_escaped(polled.out + polled.err)
    assert f"no{SHOWN}" in polled.err
    assert len([line for line in polled.err.splitlines() if "no\\x1b" in line]) == 1
    assert as_json.json()[0]["title"] == f"t{HOSTILE}"
    assert_escaped(first + "".join(errors) + watched.out + watched.err)
    assert f"t{SHOWN}" in first
    assert f"watch: {broken} is failing: 404: no{SHOWN}" in errors[-1]


async def test_an_id_holding_a_control_character_is_a_usage_error(
    fleet: FakeACPServer, redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet add`, `fleet remove`, `runs list|poll|watch` with an id holding "\\n" (or any C0
    or DEL): exit 2, one line naming the id escaped, nothing sent, nothing written."""
    env = cli_env(fleet, ACP_REDIS_URL=redis_server.url)
    forged = "srv\n2026-12-03 12:00:00 INFO forged"
    results = await asyncio.gather(
        run("fleet", "add", "ok", forged, "--fleet", fleet_name, env=env),
        run("fleet", "remove", "\x1b[2J", "--fleet", fleet_name, env=env),
        run("runs", "list", "srv\x7f", env=env),
        run("runs", "poll", "ok", forged, env=env),
        run("runs", "watch", forged, env=env),
    )
    for result in results:
        line = assert_clean_error(result, 2)
        assert "control character" in line
        assert_escaped(result.err)
    assert "'srv\\n2026-12-03 12:00:00 INFO forged'" in results[0].err
    assert fleet.requests == []
    async with RedisFleet(redis_server.url, name=fleet_name) as opened:
        assert await opened.server_ids() == set()


async def test_fleet_status_and_events_escape_what_redis_holds(
    fleet: FakeACPServer, redis_server: RedisServer, fleet_name: str
) -> None:
    """Consumer-group names (one hostile, one not UTF-8) and run titles from the stream:
    `fleet status` and `fleet events` print them escaped, with no traceback."""
    sid = fleet.server_ids[0]
    fleet.set_run(sid, fleet.runs(sid)[0]["id"], title=f"t{HOSTILE}")
    env = cli_env(fleet, ACP_REDIS_URL=redis_server.url)
    async with RedisFleet(redis_server.url, name=fleet_name, interval=0.05) as opened:
        await opened.add([sid])
        async with asyncio.timeout(10):
            async with ACPClient(fleet.token, base_url=fleet.base_url) as client:
                worker = asyncio.create_task(opened.work(client))
                try:
                    while (await opened.status()).stream_length < 1:
                        await asyncio.sleep(0.02)
                finally:
                    worker.cancel()
                    await asyncio.gather(worker, return_exceptions=True)
        store = opened._store
        assert store is not None
        for group in (f"billing{HOSTILE}".encode(), b"ops\xff\xfe"):
            await store._redis.xgroup_create(store.keys.events, group, id="0")
    status = await run("fleet", "status", "--fleet", fleet_name, env=env)
    status_json = await run("fleet", "status", "--json", "--fleet", fleet_name, env=env)
    events = await start("fleet", "events", "--fleet", fleet_name, env=env)
    assert events.stdout is not None
    line = await read_line(events.stdout)
    stopped = await interrupt(events)
    assert status.code == 0, status
    assert "Traceback" not in status.err
    assert_escaped(status.out + status.err)
    assert f"pending [billing{SHOWN}]  0" in status.out
    assert "pending [ops\\xff\\xfe]" in status.out
    assert status_json.code == 0, status_json
    pending = status_json.json()[0]["pending"]
    assert pending == {f"billing{HOSTILE}": 0, "ops\\xff\\xfe": 0}
    assert stopped.code == 0, stopped
    assert_escaped(line + stopped.out, lines=1)
    assert line.rstrip().endswith(f"t{SHOWN}")
