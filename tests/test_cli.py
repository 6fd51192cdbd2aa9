"""The command line, run as a real subprocess against an in-process FakeACPServer."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import sys
import termios
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from acp_async import ACPClient
from acp_async.cli._servers import server_ids
from acp_async.testing import FakeACPServer

SECRET = "sk-live-0123456789abcdef"


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


def cli_env(fake: FakeACPServer | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "COMPUTER_AGENTS_"))}
    env.pop("COLUMNS", None)
    env["PYTHONWARNINGS"] = "error"  # an "Unclosed client session" would fail the run
    if fake is not None:
        env.update(ACP_API_KEY=fake.token, ACP_BASE_URL=fake.base_url)
    env.update(extra)
    return env


async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "acp_async",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def run(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 15.0) -> Result:
    """Run the CLI to the end without blocking the loop the fake server runs in."""
    proc = await start(*args, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def read_line(stream: asyncio.StreamReader, timeout: float = 10.0) -> str:
    line = await asyncio.wait_for(stream.readline(), timeout)
    assert line, "the process closed its output"
    return line.decode()


async def interrupt(proc: asyncio.subprocess.Process, signum: int = signal.SIGINT) -> Result:
    """Send ``signum`` and collect what is left of the output and the exit code."""
    proc.send_signal(signum)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def assert_clean_error(result: Result, code: int) -> str:
    """The exit code, exactly one line on stderr, no traceback: that line is returned."""
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("acp-async: ")
    return lines[0]


pytestmark = pytest.mark.fleet(servers=6, runs_per_server=4, seed=3)


# -- runs list ---------------------------------------------------------------------------


async def test_list_json_is_the_api_runs_one_per_line(fleet: FakeACPServer) -> None:
    """`runs list --json` prints each run as the API's camelCase object, newest first."""
    sid = fleet.server_ids[0]
    result = await run("runs", "list", sid, "--json", env=cli_env(fleet))
    assert result.code == 0, result
    assert result.err == ""
    runs = result.json()
    expected = fleet.runs(sid)
    assert [r["id"] for r in runs] == [r["id"] for r in expected]
    assert runs[0]["serverId"] == sid
    assert runs[0]["status"] == expected[0]["status"]
    assert "createdAt" in runs[0]
    assert "created_at" not in runs[0]


async def test_list_limit_is_sent(fleet: FakeACPServer) -> None:
    """`--limit 2` asks the server for two runs and prints two."""
    result = await run(
        "runs", "list", fleet.server_ids[1], "--limit", "2", "--json", env=cli_env(fleet)
    )
    assert result.code == 0, result
    assert len(result.lines()) == 2
    assert fleet.requests[-1].query == {"limit": "2"}


async def test_list_table_shows_every_run_aligned(fleet: FakeACPServer) -> None:
    """The table has the contract's columns and one aligned row per run, without colour codes."""
    sid = fleet.server_ids[0]
    result = await run("runs", "list", sid, env=cli_env(fleet))
    assert result.code == 0, result
    header, rule, *rows = result.lines()
    assert header.split() == [
        "id",
        "status",
        "mode",
        "title",
        "created",
        "(UTC)",
        "completed",
        "(UTC)",
    ]
    assert set(rule.strip()) == {"─"}
    runs = fleet.runs(sid)
    assert len(rows) == len(runs)
    status_at = header.index("status")
    for row, run_ in zip(rows, runs, strict=True):
        assert row.startswith(run_["id"])
        assert row[status_at:].startswith(run_["status"])
        assert run_["title"] in row
    assert "\x1b" not in result.out


async def test_table_neutralises_markup_and_escape_sequences(fleet: FakeACPServer) -> None:
    """A hostile title can neither inject rich markup nor terminal escape sequences."""
    sid = fleet.server_ids[2]
    fleet.add_run(sid, title="[bold red]boom[/] \x1b[2Jcleared")
    result = await run("runs", "list", sid, env=cli_env(fleet))
    assert result.code == 0, result
    assert "[bold red]boom[/] \\x1b[2Jcleared" in result.out  # shown, escaped
    assert "\x1b" not in result.out


async def test_unknown_server_is_one_line_naming_it_with_status_and_request_id(
    fleet: FakeACPServer,
) -> None:
    """A 404 exits 1 with the server, status, message, code and request id on one line."""
    result = await run("runs", "list", "srv-nope", env=cli_env(fleet))
    line = assert_clean_error(result, 1)
    assert result.out == ""
    assert line.startswith("acp-async: srv-nope: HTTP 404 Not Found: Server 'srv-nope' not found")
    assert "code server_not_found" in line
    assert "request id req-" in line


async def test_a_rejected_token_is_never_printed(fleet: FakeACPServer) -> None:
    """A 401 exits 1 naming the problem; the token is in no output, not even with -vv logs."""
    env = cli_env(fleet, ACP_API_KEY=SECRET)
    result = await run("runs", "list", fleet.server_ids[0], "-vv", env=env)
    assert result.code == 1, result
    assert "HTTP 401 Unauthorized" in result.err
    assert "Traceback" not in result.err
    assert SECRET not in result.out + result.err


async def test_verbose_logs_retries_on_stderr(fleet: FakeACPServer) -> None:
    """`-v` shows the client's retries on stderr; stdout still carries only the result."""
    sid = fleet.server_ids[0]
    fleet.fail("status", status=503, server_id=sid)
    result = await run("runs", "list", sid, "--json", "-v", env=cli_env(fleet))
    assert result.code == 0, result
    assert "retrying GET" in result.err
    assert "503" in result.err
    assert "Using selector" not in result.err  # only the acp_async logger is turned up
    assert len(result.json()) == 4


async def test_missing_api_key_is_a_usage_error() -> None:
    """No key in the environment: exit 2 and a line saying which variables to set."""
    result = await run("runs", "list", "srv-0001", env=cli_env())
    line = assert_clean_error(result, 2)
    assert "ACP_API_KEY" in line
    assert "COMPUTER_AGENTS_API_KEY" in line


async def test_api_key_option_is_refused_without_echoing_it() -> None:
    """`--api-key` is a usage error that points to the environment and never repeats the key."""
    result = await run("runs", "list", "srv-0001", "--api-key", SECRET, env=cli_env())
    assert result.code == 2, result
    assert "set ACP_API_KEY" in result.err
    assert SECRET not in result.err + result.out
    assert "Traceback" not in result.err


async def test_computer_agents_variables_and_base_url_option_work(fleet: FakeACPServer) -> None:
    """The official SDK's variables configure the CLI too; `--base-url` beats the environment."""
    env = cli_env(COMPUTER_AGENTS_API_KEY=fleet.token, ACP_BASE_URL="http://127.0.0.1:9/nowhere")
    result = await run(
        "runs", "list", fleet.server_ids[0], "--json", "--base-url", fleet.base_url, env=env
    )
    assert result.code == 0, result
    assert len(result.lines()) == 4


async def test_bad_base_url_is_a_usage_error(fleet: FakeACPServer) -> None:
    """A base URL that is not http(s) is refused with exit 2 before any request."""
    result = await run("runs", "list", "srv-0001", "--base-url", "ftp://x", env=cli_env(fleet))
    assert "base_url" in assert_clean_error(result, 2)


async def test_network_error_exits_1_with_one_line() -> None:
    """Nothing listening: exit 1, one `connection failed` line naming the server."""
    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = cli_env(ACP_API_KEY="k", ACP_BASE_URL=f"http://127.0.0.1:{port}")
    result = await run("runs", "list", "srv-0001", env=env)
    line = assert_clean_error(result, 1)
    assert line.startswith("acp-async: srv-0001: connection failed:")


async def test_bad_arguments_are_usage_errors(fleet: FakeACPServer) -> None:
    """Bad values, a bad server id and a missing subcommand all exit 2 without a traceback."""
    env = cli_env(fleet)
    results = await asyncio.gather(
        run("runs", "list", "srv-0001", "--limit", "0", env=env),
        run("runs", "poll", "..", env=env),
        run("runs", "list", "..", env=env),
        run("runs", "list", "", env=env),
        run("runs", "poll", "srv-0001", "--shard", "3/3", env=env),
        run("runs", "watch", "srv-0001", "--interval", "-1", env=env),
        run("runs", "poll", env=env),
        run("runs", env=env),
    )
    for result in results:
        assert result.code == 2, result
        assert "Traceback" not in result.err
        assert result.out == ""
    assert "bad server id '..'" in results[1].err
    assert "bad server id '..'" in results[2].err
    assert "bad server id ''" in results[3].err
    assert "--shard wants I/N" in results[4].err
    assert "no servers" in results[6].err


async def test_closed_stdin_for_the_servers_file_is_a_usage_error(fleet: FakeACPServer) -> None:
    """`--servers-file -` with no standard input at all exits 2 with one line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import os, runpy, sys; os.close(0); sys.stdin = None; "
        "sys.argv = ['acp-async', 'runs', 'poll', '--servers-file', '-']; "
        "runpy.run_module('acp_async', run_name='__main__')",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(fleet),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    line = assert_clean_error(Result(proc.returncode or 0, out.decode(), err.decode()), 2)
    assert "no standard input" in line


# -- runs poll ----------------------------------------------------------------------------


async def test_poll_json_is_one_page_per_server_and_errors_in_band(fleet: FakeACPServer) -> None:
    """`runs poll --json` prints one API page per server; a failed server is an error object."""
    ids = fleet.server_ids
    result = await run("runs", "poll", *ids, "srv-gone", "--json", env=cli_env(fleet))
    assert result.code == 1, result
    pages = {page["serverId"]: page for page in result.json()}
    assert set(pages) == {*ids, "srv-gone"}
    for sid in ids:
        assert [r["id"] for r in pages[sid]["data"]] == [r["id"] for r in fleet.runs(sid)]
        assert pages[sid]["object"] == "list"
    error = pages["srv-gone"]["error"]
    assert error["status"] == 404
    assert error["type"] == "NotFoundError"
    assert error["requestId"].startswith("req-")
    assert assert_clean_error(result, 1).startswith("acp-async: srv-gone: HTTP 404")


async def test_poll_reads_servers_from_stdin(fleet: FakeACPServer) -> None:
    """`--servers-file -` takes one id per line, skipping blanks, comments and repeats."""
    ids = fleet.server_ids
    listing = "# the fleet\n\n" + "\n".join(f"  {sid}  " for sid in ids) + f"\n{ids[0]}\n"
    result = await run(
        "runs", "poll", "--servers-file", "-", "--json", env=cli_env(fleet), stdin=listing
    )
    assert result.code == 0, result
    assert sorted(page["serverId"] for page in result.json()) == sorted(ids)
    assert len(fleet.requests) == len(ids)


async def test_poll_reads_a_servers_file_and_arguments(
    fleet: FakeACPServer, tmp_path: Path
) -> None:
    """Arguments and a servers file add up; an unreadable file is a usage error."""
    ids = fleet.server_ids
    listing = tmp_path / "servers.txt"
    listing.write_text("\n".join(ids[2:]) + "\n")
    env = cli_env(fleet)
    result = await run("runs", "poll", *ids[:2], "--servers-file", str(listing), "--json", env=env)
    assert result.code == 0, result
    assert sorted(page["serverId"] for page in result.json()) == sorted(ids)
    missing = await run("runs", "poll", "--servers-file", str(tmp_path / "nope"), env=env)
    assert "cannot read --servers-file" in assert_clean_error(missing, 2)


async def test_poll_table_summarises_each_server_and_the_fleet(fleet: FakeACPServer) -> None:
    """The human summary has one row per server (runs by status) and a totals footer."""
    ids = fleet.server_ids
    fleet.add_run(ids[0], status="paused")  # a status this version does not know
    result = await run("runs", "poll", *ids, "srv-gone", env=cli_env(fleet))
    assert result.code == 1, result
    lines = result.lines()
    header = lines[0].split()
    assert header == [
        "server",
        "runs",
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
        "paused",
        "error",
    ]
    rows = {
        line.split()[0]: line.split()
        for line in lines[2:]
        if line.split() and line.split()[0].startswith("srv-")
    }
    assert set(rows) == {*ids, "srv-gone"}
    for sid in ids:
        statuses = [r["status"] for r in fleet.runs(sid)]
        row = rows[sid]
        assert int(row[1]) == len(statuses)
        for column, status in enumerate(header[2:-1], start=2):
            assert int(row[column]) == statuses.count(status), (sid, status)
    assert rows["srv-gone"][-2:] == ["HTTP", "404"]
    total = sum(len(fleet.runs(sid)) for sid in ids)
    assert lines[-1].split()[:4] == [
        "7",
        "servers",
        str(total),
        str(sum(r["status"] == "queued" for sid in ids for r in fleet.runs(sid))),
    ]
    assert lines[-1].split()[-2:] == ["1", "failed"]
    # stderr: the failed server's line and the timing note; no progress bar off a terminal
    err = result.err.strip().splitlines()
    assert err[0].startswith("acp-async: srv-gone: HTTP 404")
    assert err[1].startswith("polled 7 servers in ")
    assert "\r" not in result.err + result.out
    assert "\x1b" not in result.err + result.out


async def test_ctrl_c_interrupts_a_poll_cleanly(fleet: FakeACPServer) -> None:
    """SIGINT mid-poll exits 130 with no traceback and no unclosed-session warning."""
    fleet.fail("latency", delay=30.0, times=len(fleet.server_ids))
    proc = await start("runs", "poll", *fleet.server_ids, env=cli_env(fleet))
    async with asyncio.timeout(10):
        while fleet.in_flight < len(fleet.server_ids):  # every request is on the wire
            await asyncio.sleep(0.02)
    result = await interrupt(proc)
    assert result.code == 130, result
    assert "Traceback" not in result.err
    assert "Unclosed" not in result.err
    assert result.err.startswith("interrupted after ")
    assert result.err.rstrip().endswith(f"0 of {len(fleet.server_ids)} servers answered, 0 failed")


async def test_an_interrupted_poll_prints_what_it_has(fleet: FakeACPServer) -> None:
    """Ctrl-C or SIGTERM mid-poll: the table of the servers that answered, then how many did."""
    first, *stalled = fleet.server_ids
    for sid in stalled:
        fleet.fail("latency", delay=30.0, server_id=sid)
    ids = [first, "srv-gone", *stalled]  # one at a time: the 404 line means `first` is in
    proc = await start("runs", "poll", *ids, "--concurrency", "1", env=cli_env(fleet))
    assert proc.stderr is not None
    line = await read_line(proc.stderr)
    assert line.startswith("acp-async: srv-gone: HTTP 404"), line
    async with asyncio.timeout(10):
        while fleet.in_flight < 1:
            await asyncio.sleep(0.02)
    result = await interrupt(proc, signal.SIGTERM)
    assert result.code == 130, result
    rows = [row.split()[0] for row in result.lines()[2:-2]]
    assert rows == [first, "srv-gone"]
    assert result.lines()[-1].split()[:2] == ["2", "servers"]
    assert f"2 of {len(ids)} servers answered, 1 failed" in result.err


async def test_an_interrupted_json_poll_says_how_many_answered(fleet: FakeACPServer) -> None:
    """With --json the answered servers were printed as they came; the count goes to stderr."""
    answering = fleet.server_ids[:3]
    for sid in fleet.server_ids[3:]:
        fleet.fail("latency", delay=30.0, server_id=sid)
    proc = await start("runs", "poll", *fleet.server_ids, "--json", env=cli_env(fleet))
    assert proc.stdout is not None
    printed = [json.loads(await read_line(proc.stdout)) for _ in answering]
    result = await interrupt(proc)
    assert result.code == 130, result
    assert sorted(page["serverId"] for page in printed) == answering
    assert result.out == ""
    assert f"3 of {len(fleet.server_ids)} servers answered, 0 failed" in result.err


async def test_progress_bar_goes_to_a_terminal_stderr_and_json_stays_on_stdout() -> None:
    """With stderr a terminal, the bar is drawn there while every JSON line reaches stdout."""
    async with FakeACPServer(servers=30, runs_per_server=1, latency=0.05) as fake:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "acp_async", "runs", "poll", *fake.server_ids, "--json"],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
            env=cli_env(fake, TERM="xterm-256color"),
        )
        os.close(follower)
        drawn = bytearray()
        loop = asyncio.get_running_loop()

        def drain() -> None:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO on Linux: the child closed the terminal
                data = b""
            if not data:
                loop.remove_reader(leader)
            drawn.extend(data)

        loop.add_reader(leader, drain)
        try:
            assert proc.stdout is not None
            out = await asyncio.wait_for(proc.stdout.read(), 15)
            code = await asyncio.wait_for(proc.wait(), 15)
        finally:
            loop.remove_reader(leader)
            os.close(leader)
    assert code == 0
    assert sorted(json.loads(line)["serverId"] for line in out.splitlines()) == fake.server_ids
    assert "polling servers" in drawn.decode(errors="replace")


async def test_shards_split_the_fleet_without_overlap(fleet: FakeACPServer) -> None:
    """Three `--shard I/3` copies together poll every server exactly once."""
    ids = fleet.server_ids
    env = cli_env(fleet)
    results = await asyncio.gather(
        *(run("runs", "poll", *ids, "--shard", f"{i}/3", "--json", env=env) for i in range(3))
    )
    shares = [[page["serverId"] for page in r.json()] for r in results]
    assert all(r.code == 0 for r in results), results
    assert sorted(sid for share in shares for sid in share) == sorted(ids)
    assert len(fleet.requests) == len(ids)


async def test_an_empty_shard_is_not_an_error(fleet: FakeACPServer) -> None:
    """A shard that owns none of the servers says so and exits 0 without a request."""
    sid = fleet.server_ids[0]
    empty = next(f"{i}/4" for i in range(4) if not list(parse_shard_owned(sid, i, 4)))
    result = await run("runs", "poll", sid, "--shard", empty, env=cli_env(fleet))
    assert result.code == 0, result
    assert "owns none of the 1 servers" in result.err
    assert fleet.requests == []


def parse_shard_owned(sid: str, index: int, count: int) -> list[str]:
    ids, _ = server_ids([sid], None, (index, count))
    return ids


# -- runs watch ---------------------------------------------------------------------------


async def test_watch_prints_events_as_they_happen_and_stops_on_ctrl_c(
    fleet: FakeACPServer,
) -> None:
    """`runs watch --json` streams created then updated events; SIGINT ends it with exit 0."""
    sid = fleet.server_ids[0]
    run_ = fleet.add_run(sid, status="queued")
    proc = await start("runs", "watch", sid, "--interval", "0.05", "--json", env=cli_env(fleet))
    assert proc.stdout is not None
    created = [json.loads(await read_line(proc.stdout)) for _ in range(5)]
    assert {e["kind"] for e in created} == {"created"}
    assert created[-1]["run"]["id"] == run_["id"]
    fleet.set_run(sid, run_["id"], status="running")
    update = json.loads(await read_line(proc.stdout))
    assert update["kind"] == "updated"
    assert (update["previous"]["status"], update["run"]["status"]) == ("queued", "running")
    result = await interrupt(proc)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    assert result.err == ""


async def test_watch_table_lines_and_sigterm(fleet: FakeACPServer) -> None:
    """Human watch lines carry kind, server, run, status change and title; SIGTERM exits 0."""
    sid = fleet.server_ids[1]
    run_ = fleet.add_run(sid, status="queued", title="Ship the CLI")
    proc = await start("runs", "watch", sid, "--interval", "0.05", env=cli_env(fleet))
    assert proc.stdout is not None
    for _ in range(5):
        await read_line(proc.stdout)
    fleet.set_run(sid, run_["id"], status="completed")
    line = await read_line(proc.stdout)
    assert line.split()[1:] == [
        "updated",
        sid,
        run_["id"],
        "queued",
        "->",
        "completed",
        "Ship",
        "the",
        "CLI",
    ]
    result = await interrupt(proc, signal.SIGTERM)
    assert result.code == 0, result
    assert "Traceback" not in result.err


async def test_watch_reports_transient_errors_and_keeps_going(fleet: FakeACPServer) -> None:
    """A failed poll is a JSON error event, and its server's first failure a WARNING line
    on stderr; the watch goes on."""
    sid = fleet.server_ids[2]
    fleet.fail("status", status=404, server_id=sid)
    proc = await start("runs", "watch", sid, "--interval", "0.05", "--json", env=cli_env(fleet))
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = json.loads(await read_line(proc.stdout))
    assert first["kind"] == "error"
    assert first["error"]["status"] == 404
    assert f" WARNING watch: {sid} is failing: 404: " in await read_line(proc.stderr)
    later = json.loads(await read_line(proc.stdout))
    assert later["kind"] == "created"
    result = await interrupt(proc)
    assert result.code == 0, result


async def test_a_closed_stdout_ends_the_watch_quietly(fleet: FakeACPServer) -> None:
    """When the reader goes away (`| head`), the CLI exits 1 without a traceback."""
    sid = fleet.server_ids[3]
    proc = await start("runs", "watch", sid, "--interval", "0.05", "--json", env=cli_env(fleet))
    assert proc.stdout is not None
    assert proc.stderr is not None
    await read_line(proc.stdout)
    pipe = proc._transport.get_pipe_transport(1)  # type: ignore[attr-defined]
    pipe.close()  # what `head -1` does after its line
    for _ in range(3):  # more events than the pipe's buffer holds would be needed otherwise
        fleet.add_run(sid, title="x" * 40_000)
    code = await asyncio.wait_for(proc.wait(), 10)
    err = (await proc.stderr.read()).decode()
    assert code == 1
    assert "Traceback" not in err
    assert "Exception ignored" not in err


async def test_watch_ends_with_exit_1_when_the_token_is_refused(fleet: FakeACPServer) -> None:
    """A 401 ends the watch: no poll can succeed without a new token."""
    env = cli_env(fleet, ACP_API_KEY=SECRET)
    result = await run("runs", "watch", fleet.server_ids[0], "--interval", "0.05", env=env)
    line = assert_clean_error(result, 1)
    assert "HTTP 401" in line
    assert SECRET not in result.err


@pytest.mark.parametrize("status", [400, 422])
async def test_watch_refused_on_its_first_poll_exits_1_with_one_line(
    fleet: FakeACPServer, status: int
) -> None:
    """A 400/422 before any server answered the watch's request ends it: exit 1, one line."""
    fleet.fail("status", status=status, times=1)
    sid = fleet.server_ids[0]
    result = await run("runs", "watch", sid, "--interval", "0.05", env=cli_env(fleet))
    line = assert_clean_error(result, 1)
    assert f"HTTP {status}" in line
    assert "watch stopped" in line


def test_an_api_error_no_command_handles_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Any ACPError a command lets out is one line and exit 1; -v adds the traceback."""
    import argparse

    from acp_async import NotFoundError
    from acp_async.cli._app import run as run_command
    from acp_async.cli._parser import Command

    async def fails(args: argparse.Namespace) -> int:
        raise NotFoundError("no such server", status=404)

    for verbose in (0, 1):
        args = argparse.Namespace(verbose=verbose)
        assert run_command(Command(fails), args, None) == 1
        err = capsys.readouterr().err
        assert err.splitlines()[-1] == "acp-async: HTTP 404 Not Found: no such server"
        assert ("Traceback" in err) is bool(verbose)
        assert len(err.splitlines()) == 1 or verbose


# -- fake-server and demo -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fake_server_serves_until_ctrl_c() -> None:
    """`fake-server` prints a base URL and token that work, and exits 0 on SIGINT."""
    port = free_port()
    proc = await start(
        "fake-server", "--port", str(port), "--servers", "3", "--runs", "2", env=cli_env()
    )
    assert proc.stdout is not None
    printed = {}
    while len(printed) < 2:
        line = await read_line(proc.stdout)
        if "export " in line:
            name, _, value = line.strip().removeprefix("export ").partition("=")
            printed[name] = value
    assert printed["ACP_BASE_URL"] == f"http://127.0.0.1:{port}"
    async with ACPClient(printed["ACP_API_KEY"], base_url=printed["ACP_BASE_URL"]) as client:
        page = await client.runs.list("srv-0003")
    assert len(page.data) == 2
    result = await interrupt(proc)
    assert result.code == 0, result
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("options", "keys"),
    [((), {"data", "runs"}), (("--shape", "runs"), {"runs"}), (("--shape", "data"), {"data"})],
)
async def test_fake_server_shape_defaults_to_both_lists(
    options: tuple[str, ...], keys: set[str]
) -> None:
    """`fake-server` pages list runs under `data` and `runs` (as the API documents) unless
    `--shape` picks one."""
    port = free_port()
    proc = await start("fake-server", "--port", str(port), *options, env=cli_env())
    assert proc.stdout is not None
    while "Ctrl-C" not in await read_line(proc.stdout):  # printed once it is listening
        pass
    url = f"http://127.0.0.1:{port}/v1/servers/srv-0001/runtime/agent/runs"
    headers = {"Authorization": "Bearer test-token"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body = await response.json()
    result = await interrupt(proc)
    assert result.code == 0, result
    assert {"data", "runs"} & body.keys() == keys
    assert len(body[next(iter(keys))]) == 5


async def test_fake_server_on_a_busy_port_fails_with_one_line() -> None:
    """A port already in use is one line and exit 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = await run("fake-server", "--port", str(port), env=cli_env())
    assert "cannot listen on 127.0.0.1:" in assert_clean_error(result, 1)


async def test_short_demo_shows_the_fan_out_and_the_watch() -> None:
    """A short demo fans out, prints the status summary and the live watch, and exits 0."""
    result = await run("demo", "--servers", "40", "--seconds", "2.5", env=cli_env())
    assert result.code == 0, result
    out = result.out
    assert "client.runs.list_many(40 servers" in out
    assert "40 servers in " in out
    assert "200 runs" in out
    assert "client.runs.watch(4 servers" in out
    assert any(line.split()[1:2] == ["created"] for line in out.splitlines())
    assert "done in " in out
    assert "Traceback" not in result.err


# -- packaging and the optional extra -------------------------------------------------------


async def python(code: str, *args: str, env: dict[str, str]) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def test_the_library_never_imports_rich_or_the_cli() -> None:
    """`import acp_async` (and its testing aid) loads neither rich nor the CLI."""
    code = (
        "import sys, acp_async, acp_async.testing;"
        "assert 'rich' not in sys.modules, 'rich';"
        "assert 'acp_async.cli' not in sys.modules, 'cli'"
    )
    result = await python(code, env=cli_env())
    assert result.code == 0, result.err


WITHOUT_RICH = (
    "import sys; sys.modules['rich'] = None;"  # any `import rich` now raises ImportError
    "from acp_async.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def test_without_rich_tables_are_a_usage_error_and_json_still_works(
    fleet: FakeACPServer,
) -> None:
    """Without the `cli` extra: tables and the demo exit 2 naming the extra; `--json` works."""
    env = cli_env(fleet)
    table, demo, as_json = await asyncio.gather(
        python(WITHOUT_RICH, "runs", "list", fleet.server_ids[0], env=env),
        python(WITHOUT_RICH, "demo", env=env),
        python(WITHOUT_RICH, "runs", "poll", *fleet.server_ids, "--json", env=env),
    )
    for result in (table, demo):
        line = assert_clean_error(result, 2)
        assert "from a clone of the acp-async repository: pip install '.[cli]'" in line
        assert "pip install 'acp-async[cli]' once it is published" in line
    assert as_json.code == 0, as_json
    assert len(as_json.out.splitlines()) == len(fleet.server_ids)


async def test_console_script_is_installed() -> None:
    """The `acp-async` console script runs the same CLI as `python -m acp_async`."""
    script = Path(sys.executable).parent / "acp-async"
    assert script.exists()
    proc = await asyncio.create_subprocess_exec(
        str(script), "--version", stdout=asyncio.subprocess.PIPE, env=cli_env()
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    assert out.decode().startswith("acp-async ")
