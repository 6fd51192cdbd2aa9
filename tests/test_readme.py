"""Every code block in README.md and docs/*.md runs: a change that breaks an example fails here.

- Python blocks are complete programs. Each runs in a subprocess with ``ACP_BASE_URL`` and
  ``ACP_API_KEY`` pointing at a FakeACPServer with ``acp-async fake-server``'s data, as the
  README tells a reader to do; one that defines ``test_*`` functions runs under plain
  pytest (no configuration of ours), as a reader's test file would.
- Console blocks that start with ``$ `` run in bash, command by command, against a
  FakeACPServer with the data of ``acp-async fake-server --servers 5``; the output shown
  must be the output printed (stdout and stderr as a terminal shows them), up to ports,
  elapsed times, clock times and request ids. A line ``...`` elides lines; then each
  line shown must be among those printed.
- Every other block is listed in ``ELSEWHERE`` with the check that covers it, so a new
  block cannot slip in unchecked.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from acp_async.cli._app import parse
from acp_async.testing import FakeACPServer

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent


@attrs.frozen
class Block:
    language: str
    text: str
    path: str  # the document, relative to the repository
    line: int  # where the block starts in it

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.language})"


def document_blocks(document: Path) -> list[Block]:
    blocks = []
    lines = document.read_text().splitlines()
    name = str(document.relative_to(ROOT))
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = lines.index("```", index + 1)
            text = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(Block(line[3:].strip(), text, name, index + 1))
            index = end
        index += 1
    return blocks


BLOCKS = [block for document in DOCUMENTS for block in document_blocks(document)]

# Blocks that this file does not run, by their first line, and what checks them instead.
ELSEWHERE = {
    "pip install '.[speed,cli]'": "`make install-check` (in `make test`) installs the "
    "package with these extras; `.venv` is made with the same pip install",
    "make dist": "`make install-check` runs `make dist` and installs that wheel",
    "make demo": "`make demo` and `make test` are what CI runs (`.ci/run`)",
    "for i in 0 1 2 3; do": "tests/test_examples.py runs examples/fleet_worker.py as a worker",
    "make bench": "tests/test_benchmarks_smoke.py runs every benchmark scenario, small",
    "⠋ polling servers": "a picture of the progress bar; test_cli.py draws it on a pty",
    "$ acp-async runs watch --servers-file servers.txt --json --metrics-port": "tests/"
    "test_observability.py runs `runs watch --metrics-port 0` and scrapes /metrics",
    "$ export ACP_REDIS_URL": "tests/test_fleet_processes.py runs fleet add, worker and "
    "status as processes against a real redis-server",
    "redis-server --port 6390": "tests/test_fleet.py runs docs/redis_cancel.py against "
    "a real redis-server",
    "2026-05-04 09:14:03,120 INFO fleet: worker": "tests/test_fleet_operations.py runs "
    "workers as processes and checks each of these lines (start, failing, recovered, stop)",
    "appendonly yes": "tests/redis_server.py runs every test's redis-server with these settings",
    "$ acp-async fleet worker --redis redis://node-1:6379/0 --redis-cluster": "tests/"
    "test_fleet_processes.py runs fleet workers on a local Redis Cluster; "
    "test_fleet_deployments.py through a Sentinel failover and with --redis-ca, "
    "test_fleet_redis_credentials.py with the passwords of ACP_REDIS_PASSWORD and "
    "ACP_REDIS_SENTINEL_PASSWORD",
}


def python_blocks() -> list[Block]:
    return [b for b in BLOCKS if b.language == "python"]


def cli_console_blocks() -> list[Block]:
    """Console blocks of commands and their output, except those checked elsewhere."""
    return [
        b
        for b in BLOCKS
        if b.language == "console" and b.text.startswith("$ ") and not elsewhere(b)
    ]


def elsewhere(block: Block) -> bool:
    return block.text.startswith(tuple(ELSEWHERE))


def test_every_block_is_checked() -> None:
    """A block is run here or named in ELSEWHERE with what checks it; no stale entries."""
    run_here = {*python_blocks(), *cli_console_blocks()}
    yaml = [b for b in BLOCKS if b.language == "yaml"]
    others = [b for b in BLOCKS if b not in run_here and b not in yaml]
    unchecked = [str(b) for b in others if not elsewhere(b)]
    assert not unchecked, f"blocks no test runs: {unchecked}"
    for first in ELSEWHERE:
        assert any(b.text.startswith(first) for b in others), f"no block {first!r}"
    assert len(python_blocks()) >= 4
    assert len(cli_console_blocks()) >= 8


# -- Python blocks -------------------------------------------------------------------------


@pytest.fixture
async def fake_server_data() -> AsyncIterator[FakeACPServer]:
    """`acp-async fake-server`'s servers and runs; runs move on as they do there."""
    async with FakeACPServer(servers=20, runs_per_server=5, seed=0, progress_every=0.2) as fake:
        yield fake


async def run_process(*args: str, cwd: Path, env: dict[str, str], timeout: float = 45.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out.decode()}"
    return out.decode()


def reader_env(fake: FakeACPServer | None = None) -> dict[str, str]:
    """A reader's environment: our venv's commands on PATH, none of our variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "COMPUTER_AGENTS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "error"  # an "Unclosed client session" fails the example
    env.pop("COLUMNS", None)
    if fake is not None:
        env.update(ACP_BASE_URL=fake.base_url, ACP_API_KEY=fake.token)
    return env


@pytest.mark.parametrize("block", python_blocks(), ids=str)
async def test_python_example_runs(
    block: Block, fake_server_data: FakeACPServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The example, pasted into a file, runs to the end without an error or a warning.

    A block whose first line is ``# needs: redis`` gets ``ACP_REDIS_URL`` pointing at the
    session's real redis-server."""
    env = reader_env(fake_server_data)
    if block.text.startswith("# needs: redis"):
        env["ACP_REDIS_URL"] = request.getfixturevalue("redis_server").url
    if re.search(r"^async def test_|^def test_", block.text, re.MULTILINE):
        (tmp_path / "test_worker.py").write_text(block.text)
        (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the reader's, not ours
        # pytest-asyncio warns a bare configuration about a future default: not an error
        # for a reader; an unclosed session would still show as a failure or a warning.
        env.pop("PYTHONWARNINGS")
        out = await run_process(
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_worker.py",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert "1 passed" in out, out
        assert "Unclosed" not in out, out
        return
    (tmp_path / "example.py").write_text(block.text)
    out = await run_process(sys.executable, "example.py", cwd=tmp_path, env=env)
    assert out.strip(), "the example printed nothing"
    assert "Traceback" not in out


# -- console blocks -----------------------------------------------------------------------


@attrs.frozen
class Step:
    command: str
    shown: list[str]  # the output the README shows for it


def steps(block: Block) -> list[Step]:
    result: list[Step] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        assert line.startswith("$ "), f"{block}: output before any command: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            index += 1
            command += "\n" + lines[index]
        index += 1
        shown = []
        while index < len(lines) and not lines[index].startswith("$ "):
            shown.append(lines[index])
            index += 1
        result.append(Step(command, shown))
    return result


VOLATILE = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\bin \d+\.\ds\b"), "in N.Ns"),
    (re.compile(r"request id req-\d+"), "request id req-N"),
    (re.compile(r"^\d\d:\d\d:\d\d  "), "HH:MM:SS  "),
]


def normal(line: str) -> str:
    for pattern, replacement in VOLATILE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def as_completed(command: str) -> bool:
    """Output in the order servers answered (or were polled): compared as a multiset."""
    return ("runs poll" in command and "--json" in command) or "runs watch" in command


def assert_shown(step: Step, printed: list[str], block: Block) -> None:
    shown = [normal(line) for line in step.shown]
    got = [normal(line) for line in printed]
    message = f"{block}: `{step.command}` printed:\n" + "\n".join(printed)
    if "..." in shown:
        rest = [line for line in shown if line != "..."]
        missing = [line for line in rest if line not in got]
        assert not missing, f"{message}\n\nnot printed: {missing}"
        assert len(got) >= len(rest), message
    elif as_completed(step.command):
        assert sorted(shown) == sorted(got), message
    else:
        assert shown == got, message


@pytest.fixture
async def five_servers() -> AsyncIterator[FakeACPServer]:
    """The data of `acp-async fake-server --servers 5` when it starts."""
    async with FakeACPServer(servers=5, runs_per_server=5, seed=0) as fake:
        yield fake


MARK = "@@readme-step-done@@"


async def run_in_bash(commands: list[str], env: dict[str, str], cwd: Path) -> list[list[str]]:
    """Each command in one bash, stdout and stderr together; the lines each one printed."""
    # The mark after each command keeps its exit status for the next (`echo $?`).
    script = "".join(
        f"{command}\n__status=$?; printf '%s\\n' {MARK}; (exit $__status)\n" for command in commands
    )
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    chunks = out.decode().split(MARK + "\n")
    assert len(chunks) == len(commands) + 1, out.decode()
    return [chunk.splitlines() for chunk in chunks[:-1]]


def special(command: str) -> bool:
    """Commands that run until stopped, or take a while: each has its own test below."""
    return command.startswith(("acp-async fake-server", "acp-async demo")) or (
        "runs watch" in command
    )


@pytest.mark.parametrize(
    "block", [b for b in cli_console_blocks() if not special(steps(b)[0].command)], ids=str
)
async def test_console_example_prints_what_it_shows(
    block: Block, five_servers: FakeACPServer, tmp_path: Path
) -> None:
    """Each command of the block, run in bash, prints the output the README shows."""
    commands = [step.command for step in steps(block)]
    printed = await run_in_bash(commands, reader_env(five_servers), tmp_path)
    for step, lines in zip(steps(block), printed, strict=True):
        assert_shown(step, lines, block)


def the_block(starting: str) -> tuple[Block, Step]:
    found = [b for b in cli_console_blocks() if steps(b)[0].command.startswith(starting)]
    assert len(found) == 1, f"one block starting with `$ {starting}`"
    return found[0], steps(found[0])[0]


async def read_until(stream: asyncio.StreamReader, last: str, timeout: float = 15.0) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while not lines or last not in lines[-1]:
            line = await stream.readline()
            assert line, "\n".join(lines)
            lines.append(line.decode().rstrip("\n"))
    return lines


async def test_fake_server_example(tmp_path: Path) -> None:
    """`acp-async fake-server --servers 5` prints what the README shows (on a free port)."""
    block, step = the_block("acp-async fake-server")
    argv = [*shlex.split(step.command), "--port", "0"]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=reader_env(), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        printed = await read_until(proc.stdout, "Ctrl-C stops it.")
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
    assert_shown(step, printed, block)


WATCH_BLOCKS = [b for b in cli_console_blocks() if b.text.startswith("$ acp-async runs watch srv")]


@pytest.mark.parametrize("block", WATCH_BLOCKS, ids=str)
async def test_watch_example(block: Block, five_servers: FakeACPServer, tmp_path: Path) -> None:
    """`runs watch` prints the block's lines: the first poll, then the changes the fake made.

    Between polls the fake moves every unfinished run one status on and queues a new run,
    as `fake-server` does every few seconds.
    """
    step = steps(block)[0]
    assert step.shown[-1] == "^C"
    argv = [*shlex.split(step.command.replace("--interval 1", "--interval 0.1"))]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=reader_env(five_servers), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    watched = [word for word in argv if word.startswith("srv-")]
    first = sum(len(five_servers.runs(sid)) for sid in watched)
    printed: list[str] = []
    try:
        async with asyncio.timeout(15):
            for _ in range(first):
                printed.append((await proc.stdout.readline()).decode().rstrip("\n"))
            changes = 0
            for sid in watched:
                changes += sum(r["status"] in ("queued", "running") for r in five_servers.runs(sid))
                five_servers.advance(sid)
            five_servers.add_run(watched[-1], title="Translate onboarding docs to German")
            for _ in range(changes + 1):
                printed.append((await proc.stdout.readline()).decode().rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, rest.decode()
    assert_shown(Step(step.command, step.shown[:-1]), printed, block)


async def test_demo_example(tmp_path: Path) -> None:
    """`acp-async demo` prints the README's lines; numbers and watch events vary by run."""
    block, step = the_block("acp-async demo")
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(step.command), env=reader_env(), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, out.decode()
    printed = {_loose(line) for line in out.decode().splitlines()}
    for line in step.shown:
        if line != "...":
            assert _loose(line) in printed, f"{block}: not printed: {line!r}\n{out.decode()}"


def _loose(line: str) -> str:
    """A demo line with its numbers, run ids, statuses and titles of events left out."""
    event = re.match(r"\d\d:\d\d:\d\d  (created|updated)  (srv-\d+)", line)
    if event:
        return f"event {event[1]}"
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    line = re.sub(r"─+", "─", line)
    return " ".join(line.split())


# -- the Kubernetes example --------------------------------------------------------------


def test_kubernetes_args_are_a_valid_command() -> None:
    """The Job's `command` + `args` parse as an `acp-async` command line."""
    (block,) = [b for b in BLOCKS if b.language == "yaml" and "kind: Job" in b.text]
    found = re.search(r"args: (\[.*?\])", block.text, re.DOTALL)
    assert found is not None
    args = re.findall(r'"([^"]*)"', found[1])
    args = [arg.replace("$(JOB_COMPLETION_INDEX)", "2") for arg in args]
    assert 'command: ["acp-async"]' in block.text
    parsed = parse(args)
    assert parsed.shard == (2, 4)
    assert parsed.json is True


def test_fleet_worker_deployments_run_a_valid_command() -> None:
    """The fleet Deployment's and compose file's `acp-async fleet worker ...` parse."""
    blocks = [b for b in BLOCKS if b.language == "yaml" and "fleet worker" in b.text]
    assert len(blocks) == 2
    for block in blocks:
        found = re.search(r"exec acp-async ([^\"]*)\"", block.text)
        assert found is not None
        parsed = parse(shlex.split(found[1]))
        assert parsed.fleet_command == "worker"


async def test_shard_loop_example(five_servers: FakeACPServer, tmp_path: Path) -> None:
    """The four `--shard i/4` watchers of the README together watch each server once."""
    block, step = the_block("for i in 0 1 2 3; do acp-async runs watch")
    assert step.shown == []
    ids = five_servers.server_ids
    (tmp_path / "fleet.txt").write_text("\n".join(ids) + "\n")
    files = [tmp_path / f"watch-{i}.jsonl" for i in range(4)]
    total = sum(len(five_servers.runs(sid)) for sid in ids)
    # The README's line, then what a person does later: stop the watchers.
    wait = f"until [ $(cat watch-*.jsonl 2>/dev/null | wc -l) -ge {total} ]; do sleep 0.05; done"
    script = f"{step.command}\n{wait}\nkill $(jobs -p)\nwait\n"
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, env=reader_env(five_servers),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    owners: dict[str, set[int]] = {}
    for index, path in enumerate(files):
        for line in path.read_text().splitlines():
            owners.setdefault(json.loads(line)["serverId"], set()).add(index)
    assert sorted(owners) == ids, f"{block}: {owners}"
    assert all(len(shards) == 1 for shards in owners.values()), owners
