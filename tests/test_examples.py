"""The examples run for real: the worker stops cleanly and resumes; the app shares a client."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from aiohttp import web

from acp_async.testing import FakeACPServer

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
async def small_fleet() -> AsyncIterator[FakeACPServer]:
    async with FakeACPServer(servers=4, runs_per_server=3) as fake:
        yield fake


async def run_worker(
    fake: FakeACPServer, servers: Path, state: Path, until: str
) -> tuple[int, str]:
    """Start the worker, wait for `until` on stderr, send SIGTERM, return (code, stderr)."""
    env = {**os.environ, "ACP_API_KEY": fake.token, "ACP_BASE_URL": fake.base_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "fleet_worker.py"),
        str(servers),
        "--state",
        str(state),
        "--interval",
        "0.05",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines = []
    async with asyncio.timeout(20):
        while until not in "".join(lines):
            line = await process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line.decode())
        process.send_signal(signal.SIGTERM)
        rest = await process.stderr.read()
        code = await process.wait()
    return code, "".join(lines) + rest.decode()


async def test_worker_stops_cleanly_and_resumes(small_fleet: FakeACPServer, tmp_path: Path) -> None:
    """SIGTERM exits 0 with no traceback; a restart with the saved state re-creates nothing."""
    servers = tmp_path / "servers.txt"
    servers.write_text("\n".join(small_fleet.server_ids))
    state = tmp_path / "state.json"
    last = small_fleet.runs(small_fleet.server_ids[-1])[0]["id"]

    code, output = await run_worker(small_fleet, servers, state, until=last)
    assert code == 0, output
    assert "Traceback" not in output
    assert "Unclosed" not in output
    assert "stopped; state saved" in output
    assert output.count(" created: ") == 12
    assert small_fleet.token not in output
    saved = json.loads(state.read_text())
    assert sorted(saved) == sorted(small_fleet.server_ids)

    new = small_fleet.add_run(small_fleet.server_ids[0], title="after restart")
    code, output = await run_worker(small_fleet, servers, state, until=new["id"])
    assert code == 0, output
    assert output.count(" created: ") == 1


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_app_keeps_one_client_for_its_life(
    small_fleet: FakeACPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app opens one client at start-up, serves runs with it, and closes it at cleanup."""
    monkeypatch.setenv("ACP_API_KEY", small_fleet.token)
    monkeypatch.setenv("ACP_BASE_URL", small_fleet.base_url)
    example = load_example("app_client")
    app = example.make_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sid = small_fleet.server_ids[1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/servers/{sid}/runs") as response:
                body = await response.json()
            async with http.get(f"http://{host}:{port}/servers/unknown/runs") as missing:
                assert missing.status == 404
    finally:
        client = app[example.CLIENT]
        await runner.cleanup()
    assert [run["id"] for run in body["runs"]] == [r["id"] for r in small_fleet.runs(sid)]
    assert client.closed
