"""What uvloop buys the CLI: ``acp-async runs poll`` over many servers, with and without it.

Each repetition runs the real command twice as a subprocess (start-up included, as a
user sees it), alternating which goes first; "without" hides uvloop from the process
(``sys.modules["uvloop"] = None``, so its import fails as if it were not installed).
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
import time
from typing import Any

from .http_bench import _ids
from .http_scenarios import TOKEN
from .server import ROOT, LoadServer

_RUN_CLI = "import sys{}; from acp_async.cli import main; sys.exit(main())"
MODES = {"uvloop": "", "asyncio": '; sys.modules["uvloop"] = None'}


def available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def _poll(base_url: str, ids: str, concurrency: int, mode: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of the command."""
    command = [sys.executable, "-c", _RUN_CLI.format(MODES[mode]), "runs", "poll"]
    command += ["--servers-file", "-", "--base-url", base_url]
    command += ["--concurrency", str(concurrency), "--limit", "20"]
    env = {**os.environ, "ACP_API_KEY": TOKEN, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        command,
        input=ids,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        check=True,
        timeout=120,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def measure(*, servers: int, concurrency: int, reps: int) -> dict[str, Any]:
    """Per mode: wall seconds and CPU seconds (the command's own, user + system) for the
    whole command, one value per repetition. On a shared machine the wall time of a
    repetition varies by 2x with the neighbours' load; the CPU time much less."""
    ids = "\n".join(_ids(servers, servers)) + "\n"
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    with LoadServer() as server:
        for rep in range(reps):
            order = list(MODES) if rep % 2 == 0 else list(reversed(MODES))
            for mode in order:
                wall, used = _poll(server.base_url, ids, concurrency, mode)
                seconds[mode].append(wall)
                cpu[mode].append(used)
    return {"seconds": seconds, "cpu": cpu, "servers": servers, "concurrency": concurrency}
