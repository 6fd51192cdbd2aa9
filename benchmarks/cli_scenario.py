"""What uvloop buys the CLI: ``acp-async runs poll`` over many servers, with and without it.

Each repetition runs the real command twice as a subprocess (start-up included, as a
user sees it), alternating which goes first; "without" hides uvloop from the process
(``sys.modules["uvloop"] = None``, so its import fails as if it were not installed).
"""

from __future__ import annotations

import importlib.util
import os
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


def _poll(base_url: str, ids: str, concurrency: int, mode: str) -> float:
    command = [sys.executable, "-c", _RUN_CLI.format(MODES[mode]), "runs", "poll"]
    command += ["--servers-file", "-", "--base-url", base_url]
    command += ["--concurrency", str(concurrency), "--limit", "20"]
    env = {**os.environ, "ACP_API_KEY": TOKEN, "PYTHONPATH": str(ROOT)}
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
    return time.perf_counter() - started


def measure(*, servers: int, concurrency: int, reps: int) -> dict[str, Any]:
    """Per mode: seconds for the whole command, one value per repetition."""
    ids = "\n".join(_ids(servers, servers)) + "\n"
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    with LoadServer() as server:
        for rep in range(reps):
            order = list(MODES) if rep % 2 == 0 else list(reversed(MODES))
            for mode in order:
                seconds[mode].append(_poll(server.base_url, ids, concurrency, mode))
    return {"seconds": seconds, "servers": servers, "concurrency": concurrency}
