"""The CLI runs on uvloop when the ``speed`` extra installed it, else on asyncio's loop."""

from __future__ import annotations

import asyncio
import sys

import pytest

from acp_async.cli import _app


async def loop_module(seen: list[str]) -> int:
    seen.append(type(asyncio.get_running_loop()).__module__)
    return 7


def test_uvloop_runs_the_cli_when_installed() -> None:
    """With uvloop importable, the command's coroutine runs on uvloop's loop."""
    pytest.importorskip("uvloop")
    seen: list[str] = []
    assert _app._event_loop(loop_module(seen)) == 7
    assert seen[0].startswith("uvloop")


def test_asyncio_runs_the_cli_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop (import fails), the stdlib loop runs it."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    seen: list[str] = []
    assert _app._event_loop(loop_module(seen)) == 7
    assert seen[0].startswith("asyncio")
