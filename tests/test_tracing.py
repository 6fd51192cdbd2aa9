"""``ACPClient(trace_configs=...)``: aiohttp's tracing, and OpenTelemetry's, see every attempt."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span
from yarl import URL

from acp_async import ACPClient, APIConnectionError
from acp_async.testing import FakeACPServer, instant_backoff

SERVER_SEGMENT = re.compile(r"(?<=/servers/)[^/]+")


def recording_trace_config() -> tuple[aiohttp.TraceConfig, list[tuple[str, str, object]]]:
    """A TraceConfig that records ("start" | "end" | "exception", path, status or error)."""
    seen: list[tuple[str, str, object]] = []
    config = aiohttp.TraceConfig()

    async def start(_: Any, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(("start", params.url.raw_path, None))

    async def end(_: Any, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        seen.append(("end", params.url.raw_path, params.response.status))

    async def failed(
        _: Any, __: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        seen.append(("exception", params.url.raw_path, type(params.exception).__name__))

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    config.on_request_exception.append(failed)
    config.freeze()
    return config, seen


async def test_a_trace_config_sees_each_attempt_start_and_end() -> None:
    """A 503 then a 200: two request starts and two ends, the paths the fake received."""
    config, seen = recording_trace_config()
    async with FakeACPServer(servers=1, runs_per_server=2) as fake:
        sid = fake.server_ids[0]
        fake.fail("status", status=503, times=1)
        with instant_backoff():
            async with ACPClient(
                fake.token, base_url=fake.base_url, trace_configs=[config]
            ) as client:
                page = await client.runs.list(sid)
        received = [request.path for request in fake.requests]
    assert len(page.data) == 2
    assert [kind for kind, _, _ in seen] == ["start", "end", "start", "end"]
    assert [status for kind, _, status in seen if kind == "end"] == [503, 200]
    assert [path for kind, path, _ in seen if kind == "start"] == received
    assert received == [f"/v1/servers/{sid}/runtime/agent/runs"] * 2


async def test_a_trace_config_sees_a_failed_connection() -> None:
    """A request the host drops ends in on_request_exception, not silence."""
    config, seen = recording_trace_config()
    async with FakeACPServer(servers=1) as fake:
        fake.fail("drop", times=2)  # aiohttp itself resends once on a closed connection
        with instant_backoff():
            async with ACPClient(
                fake.token, base_url=fake.base_url, max_retries=0, trace_configs=[config]
            ) as client:
                with pytest.raises(APIConnectionError):
                    await client.runs.list(fake.server_ids[0])
    assert [kind for kind, _, _ in seen].count("start") >= 1
    assert seen[-1][0] == "exception"


async def test_opentelemetry_records_a_span_per_attempt_without_the_token() -> None:
    """OpenTelemetry's aiohttp-client instrumentation on the client's own session: one span
    per attempt, named by the path template, the real path in its URL, no token anywhere."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def name_by_template(span: Span, params: aiohttp.TraceRequestStartParams) -> None:
        span.update_name(f"{params.method} {SERVER_SEGMENT.sub('{serverId}', params.url.path)}")

    config = create_trace_config(tracer_provider=provider, request_hook=name_by_template)
    token = "otel-secret-token-1234"
    async with FakeACPServer(servers=1, runs_per_server=1, token=token) as fake:
        sid = fake.server_ids[0]
        fake.fail("status", status=502, times=1)
        with instant_backoff():
            async with ACPClient(token, base_url=fake.base_url, trace_configs=[config]) as client:
                await client.runs.list(sid, limit=5)
        received = [request.path for request in fake.requests]
    spans = exporter.get_finished_spans()
    provider.shutdown()
    assert len(spans) == len(received) == 2
    assert [span.name for span in spans] == ["GET /v1/servers/{serverId}/runtime/agent/runs"] * 2
    statuses = []
    for span in spans:
        attributes = dict(span.attributes or {})
        url = URL(str(attributes.get("url.full") or attributes.get("http.url")))
        assert url.raw_path == f"/v1/servers/{sid}/runtime/agent/runs"
        assert url.query == {"limit": "5"}
        statuses.append(
            attributes.get("http.response.status_code", attributes.get("http.status_code"))
        )
        everything = repr((span.name, attributes, span.events, span.resource.attributes))
        assert token not in everything
    assert statuses == [502, 200]
