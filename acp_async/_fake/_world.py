"""The fake's world: seeded servers and runs, scripted changes, progression over time.

Everything here is plain data and deterministic for a given seed and sequence of
calls; nothing knows about HTTP. Runs are stored as the API's camelCase dicts, so
what a test scripts is exactly what the server sends.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs

__all__ = ("Server", "World")

_TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
# Seeded timestamps count from a fixed instant so the same seed gives the same JSON.
_EPOCH: Final = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
_FAIL_SHARE: Final = 0.2

_STATUS_WEIGHTS: Final = {
    "queued": 15,
    "running": 20,
    "completed": 45,
    "failed": 12,
    "cancelled": 8,
}
_TITLES: Final = (
    "Summarize weekly sales report",
    "Triage new GitHub issues",
    "Refactor the billing module",
    "Draft release notes for v2.4",
    "Compare competitor pricing pages",
    "Update dependency lockfile",
    "Translate onboarding docs to German",
    "Reconcile March invoices",
    "Write tests for the auth middleware",
    "Clean up stale feature flags",
)
_ERRORS: Final = (
    "Tool call timed out after 120s",
    "Sandbox exited with code 137 (out of memory)",
    "Upstream model provider returned 529 (overloaded)",
    "Permission denied writing to /workspace/output",
)
_SOURCES: Final = ("api", "cli", "schedule", "webhook")
_TEAMS: Final = ("growth", "platform", "finance", "support")
_PRIORITIES: Final = ("low", "normal", "high")
_THREAD_STATUSES: Final = ("active", "idle", "archived")
_PROTOCOLS: Final = ("acp/1.0", "acp/1.1")


@attrs.define
class Server:
    id: str
    runtime_id: str
    runs: list[dict[str, Any]]  # newest first
    last_created: datetime
    progressed_at: float


class World:
    """The servers and their runs, and how runs move through their statuses."""

    def __init__(
        self,
        *,
        servers: int | Iterable[str],
        runs_per_server: int,
        seed: int,
        progress_every: float | None,
        clock: Callable[[], float],
    ) -> None:
        if runs_per_server < 0:
            raise ValueError("runs_per_server must be >= 0")
        if progress_every is not None and progress_every <= 0:
            raise ValueError("progress_every must be > 0 or None")
        ids = _seed_ids(servers)
        self._seed = seed
        self._progress_every = progress_every
        self._clock = clock
        self._rng = random.Random(seed)
        self._servers: dict[str, Server] = {}
        self._run_ids: set[str] = set()
        for server_id in ids:
            self.add_server(server_id)
            self._seed_runs(self._servers[server_id], runs_per_server)

    @property
    def server_ids(self) -> list[str]:
        return list(self._servers)

    def find(self, server_id: str) -> Server | None:
        return self._servers.get(server_id)

    def progress(self, server_id: str) -> None:
        """Advance the server's runs by the whole periods elapsed on `clock`, if it exists."""
        server = self._servers.get(server_id)
        if server is None or self._progress_every is None:
            return
        periods = int((self._clock() - server.progressed_at) // self._progress_every)
        if periods > 0:
            self._advance_server(server, periods)
            server.progressed_at += periods * self._progress_every

    # -- scripting -------------------------------------------------------------

    def add_server(self, server_id: str) -> None:
        if not isinstance(server_id, str):
            raise TypeError(f"server_id must be a str, not {type(server_id).__name__}")
        if not server_id:
            raise ValueError("server_id must be a non-empty str")
        if server_id in self._servers:
            raise ValueError(f"server {server_id!r} already exists")
        self._servers[server_id] = Server(
            id=server_id,
            runtime_id=f"rt-{random.Random(f'{self._seed}:{server_id}').getrandbits(48):012x}",
            runs=[],
            last_created=_EPOCH,
            progressed_at=self._clock(),
        )

    def add_run(self, server_id: str, **fields: Any) -> dict[str, Any]:
        server = self._server(server_id)
        run = self._new_run(server, str(fields.get("status", "queued")))
        run.update(fields)
        self._settle(run, set(fields))
        server.runs.insert(0, run)
        self._run_ids.add(str(run.get("id")))
        return copy.deepcopy(run)

    def runs(self, server_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self._server(server_id).runs)

    def set_run(self, server_id: str, run_id: str, **fields: Any) -> None:
        run = self._find_run(self._server(server_id), run_id)
        run.update(fields)
        self._settle(run, set(fields))

    def advance(self, server_id: str | None = None, steps: int = 1) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError("steps must be an int >= 0")
        targets = self._servers.values() if server_id is None else [self._server(server_id)]
        for server in targets:
            self._advance_server(server, steps)

    # -- seeded data -------------------------------------------------------------

    def _server(self, server_id: str) -> Server:
        try:
            return self._servers[server_id]
        except KeyError:
            raise KeyError(f"no server {server_id!r} on this FakeACPServer") from None

    @staticmethod
    def _find_run(server: Server, run_id: str) -> dict[str, Any]:
        for run in server.runs:
            if run.get("id") == run_id:
                return run
        raise KeyError(f"no run {run_id!r} on server {server.id!r}")

    def _seed_runs(self, server: Server, count: int) -> None:
        statuses, weights = zip(*_STATUS_WEIGHTS.items(), strict=True)
        for _ in range(count):
            status = self._rng.choices(statuses, weights)[0]
            run = self._new_run(server, status)
            self._settle(run, {"status"})
            server.runs.insert(0, run)
            self._run_ids.add(run["id"])

    def _new_run(self, server: Server, status: str) -> dict[str, Any]:
        """A realistic run, created a little after the server's newest one."""
        rng = self._rng
        server.last_created += timedelta(milliseconds=rng.randint(5_000, 900_000))
        title = rng.choice(_TITLES)
        thread_title = rng.choice(_TITLES)
        return {
            "id": self._new_run_id(),
            "serverId": server.id,
            "threadId": f"thr-{rng.getrandbits(48):012x}",
            "title": title,
            "input": f"Please {title[0].lower()}{title[1:]}.",
            "output": "",
            "mode": rng.choice(("sync", "async")),
            "status": status,
            "metadata": {
                "source": rng.choice(_SOURCES),
                "attempt": rng.randint(1, 3),
                "labels": {"team": rng.choice(_TEAMS), "priority": rng.choice(_PRIORITIES)},
            },
            "createdAt": _iso(server.last_created),
            "sessionProtocol": rng.choice(_PROTOCOLS),
            "threadBacked": rng.random() < 0.7,
            "threadStatus": rng.choice(_THREAD_STATUSES),
            "threadTitle": thread_title,
        }

    def _new_run_id(self) -> str:
        while True:
            run_id = f"run-{self._rng.getrandbits(48):012x}"
            if run_id not in self._run_ids:
                return run_id

    def _outcome_rng(self, run: dict[str, Any]) -> random.Random:
        """Per-run randomness, so a run's fate does not depend on call order."""
        return random.Random(f"{self._seed}:{run.get('id')}")

    def _settle(self, run: dict[str, Any], given: set[str]) -> None:
        """Make the fields that follow from ``status`` agree with it.

        Only when ``status`` was just set, and never over a field the caller
        gave explicitly.
        """
        if "status" not in given:
            return
        status = run.get("status")
        rng = self._outcome_rng(run)
        took = timedelta(milliseconds=rng.randint(2_000, 600_000))
        error = rng.choice(_ERRORS)
        if status in _TERMINAL:
            if "completedAt" not in given and "completedAt" not in run:
                run["completedAt"] = _iso(_parse_iso(run.get("createdAt"), _EPOCH) + took)
            if status == "completed" and "output" not in given and not run.get("output"):
                run["output"] = f"Done: {run.get('title') or 'the task'}."
        elif "completedAt" not in given:
            run.pop("completedAt", None)
        if status == "failed":
            if "error" not in given and "error" not in run:
                run["error"] = error
        elif "error" not in given:
            run.pop("error", None)

    # -- progression ---------------------------------------------------------------

    def _advance_server(self, server: Server, steps: int) -> None:
        # Two steps take any known status to a terminal one; more change nothing.
        for _ in range(min(steps, 2)):
            for run in server.runs:
                self._step(run)

    def _step(self, run: dict[str, Any]) -> None:
        status = run.get("status")
        if status == "queued":
            run["status"] = "running"
        elif status == "running":
            fails = self._outcome_rng(run).random() < _FAIL_SHARE
            run["status"] = "failed" if fails else "completed"
            self._settle(run, {"status"})


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _seed_ids(servers: int | Iterable[str]) -> list[str]:
    if isinstance(servers, str):
        raise TypeError("servers must be a count or an iterable of ids, not a single str")
    if isinstance(servers, int):
        if servers < 0:
            raise ValueError("servers must be >= 0")
        return [f"srv-{number:04d}" for number in range(1, servers + 1)]
    return list(servers)
