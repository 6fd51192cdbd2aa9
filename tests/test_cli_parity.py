"""The command line a new user meets: help that explains, advice for a shell, one 401 hint,
one JSON style, global options anywhere, fake-server pages and runtime tokens, narrow
terminals. Real subprocesses against the real FakeACPServer (and Redis for `fleet`)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
from typing import Any

import pytest
from rich.console import Console

from acp_async import ACPClient, AgentRun, RunEvent
from acp_async.cli._app import build_parser
from acp_async.cli._human import event_line, runs_table
from acp_async.cli._report import AUTH_HINT
from acp_async.fleet import RedisFleet
from acp_async.testing import FakeACPServer

from .redis_server import RedisServer
from .test_cli import assert_clean_error, cli_env, free_port, interrupt, read_line, run, start

pytestmark = pytest.mark.fleet(servers=4, runs_per_server=3, seed=5)

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def _leaves() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by its full name (`runs list`, `fleet worker`, ...)."""
    parser = build_parser()
    found = {}
    for name, sub in parser._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        nested = getattr(sub, "_subparsers", None)
        if nested is None:
            found[name] = sub
            continue
        for leaf, leaf_parser in nested._group_actions[0].choices.items():
            found[f"{name} {leaf}"] = leaf_parser
    return found


def _shown_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        max(action.option_strings, key=len): action
        for action in parser._actions
        if action.option_strings
        and action.help != argparse.SUPPRESS
        and "-h" not in action.option_strings
    }


def test_every_subcommand_says_what_it_does_and_each_option_its_default() -> None:
    """Each subcommand's --help has a description; each option a help text; an option
    with a default names it, and one taking seconds says "seconds"."""
    leaves = _leaves()
    assert len(leaves) >= 10
    for name, parser in leaves.items():
        assert parser.description, f"{name} has no description"
        assert len(parser.description) > 40, name
        for flag, action in _shown_options(parser).items():
            assert action.help, f"{name} {flag} has no help"
            if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
                assert "(default:" in action.help, f"{name} {flag}: {action.help!r}"
            if action.metavar == "S":
                assert "seconds" in action.help, f"{name} {flag}: {action.help!r}"


def test_base_url_is_offered_only_where_it_does_something() -> None:
    """--base-url shows in the help of the commands that call the API, nowhere else;
    --json only where there is JSON to print."""
    api = {"runs list", "runs poll", "runs watch", "fleet worker"}
    json_out = {
        "runs list",
        "runs poll",
        "runs watch",
        "fleet events",
        "fleet status",
        "fleet list",
    }
    for name, parser in _leaves().items():
        shown = _shown_options(parser)
        assert ("--base-url" in shown) == (name in api), name
        assert ("--json" in shown) == (name in json_out), name


def test_every_command_takes_and_shows_verbose_and_quiet() -> None:
    """-v and -q are every command's (logging is), shown in each one's --help."""
    for name, parser in _leaves().items():
        shown = _shown_options(parser)
        assert "--verbose" in shown, name
        assert "--quiet" in shown, name


async def test_verbose_and_quiet_together_are_a_usage_error() -> None:
    """-v asks for more and -q for less: one line, exit 2."""
    result = await run("-q", "fleet", "add", "srv-1", "-v", env=cli_env())
    assert "give -v or -q, not both" in assert_clean_error(result, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fleet", "status", "--base-url", "http://x"), "fleet status does not take --base-url"),
        (("fleet", "add", "srv-1", "--json"), "fleet add does not take --json"),
        (("fake-server", "--json"), "fake-server does not take --json"),
        (("fleet", "worker", "--json"), "fleet worker does not take --json"),
    ],
)
async def test_an_option_a_command_does_not_take_is_one_clear_line(
    args: tuple[str, ...], message: str
) -> None:
    """Given where it means nothing, before or after the subcommand, a global option is
    a usage error naming it: never argparse's generic "unrecognized arguments"."""
    result = await run(*args, env=cli_env(ACP_REDIS_URL="redis://127.0.0.1:1"))
    assert message in assert_clean_error(result, 2)


async def test_json_before_or_after_the_subcommand(fleet: FakeACPServer) -> None:
    """`--json` works before the group, between group and subcommand, and after it."""
    env = cli_env(fleet)
    sid = fleet.server_ids[0]
    results = await asyncio.gather(
        run("--json", "runs", "list", sid, env=env),
        run("runs", "--json", "list", sid, env=env),
        run("runs", "list", sid, "--json", env=env),
    )
    assert all(r.code == 0 for r in results), results
    assert results[0].json() == results[1].json() == results[2].json()


async def test_missing_key_gives_shell_advice() -> None:
    """No key anywhere: exit 2 with what to export, not Python's ACPClient(api_key=...)."""
    line = assert_clean_error(await run("runs", "list", "srv-1", env=cli_env()), 2)
    assert "export ACP_API_KEY=" in line
    assert "COMPUTER_AGENTS_RUNTIME_TOKEN" in line
    assert "ACPClient(" not in line
    assert "api_key=" not in line


async def test_a_bad_runtime_json_is_a_usage_error_naming_the_variable() -> None:
    """A runtime JSON that is not base64 JSON: one line, exit 2, the variable named."""
    env = cli_env(ACP_API_KEY="k", COMPUTER_AGENTS_RUNTIME_JSON_B64="!!not-base64!!")
    line = assert_clean_error(await run("runs", "list", "srv-1", "--json", env=env), 2)
    assert "COMPUTER_AGENTS_RUNTIME_JSON_B64" in line
    assert "!!not-base64!!" not in line


async def test_every_command_gives_the_same_401_hint(
    fleet: FakeACPServer, redis_server: RedisServer, fleet_name: str
) -> None:
    """A refused key says the same thing in runs list, poll, watch and fleet worker."""
    env = cli_env(fleet, ACP_API_KEY="wrong-key", ACP_REDIS_URL=redis_server.url)
    sid = fleet.server_ids[0]
    async with RedisFleet(redis_server.url, name=fleet_name) as redis_fleet:
        await redis_fleet.add([sid])
    results = await asyncio.gather(
        run("runs", "list", sid, env=env),
        run("runs", "poll", sid, env=env),
        run("runs", "watch", sid, "--interval", "0.05", env=env),
        run("fleet", "worker", "--fleet", fleet_name, "--interval", "0.05", env=env),
    )
    for result in results:
        assert result.code == 1, result
        assert "HTTP 401" in result.err, result
        assert AUTH_HINT in result.err, result
        assert "Traceback" not in result.err
        assert "wrong-key" not in result.err


def _assert_one_json_style(text: str) -> list[dict[str, Any]]:
    """Each line is compact JSON (no spaces after , and :) with camelCase keys."""
    objects = []
    for line in text.splitlines():
        value = json.loads(line)
        assert line == json.dumps(value, ensure_ascii=False, separators=(",", ":")), line
        _assert_camel(value)
        objects.append(value)
    assert objects
    return objects


def _assert_camel(value: object) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key != "metadata":  # free-form: the user's own keys
                assert CAMEL.match(key), key
                _assert_camel(inner)
    elif isinstance(value, list):
        for inner in value:
            _assert_camel(inner)


async def _three_events(fake: FakeACPServer, redis_url: str, name: str, sid: str) -> None:
    """A worker of fleet ``name`` runs until the stream holds three of ``sid``'s events."""
    async with RedisFleet(redis_url, name=name, interval=0.05) as redis_fleet:
        await redis_fleet.add([sid])
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            worker = asyncio.create_task(redis_fleet.work(client))
            try:
                async with asyncio.timeout(10):
                    while (await redis_fleet.status()).stream_length < 3:
                        await asyncio.sleep(0.02)
            finally:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)


async def test_every_json_output_has_one_style(
    fleet: FakeACPServer, redis_server: RedisServer, fleet_name: str
) -> None:
    """runs list/poll/watch and fleet status/events print compact camelCase JSON lines."""
    env = cli_env(fleet, ACP_REDIS_URL=redis_server.url)
    sid = fleet.server_ids[0]
    listed = await run("runs", "list", sid, "--json", env=env)
    polled = await run("runs", "poll", *fleet.server_ids, "--json", env=env)
    await _three_events(fleet, redis_server.url, fleet_name, sid)
    status = await run("fleet", "status", "--json", "--fleet", fleet_name, env=env)
    events = await start("fleet", "--json", "events", "--fleet", fleet_name, env=env)
    watch = await start("runs", "watch", sid, "--json", "--interval", "0.05", env=env)
    assert events.stdout is not None
    assert watch.stdout is not None
    event_lines = [await read_line(events.stdout) for _ in range(3)]
    watch_lines = [await read_line(watch.stdout) for _ in range(3)]
    for proc in (events, watch):
        assert (await interrupt(proc)).code == 0
    for result in (listed, polled, status):
        assert result.code == 0, result
        _assert_one_json_style(result.out)
    assert _assert_one_json_style(status.out)[0]["streamLength"] >= 3
    assert {e["kind"] for e in _assert_one_json_style("".join(event_lines))} == {"created"}
    assert {e["serverId"] for e in _assert_one_json_style("".join(watch_lines))} == {sid}


async def test_fleet_events_text_lines_carry_their_time(
    fleet: FakeACPServer, redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet events` lines start with the time the event was appended, like `runs watch`."""
    sid = fleet.server_ids[0]
    env = cli_env(fleet, ACP_REDIS_URL=redis_server.url)
    await _three_events(fleet, redis_server.url, fleet_name, sid)
    proc = await start("fleet", "events", "--fleet", fleet_name, env=env)
    assert proc.stdout is not None
    lines = [await read_line(proc.stdout) for _ in range(3)]
    assert (await interrupt(proc)).code == 0
    runs = {run["id"]: run for run in fleet.runs(sid)}
    for line in lines:
        time, kind, server, run_id, *_ = line.split()
        assert re.fullmatch(r"\d\d:\d\d:\d\d", time), line
        assert (kind, server) == ("created", sid)
        assert line.rstrip().endswith(runs[run_id]["title"])


async def test_runs_list_without_an_id_reads_the_default_server(fleet: FakeACPServer) -> None:
    """`runs list` with no SERVER_ID reads COMPUTER_AGENTS_SERVER_ID (or the runtime
    JSON's server.id); with none, exit 2 naming COMPUTER_AGENTS_SERVER_ID."""
    sid = fleet.server_ids[1]
    env = cli_env(fleet, COMPUTER_AGENTS_SERVER_ID=sid)
    listed = await run("runs", "list", "--json", env=env)
    runtime = base64.b64encode(json.dumps({"server": {"id": sid}}).encode()).decode()
    from_json = await run(
        "runs", "list", "--json", env=cli_env(fleet, TESTBASE_RUNTIME_JSON_B64=runtime)
    )
    missing = await run("runs", "list", "--json", env=cli_env(fleet))
    for result in (listed, from_json):
        assert result.code == 0, result
        assert {run["serverId"] for run in result.json()} == {sid}
    assert "COMPUTER_AGENTS_SERVER_ID" in assert_clean_error(missing, 2)


async def test_fake_server_pages_and_names_both_tokens() -> None:
    """`fake-server --page-size N` paginates with Link rel="next" (so iter/pages can be
    tried); its startup lines and --help name the API key and the runtime token."""
    helped = await run("fake-server", "--help", env=cli_env())
    assert "test-token" in helped.out
    assert "test-runtime-token" in helped.out
    assert "--page-size" in helped.out
    port = free_port()
    proc = await start(
        "fake-server", "--port", str(port), "--runs", "5", "--page-size", "2",
        "--runtime-token", "rt-123", "--new-run-every", "0", env=cli_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    printed = [await read_line(proc.stdout)]
    while "Ctrl-C" not in printed[-1]:  # printed once it is listening
        printed.append(await read_line(proc.stdout))
    text = "".join(printed)
    assert "ACP_API_KEY=test-token" in text
    assert "COMPUTER_AGENTS_RUNTIME_TOKEN=rt-123" in text
    base_url = f"http://127.0.0.1:{port}"
    async with ACPClient(runtime_token="rt-123", base_url=base_url) as client:
        pages = [page async for page in client.runs.pages("srv-0001")]
        every = [run.id async for run in client.runs.iter("srv-0001", limit=2)]
    result = await interrupt(proc)
    assert result.code == 0, result
    assert [len(page.data) for page in pages] == [2, 2, 1]
    assert len(set(every)) == 5


TITLE = "A rather long title that goes on and on about what the run did, far beyond any width"


def _rendered(width: int) -> list[str]:
    runs = [
        AgentRun(id=f"run-{i:012x}", status=status, mode="async", title=TITLE)
        for i, status in enumerate(["completed", "queued", "cancelled"])
    ]
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(runs_table(runs, width=width))
    return [line for line in console.export_text().splitlines() if line.startswith("run-")]


@pytest.mark.parametrize("width", [40, 50, 60, 80, 100, 140])
def test_narrow_terminals_cut_the_title_not_the_ids(width: int) -> None:
    """At any width the runs table keeps ids and statuses whole, fits the terminal, and
    cuts only the title, with an ellipsis; wide enough, the times come back."""
    lines = _rendered(width)
    assert len(lines) == 3
    for line, status in zip(lines, ["completed", "queued", "cancelled"], strict=True):
        assert len(line.rstrip()) <= width
        id_, shown_status, *_ = line.split()
        assert re.fullmatch(r"run-[0-9a-f]{12}", id_)
        assert shown_status == status
        assert "A rather" in line
        assert "…" in line
    if width >= 100:  # room for the mode beside a title of 20 columns or more
        assert " async " in lines[0]
        assert len(lines[0].split("A rather")[1].split("…")[0]) >= 20


def test_watch_lines_keep_room_for_the_title_on_a_narrow_terminal() -> None:
    """A watch line on a 70-column terminal still shows the start of the title."""
    run_ = AgentRun(id="run-0123456789ab", status="completed", title=TITLE)
    line = event_line(RunEvent("created", "srv-0001", run=run_), 8, width=70).plain
    assert "A rather" in line[:70]
    wide = event_line(RunEvent("created", "srv-0001", run=run_), 8, width=200).plain
    assert wide.index("A rather") > line.index("A rather")
