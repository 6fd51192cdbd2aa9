"""CLI processes of the fleet tests, started as users start them (``python -m acp_async``),
their output in a log file read as it grows.

Each process leads its own process group, killed whole when its test ends however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from .conftest import wait_until


def log_text(log: Path) -> str:
    """What a process wrote to ``log`` so far (a line cut mid-character included)."""
    return log.read_text(errors="replace")


async def start_logged(
    *args: str, log: Path, env: dict[str, str], stdout: int | None = None
) -> asyncio.subprocess.Process:
    """``python -m acp_async *args``: stderr, and stdout unless ``stdout`` says otherwise
    (``asyncio.subprocess.PIPE``), written to ``log``."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acp_async", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=out if stdout is None else stdout,
            stderr=out, env=env, start_new_session=True,
        )  # fmt: skip


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL to the process's group, if it still runs, and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


@contextlib.asynccontextmanager
async def logged(
    *args: str, log: Path, env: dict[str, str], stdout: int | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """:func:`start_logged`, its process group killed on the way out if still alive."""
    proc = await start_logged(*args, log=log, env=env, stdout=stdout)
    try:
        yield proc
    finally:
        await kill_group(proc)


class Logged:
    """One CLI process and the file its stderr goes to."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    def err(self) -> str:
        return log_text(self.log)

    async def shows(self, text: str, within: float = 20.0) -> None:
        """Wait until ``text`` is in the log; fail with the log if it never is."""
        try:
            await wait_until(lambda: text in self.err(), within)
        except TimeoutError:
            raise AssertionError(f"{text!r} never logged:\n{self.err()}") from None

    async def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 15)
