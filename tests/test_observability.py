"""Metrics against what happened: the fake's record of requests, the events yielded.

The CLI test scrapes ``/metrics`` over real HTTP from ``acp-async runs watch
--metrics-port 0`` (a subprocess) and parses it with ``prometheus_client.parser``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

import aiohttp
import attrs
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from acp_async import (
    ACPClient,
    APIConnectionError,
    APITimeoutError,
    NotFoundError,
    ResponseValidationError,
)
from acp_async.metrics import PrometheusMetrics
from acp_async.testing import FakeACPServer, RecordedRequest, instant_backoff

from .redis_server import RedisServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def outcome_of(request: RecordedRequest) -> str:
    """The outcome the client should have counted for a request the fake answered."""
    assert request.status is not None, request
    if request.fault == "malformed":
        return "invalid"
    return f"{request.status // 100}xx"


def answered(requests: Iterable[RecordedRequest]) -> collections.Counter[str]:
    return collections.Counter(outcome_of(r) for r in requests if r.finished is not None)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples.items()
        if sample == name and value
    }


def registry_samples(registry: CollectorRegistry) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


# -- in process ------------------------------------------------------------------------------


async def test_requests_by_outcome_add_up_to_what_the_fake_answered() -> None:
    """503, 429, a redirect hop, a malformed 200 and a 404: each request counted once by
    outcome, the retries by reason, the 429 cool-down in seconds, nothing left in flight."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with FakeACPServer(servers=3, runs_per_server=2) as fake:
        a, b, c = fake.server_ids
        runs_url = f"{fake.base_url}/v1/servers/{a}/runtime/agent/runs"
        fake.fail("status", status=503, server_id=a)
        fake.fail("redirect", status=302, server_id=a, headers={"Location": runs_url})
        fake.fail("status", status=429, retry_after="0.2", server_id=b)
        fake.fail("malformed", server_id=c)
        with instant_backoff():
            async with ACPClient(fake.token, base_url=fake.base_url, metrics=metrics) as client:
                await client.runs.list(a)
                await client.runs.list(b)
                with pytest.raises(ResponseValidationError):
                    await client.runs.list(c)
                fake.fail("status", status=404, server_id=c)
                with pytest.raises(NotFoundError):
                    await client.runs.list(c)
        requests = fake.requests
    samples = registry_samples(registry)
    expected = answered(requests)
    assert expected == {"2xx": 2, "3xx": 1, "4xx": 2, "5xx": 1, "invalid": 1}
    assert by_label(samples, "acp_requests_total", "outcome") == expected
    assert samples[("acp_request_duration_seconds_count", ())] == len(requests)
    assert samples[("acp_in_flight_requests", ())] == 0
    assert sum(by_label(samples, "acp_retries_total", "reason").values()) == 2
    assert 0 < samples[("acp_rate_limited_seconds_total", ())] <= 0.25


async def test_timeouts_and_connection_errors_are_outcomes_too() -> None:
    """A request slower than the timeout counts as timeout; a dropped one as connection."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with FakeACPServer(servers=1) as fake:
        sid = fake.server_ids[0]
        fake.fail("latency", delay=5.0)
        async with ACPClient(
            fake.token, base_url=fake.base_url, timeout=0.2, max_retries=0, metrics=metrics
        ) as client:
            with pytest.raises(APITimeoutError):
                await client.runs.list(sid)
            fake.fail("drop", times=2)  # aiohttp resends once by itself, unseen by the client
            with pytest.raises(APIConnectionError):
                await client.runs.list(sid)
    samples = registry_samples(registry)
    assert by_label(samples, "acp_requests_total", "outcome") == {"timeout": 1, "connection": 1}
    assert samples[("acp_in_flight_requests", ())] == 0
    assert samples[("acp_request_duration_seconds_count", ())] == 2


async def test_watch_counts_its_polls_and_events() -> None:
    """One good poll and one failed one (after two retries): polls, events and the
    poll-delay histogram count exactly those."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    seen: collections.Counter[str] = collections.Counter()
    async with FakeACPServer(servers=2, runs_per_server=2) as fake:
        a, b = fake.server_ids
        fake.fail("status", status=500, times=3, server_id=b)
        with instant_backoff():
            async with ACPClient(fake.token, base_url=fake.base_url, metrics=metrics) as client:
                # A long interval: after the first round nothing is due during the test.
                stream = client.runs.watch([a, b], interval=60.0)
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        seen[event.kind] += 1
                        if seen == {"created": 2, "error": 1}:
                            break
        requests = fake.requests
    samples = registry_samples(registry)
    assert answered(requests) == {"2xx": 1, "5xx": 3}
    assert by_label(samples, "acp_watch_events_total", "kind") == seen
    assert by_label(samples, "acp_watch_polls_total", "result") == {"ok": 1, "error": 1}
    assert samples[("acp_watch_poll_delay_seconds_count", ())] == 2
    assert by_label(samples, "acp_retries_total", "reason") == {"500": 2}


async def test_a_poll_held_back_by_the_concurrency_bound_shows_as_late() -> None:
    """One slot, and server a answers after 0.5 s: b's second poll falls due while a's
    second poll holds the slot, so it starts about 0.5 s late and lands above 0.25 s."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)

    def polls() -> float:
        return registry.get_sample_value("acp_watch_poll_delay_seconds_count") or 0.0

    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        a, b = fake.server_ids
        fake.fail("latency", delay=0.5, server_id=a, times=100)
        with instant_backoff():  # exact intervals: a due at 0.55, b just after, a first
            async with ACPClient(fake.token, base_url=fake.base_url, metrics=metrics) as client:

                async def consume() -> None:
                    async for _ in client.runs.watch([a, b], interval=0.05, concurrency=1):
                        pass

                watching = asyncio.create_task(consume())
                await _until(lambda: polls() >= 4, "four polls")
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
    samples = registry_samples(registry)
    on_time = samples[("acp_watch_poll_delay_seconds_bucket", (("le", "0.25"),))]
    assert samples[("acp_watch_poll_delay_seconds_count", ())] - on_time >= 1
    assert samples[("acp_watch_poll_delay_seconds_sum", ())] >= 0.25


# -- the command line, scraped over HTTP -------------------------------------------------------


async def _lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


async def _until(check: object, what: str, timeout: float = 30.0) -> None:
    """Wait (bounded) until ``check()`` is true; the loop turns meanwhile."""
    assert callable(check)
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"gave up waiting: {what}")


@attrs.frozen
class Scraped:
    """A scrape of a watch under faults, with what the fake and the watch said meanwhile."""

    samples: Samples
    requests: list[RecordedRequest]
    held_from: int  # requests from this index on are held (each server has one)
    printed: list[dict[str, Any]]  # the --json events
    server_ids: list[str]


async def scrape_a_watch_under_faults() -> Scraped:
    """`runs watch --metrics-port 0` (a subprocess) against a faulty fake: a's first poll
    sees a 503, b's a 429 (0.3 s cool-down) then a malformed 200, c's three 500s. Once
    every server's runs are reported, runs move on (updated events), then every later
    request is held, and /metrics is scraped over HTTP while nothing moves."""
    async with FakeACPServer(servers=3, runs_per_server=3) as fake:
        a, b, c = fake.server_ids
        fake.fail("status", status=503, server_id=a)
        fake.fail("status", status=429, retry_after="0.3", server_id=b)
        fake.fail("malformed", server_id=b)  # b's retry: invalid, an error event
        fake.fail("status", status=500, times=3, server_id=c)  # c's first poll fails
        env = {**os.environ, "ACP_API_KEY": fake.token, "ACP_BASE_URL": fake.base_url}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acp_async", "runs", "watch", a, b, c,
            "--json", "--interval", "0.1", "--metrics-port", "0",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        out: list[str] = []
        err: list[str] = []
        readers = [
            asyncio.create_task(_lines(process.stdout, out)),
            asyncio.create_task(_lines(process.stderr, err)),
        ]

        def kinds() -> collections.Counter[str]:
            return collections.Counter(json.loads(line)["kind"] for line in out)

        try:
            await _until(lambda: any("serving metrics at" in line for line in err), "no URL")
            url = next(line for line in err if "serving metrics at" in line).split()[-1]
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/metrics")
            # Every server's runs seen, and c's and b's failed polls reported.
            await _until(lambda: kinds()["created"] == 9 and kinds()["error"] >= 2, "events")
            fake.advance(steps=1)  # unfinished runs move on: updated events
            await _until(lambda: kinds()["updated"] > 0, "no updated event")
            # Hold every later request. A server sends one request at a time, so once each
            # has one held, the client has handled everything before: the counts are still.
            held_from = len(fake.requests)
            fake.fail("latency", delay=600.0, times=1_000_000)
            await _until(
                lambda: {r.server_id for r in fake.requests[held_from:]} == {a, b, c},
                "not every server held",
            )
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 200
                samples = parse(await response.text())
            requests = fake.requests
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
            await asyncio.gather(*readers)
    assert code == 0, "".join(err)
    # Every poll is held, so each event counted was printed before the scrape (read by now).
    return Scraped(samples, requests, held_from, [json.loads(line) for line in out], [a, b, c])


async def test_runs_watch_serves_request_metrics_that_match_the_fake() -> None:
    """Scraped over HTTP: requests by outcome are those the fake answered, the held ones are
    in flight, the retries and the 429 cool-down show, and no label holds an id."""
    scraped = await scrape_a_watch_under_faults()
    samples, requests = scraped.samples, scraped.requests
    assert len(requests) == scraped.held_from + 3
    assert all(r.finished is not None for r in requests[: scraped.held_from])
    expected = answered(requests)
    assert expected["5xx"] == 4
    assert expected["4xx"] == 1
    assert expected["invalid"] == 1
    assert by_label(samples, "acp_requests_total", "outcome") == expected
    assert samples[("acp_in_flight_requests", ())] == 3
    assert samples[("acp_request_duration_seconds_count", ())] == sum(expected.values())
    retries = by_label(samples, "acp_retries_total", "reason")
    assert retries == {"503": 1, "429": 1, "500": 2}  # a's 503, b's 429, c's two 500s
    assert 0 < samples[("acp_rate_limited_seconds_total", ())] <= 0.35
    ids = set(scraped.server_ids) | {
        event["run"]["id"] for event in scraped.printed if "run" in event
    }
    values = {value for _, labels in samples for _, value in labels}
    assert not values & ids


async def test_runs_watch_serves_watch_metrics_that_match_the_events() -> None:
    """Scraped over HTTP: events by kind are those the watch printed, polls by result add
    up to the good answers and the error events, and each poll's lateness is observed."""
    scraped = await scrape_a_watch_under_faults()
    samples = scraped.samples
    events = collections.Counter(event["kind"] for event in scraped.printed)
    assert events["created"] == 9
    assert events["error"] == 2
    assert events["updated"] > 0
    assert by_label(samples, "acp_watch_events_total", "kind") == events
    polls = by_label(samples, "acp_watch_polls_total", "result")
    assert polls["error"] == events["error"]
    assert polls["ok"] == answered(scraped.requests)["2xx"]  # one 200 per good poll
    assert samples[("acp_watch_poll_delay_seconds_count", ())] == sum(polls.values())


async def test_fleet_worker_serves_commit_poll_and_event_metrics(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet worker --metrics-port 0` against a real redis-server: scraped over HTTP, every
    server's runs are counted as created events, its polls as ok and its commits as ok."""
    from acp_async.fleet import RedisFleet

    async with FakeACPServer(servers=3, runs_per_server=2) as fake:
        async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
            await fleet.add(fake.server_ids)
        env = {**os.environ, "ACP_API_KEY": fake.token, "ACP_BASE_URL": fake.base_url}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acp_async", "fleet", "worker",
            "--redis", redis_server.url, "--fleet", fleet_name,
            "--interval", "30", "--metrics-port", "0",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        err: list[str] = []
        reader = asyncio.create_task(_lines(process.stderr, err))
        samples: Samples = {}
        try:
            await _until(lambda: any("serving metrics at" in line for line in err), "no URL")
            url = next(line for line in err if "serving metrics at" in line).split()[-1]
            async with aiohttp.ClientSession() as session:

                async def scrape() -> Samples:
                    async with session.get(url) as response:
                        assert response.status == 200
                        return parse(await response.text())

                # Each server is polled once (interval 30 s): wait for its three commits.
                async with asyncio.timeout(30):
                    while (samples := await scrape()).get(
                        ("acp_fleet_commits_total", (("result", "ok"),)), 0
                    ) < 3:
                        await asyncio.sleep(0.05)
            requests = fake.requests
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
            await reader
    assert code == 0, "".join(err)
    assert by_label(samples, "acp_fleet_commits_total", "result") == {"ok": 3}
    assert by_label(samples, "acp_watch_events_total", "kind") == {"created": 6}
    assert by_label(samples, "acp_watch_polls_total", "result") == {"ok": 3}
    assert by_label(samples, "acp_requests_total", "outcome") == answered(requests)
    assert answered(requests) == {"2xx": 3}
