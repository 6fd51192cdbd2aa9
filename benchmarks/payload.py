"""The page every scenario reads: 20 realistic runs, in ``data`` and again in ``runs``."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

RUNS_PER_PAGE = 20
_STATUSES = ("completed", "completed", "completed", "failed", "running", "queued", "cancelled")
_PROSE = (
    "summarise the quarterly revenue report and flag anomalies in the regional breakdown "
    "open the staging dashboard check the deploy log for failed migrations then file a ticket "
    "with the stack trace and the commit that introduced it draft a reply to the customer "
    "about the delayed invoice including the corrected totals and a short apology"
)
_WORDS = _PROSE.split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def make_run(index: int, server_id: str = "srv_01HZX3K9Q2M4", seed: int = 7) -> dict[str, Any]:
    """One run as the API sends it: camelCase keys, ISO 8601 times, free-form metadata."""
    rng = random.Random(seed * 100_003 + index)
    created = datetime(2026, 11, 29, 6, 0, tzinfo=UTC) - timedelta(minutes=7 * index)
    status = _STATUSES[index % len(_STATUSES)]
    done = status in ("completed", "failed", "cancelled")
    return {
        "id": f"run_01HZX{index:06d}{rng.randrange(16**8):08X}",
        "serverId": server_id,
        "threadId": f"thr_01HZX{rng.randrange(16**10):010X}",
        "title": _sentence(rng, 6),
        "input": _sentence(rng, 28),
        "output": _sentence(rng, 32) if done else None,
        "mode": "async" if index % 3 else "sync",
        "status": status,
        "error": "Tool call timed out after 120s" if status == "failed" else None,
        "metadata": {
            "source": rng.choice(["api", "cli", "schedule", "webhook"]),
            "userId": f"usr_{rng.randrange(16**8):08x}",
            "tags": rng.sample(["billing", "ops", "support", "nightly", "eu-west"], 2),
            "tokens": {"input": rng.randrange(200, 4000), "output": rng.randrange(50, 2000)},
            "model": "gpt-5.1-codex",
            "retry": index % 5 == 0,
        },
        "createdAt": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "completedAt": (created + timedelta(seconds=rng.randrange(5, 600))).isoformat()
        if done
        else None,
        "sessionProtocol": "acp/1",
        "threadBacked": bool(index % 2),
        "threadStatus": "idle" if done else "busy",
        "threadTitle": _sentence(rng, 4),
    }


def make_page(runs: int = RUNS_PER_PAGE, *, both: bool = True) -> dict[str, Any]:
    """A list response; with ``both`` the same runs appear in ``data`` and in ``runs``."""
    items = [make_run(i) for i in range(runs)]
    page: dict[str, Any] = {
        "serverId": "srv_01HZX3K9Q2M4",
        "agentRuntimeId": "rt_01HZX3KA0B7C",
        "object": "list",
        "data": items,
    }
    if both:
        page["runs"] = items
    return page


def page_bytes(runs: int = RUNS_PER_PAGE, *, both: bool = True) -> bytes:
    return json.dumps(make_page(runs, both=both), separators=(",", ":")).encode()


if __name__ == "__main__":
    print(len(page_bytes()), "bytes")
