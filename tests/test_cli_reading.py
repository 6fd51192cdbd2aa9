"""The CLI as a person reads it: one line per problem, hints that lead somewhere, true help."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acp_async import ACPClient
from acp_async.cli._app import build_parser
from acp_async.testing import FakeACPServer

from .test_cli import (
    WITHOUT_RICH,
    assert_clean_error,
    cli_env,
    interrupt,
    read_line,
    run,
    start,
)

CLI_DOC = Path(__file__).parent.parent / "docs" / "cli.md"


@pytest.fixture
async def fleet() -> AsyncIterator[FakeACPServer]:
    async with FakeACPServer(servers=3, runs_per_server=2, seed=5) as server:
        yield server


async def test_plain_http_is_one_warning_line(fleet: FakeACPServer) -> None:
    """A non-loopback http:// base URL gives one `warning:` line, not a Python warning."""
    port = fleet.base_url.rsplit(":", 1)[1]
    # 0.0.0.0 is not a loopback address to the client, yet Linux connects it to this host.
    result = await run(
        "runs", "list", fleet.server_ids[0], "--json", "--base-url", f"http://0.0.0.0:{port}",
        env=cli_env(fleet),
    )  # fmt: skip
    assert result.code == 0, result
    line = assert_clean_error(result, 0)
    assert line.startswith("acp-async: warning: ")
    assert "http://0.0.0.0" in line
    assert "InsecureTransportWarning" not in result.err
    assert len(result.lines()) == 2


async def test_fake_server_on_every_interface_prints_a_url_that_does_not_warn() -> None:
    """`fake-server --host 0.0.0.0` points this machine at loopback, and says why."""
    proc = await start("fake-server", "--host", "0.0.0.0", "--port", "0", env=cli_env())
    assert proc.stdout is not None
    assert proc.stderr is not None
    printed = {}
    while len(printed) < 2:
        line = await read_line(proc.stdout)
        if "export " in line:
            name, _, value = line.strip().removeprefix("export ").partition("=")
            printed[name] = value
    assert printed["ACP_BASE_URL"].startswith("http://127.0.0.1:")
    hint = await read_line(proc.stderr)
    assert "every interface" in hint
    assert "clear text" in hint
    # Warnings are errors in this suite: an InsecureTransportWarning would fail here.
    async with ACPClient(printed["ACP_API_KEY"], base_url=printed["ACP_BASE_URL"]) as client:
        page = await client.runs.list("srv-0001")
    assert len(page.data) == 5
    result = await interrupt(proc)
    assert result.code == 0, result


async def test_connection_errors_are_said_once_without_aiohttp_internals() -> None:
    """Nothing listening: the reason and the URL once; no aiohttp class name or `ssl:`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = cli_env(ACP_API_KEY="k", ACP_BASE_URL=f"http://127.0.0.1:{port}")
    result = await run("runs", "list", "srv-0001", env=env)
    line = assert_clean_error(result, 1)
    assert line.startswith("acp-async: srv-0001: connection failed: ")
    assert line.count(f"127.0.0.1:{port}") == 1
    assert f"(http://127.0.0.1:{port}/v1/servers/srv-0001/runtime/agent/runs)" in line
    for internal in ("ClientConnector", "ssl:", "Error:", "GET "):
        assert internal not in line


async def test_a_bad_server_id_says_why(fleet: FakeACPServer) -> None:
    """`runs list ..` names the rule the id breaks, not just that it is bad."""
    result = await run("runs", "list", "..", env=cli_env(fleet))
    line = assert_clean_error(result, 2)
    assert "bad server id '..'" in line
    assert "other than '.' and '..'" in line


async def test_a_busy_port_hints_at_port_0() -> None:
    """A port in use says so and suggests `--port 0`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = await run("fake-server", "--port", str(port), env=cli_env())
    line = assert_clean_error(result, 1)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "--port 0" in line


async def test_global_options_work_before_the_subcommand(fleet: FakeACPServer) -> None:
    """`acp-async --json -v --base-url URL runs list ID` is the same as with them after."""
    env = cli_env(COMPUTER_AGENTS_API_KEY=fleet.token)
    sid = fleet.server_ids[0]
    before, after = await asyncio.gather(
        run("--json", "--base-url", fleet.base_url, "runs", "list", sid, env=env),
        run("runs", "list", sid, "--json", "--base-url", fleet.base_url, env=env),
    )
    assert before.code == after.code == 0, (before, after)
    assert before.json() == after.json()
    assert len(before.json()) == 2


async def test_a_global_option_given_twice_keeps_the_later_one(fleet: FakeACPServer) -> None:
    """The option after the subcommand wins; one before it is not lost when none is after."""
    env = cli_env(fleet)
    sid = fleet.server_ids[0]
    result = await run(
        "--base-url", "http://127.0.0.1:9", "runs", "list", sid, "--base-url", fleet.base_url,
        "--json", env=env,
    )  # fmt: skip
    assert result.code == 0, result
    fleet.fail("status", status=503, server_id=sid)
    verbose = await run("-v", "runs", "list", sid, "--json", env=env)
    assert "retrying GET" in verbose.err


async def test_global_options_are_refused_where_they_mean_nothing() -> None:
    """`acp-async --json fake-server` is a usage error naming the option."""
    result = await run("--json", "fake-server", env=cli_env())
    assert "fake-server does not take --json" in assert_clean_error(result, 2)


def test_help_names_every_exit_code() -> None:
    """`--help` lists exit codes 0, 1, 2 and 130."""
    text = " ".join(build_parser().format_help().split())
    assert "Exit codes: 0 ok" in text
    for code in ("1 API or network error", "2 usage error", "130 interrupted"):
        assert code in text


def _cli_doc_section(title: str) -> str:
    text = CLI_DOC.read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start:end]


def test_demo_help_and_readme_give_the_same_duration() -> None:
    """`demo --help` and docs/cli.md's demo section say the same number of seconds."""
    subcommands = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    demo = subcommands.choices["demo"]  # type: ignore[attr-defined]
    helped = re.search(r"about (\d+) s", demo.format_help().replace("\n", " "))
    said = re.search(r"ends by itself in about (\d+) s", _cli_doc_section("## `demo`"))
    assert helped is not None
    assert said is not None
    assert helped[1] == said[1]


def _options(parser: object) -> set[str]:
    shown = set()
    for action in parser._actions:  # type: ignore[attr-defined]
        if action.help == "==SUPPRESS==" or not action.option_strings:
            continue
        if "-h" in action.option_strings:
            continue
        shown.add(max(action.option_strings, key=len))
    return shown


def test_readme_usage_summary_names_every_option() -> None:
    """Each usage line of docs/cli.md shows every option of its command."""
    section = _cli_doc_section("# Command line")
    usage: list[str] = []
    continued = False
    for line in section.splitlines():
        if line.startswith("    acp-async "):
            usage.append(line.strip())
        elif continued and line.startswith("     "):  # the line above, continued
            usage[-1] += " " + line.strip()
        else:
            continued = False
            continue
        continued = True
    # The Redis connection options every fleet command takes are said once, below the block.
    said_once = section[section.index("Every `fleet` command finds Redis") :].split("\n\n")[0]
    fleet_wide = set(re.findall(r"--[a-z-]+", said_once))
    assert {"--redis", "--redis-cluster", "--redis-sentinel", "--redis-master"} <= fleet_wide
    parser = build_parser()
    globals_ = _options(parser) - {"--version"}
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    checked = 0
    for name, sub in commands.items():
        nested = getattr(sub, "_subparsers", None)
        leaves = nested._group_actions[0].choices.items() if nested else [("", sub)]
        for leaf, leaf_parser in leaves:
            words = f"acp-async {name} {leaf}".split()
            prefix = " ".join(words) + " "
            lines = [line for line in usage if line.startswith(prefix) or line == prefix.strip()]
            assert len(lines) == 1, f"no usage line for {' '.join(words)!r}"
            named = set(re.findall(r"--[a-z-]+", lines[0])) | (
                fleet_wide if name == "fleet" else set()
            )
            missing = _options(leaf_parser) - globals_ - named
            assert not missing, f"{' '.join(words)}: docs/cli.md omits {sorted(missing)}"
            checked += 1
    assert checked >= 5


async def test_watch_without_rich_prints_plain_lines(fleet: FakeACPServer) -> None:
    """Without the `cli` extra `runs watch` still prints its lines, as plain text."""
    sid = fleet.server_ids[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WITHOUT_RICH, "runs", "watch", sid, "--interval", "0.05",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(fleet),
    )  # fmt: skip
    assert proc.stdout is not None
    lines = [await read_line(proc.stdout) for _ in fleet.runs(sid)]
    result = await interrupt(proc, signal.SIGTERM)
    assert result.code == 0, result
    assert result.err == ""
    for line, run_ in zip(lines, reversed(fleet.runs(sid)), strict=True):
        assert line.split()[1:5] == ["created", sid, run_["id"], run_["status"]]
        assert line.rstrip().endswith(run_["title"])
        assert "\x1b" not in line
