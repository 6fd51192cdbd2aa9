"""PrometheusMetrics: each hook moves exactly its metric, with bounded labels."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import aiohttp
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from acp_async._observe import Observer
from acp_async.cli import _metrics
from acp_async.cli._parser import UsageError
from acp_async.metrics import PrometheusMetrics

# The contract's table: name -> (type, label names).
CONTRACT = {
    "acp_requests": ("counter", {"outcome"}),
    "acp_request_duration_seconds": ("histogram", set()),
    "acp_retries": ("counter", {"reason"}),
    "acp_rate_limited_seconds": ("counter", set()),
    "acp_in_flight_requests": ("gauge", set()),
    "acp_watch_polls": ("counter", {"result"}),
    "acp_watch_events": ("counter", {"kind"}),
    "acp_watch_poll_delay_seconds": ("histogram", set()),
    "acp_fleet_commits": ("counter", {"result"}),
    "acp_fleet_redis_up": ("gauge", set()),
    "acp_fleet_dropped_entries": ("counter", {"kind"}),
    "acp_fleet_failing_servers": ("gauge", set()),
}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


def test_exports_exactly_the_contract_metrics() -> None:
    """Names, types and label names are the contract's; nothing else is registered."""
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    metrics = PrometheusMetrics(registry)  # a second one shares the series
    metrics.retried("503")
    found = {}
    for family in registry.collect():
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        found[family.name] = (family.type, labels)
    assert found == CONTRACT


def test_every_known_label_value_is_exported_at_zero() -> None:
    """Outcomes, poll results, event kinds and commit results exist before they happen."""
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    for outcome in ("2xx", "3xx", "4xx", "5xx", "timeout", "connection", "invalid"):
        assert value(registry, "acp_requests_total", outcome=outcome) == 0
    for result in ("ok", "error"):
        assert value(registry, "acp_watch_polls_total", result=result) == 0
    for kind in ("created", "updated", "error"):
        assert value(registry, "acp_watch_events_total", kind=kind) == 0
    for result in ("ok", "fenced", "error"):
        assert value(registry, "acp_fleet_commits_total", result=result) == 0
    for kind in ("due", "state", "stream"):
        assert value(registry, "acp_fleet_dropped_entries_total", kind=kind) == 0
    assert value(registry, "acp_fleet_redis_up") == 0
    assert value(registry, "acp_in_flight_requests") == 0
    assert value(registry, "acp_rate_limited_seconds_total") == 0


def test_requests_count_by_outcome_with_duration_and_in_flight() -> None:
    """Started requests are in flight until finished; each finish counts once by outcome."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    assert isinstance(metrics, Observer)
    for _ in range(3):
        metrics.request_started()
    assert value(registry, "acp_in_flight_requests") == 3
    metrics.request_finished("2xx", 0.02)
    metrics.request_finished("5xx", 0.3)
    assert value(registry, "acp_in_flight_requests") == 1
    metrics.request_finished("invalid", 0.004)
    assert value(registry, "acp_in_flight_requests") == 0
    assert value(registry, "acp_requests_total", outcome="2xx") == 1
    assert value(registry, "acp_requests_total", outcome="5xx") == 1
    assert value(registry, "acp_requests_total", outcome="invalid") == 1
    assert value(registry, "acp_requests_total", outcome="timeout") == 0
    assert value(registry, "acp_request_duration_seconds_count") == 3
    assert value(registry, "acp_request_duration_seconds_sum") == pytest.approx(0.324)
    assert value(registry, "acp_request_duration_seconds_bucket", le="0.005") == 1
    assert value(registry, "acp_request_duration_seconds_bucket", le="0.025") == 2


def test_retries_by_reason_and_rate_limited_seconds() -> None:
    """Retries count by reason; cool-down seconds add up, and a zero step adds nothing."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.retried("429")
    metrics.retried("429")
    metrics.retried("timeout")
    metrics.rate_limited(1.5)
    metrics.rate_limited(0.25)
    metrics.rate_limited(0.0)
    assert value(registry, "acp_retries_total", reason="429") == 2
    assert value(registry, "acp_retries_total", reason="timeout") == 1
    assert value(registry, "acp_rate_limited_seconds_total") == pytest.approx(1.75)


def test_watch_polls_events_and_delay() -> None:
    """Polls count by result and their lateness lands in the delay histogram."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.watch_polled(ok=True, late=0.0)
    metrics.watch_polled(ok=True, late=0.2)
    metrics.watch_polled(ok=False, late=45.0)
    metrics.watch_event("created")
    metrics.watch_event("created")
    metrics.watch_event("updated")
    metrics.watch_event("error")
    assert value(registry, "acp_watch_polls_total", result="ok") == 2
    assert value(registry, "acp_watch_polls_total", result="error") == 1
    assert value(registry, "acp_watch_poll_delay_seconds_count") == 3
    assert value(registry, "acp_watch_poll_delay_seconds_sum") == pytest.approx(45.2)
    assert value(registry, "acp_watch_poll_delay_seconds_bucket", le="0.01") == 1
    assert value(registry, "acp_watch_poll_delay_seconds_bucket", le="30.0") == 2
    assert value(registry, "acp_watch_events_total", kind="created") == 2
    assert value(registry, "acp_watch_events_total", kind="updated") == 1
    assert value(registry, "acp_watch_events_total", kind="error") == 1


def test_fleet_commits_by_result() -> None:
    """Each commit counts once under its result."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.fleet_committed("ok")
    metrics.fleet_committed("ok")
    metrics.fleet_committed("fenced")
    assert value(registry, "acp_fleet_commits_total", result="ok") == 2
    assert value(registry, "acp_fleet_commits_total", result="fenced") == 1
    assert value(registry, "acp_fleet_commits_total", result="error") == 0


def test_fleet_redis_up_and_dropped_entries() -> None:
    """The gauge follows the last report; dropped entries count by kind."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.fleet_redis_up(True)
    assert value(registry, "acp_fleet_redis_up") == 1
    metrics.fleet_redis_up(False)
    assert value(registry, "acp_fleet_redis_up") == 0
    metrics.fleet_dropped("due")
    metrics.fleet_dropped("due")
    metrics.fleet_dropped("stream")
    assert value(registry, "acp_fleet_dropped_entries_total", kind="due") == 2
    assert value(registry, "acp_fleet_dropped_entries_total", kind="state") == 0
    assert value(registry, "acp_fleet_dropped_entries_total", kind="stream") == 1


def test_fleet_failing_servers_is_the_last_count_seen() -> None:
    """The gauge holds the fleet's failing servers as the worker's last round trip saw."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    assert value(registry, "acp_fleet_failing_servers") == 0
    metrics.fleet_failing(7)
    metrics.fleet_failing(3)
    assert value(registry, "acp_fleet_failing_servers") == 3


def test_instances_on_one_registry_count_into_the_same_series() -> None:
    """Two clients' metrics on one registry add up instead of failing to register."""
    registry = CollectorRegistry()
    first, second = PrometheusMetrics(registry), PrometheusMetrics(registry)
    first.request_started()
    second.request_started()
    first.request_finished("2xx", 0.01)
    second.request_finished("4xx", 0.01)
    assert value(registry, "acp_requests_total", outcome="2xx") == 1
    assert value(registry, "acp_requests_total", outcome="4xx") == 1
    assert value(registry, "acp_in_flight_requests") == 0


def test_default_registry_is_prometheus_clients_global_one() -> None:
    """``PrometheusMetrics()`` counts into ``prometheus_client.REGISTRY``."""
    metrics = PrometheusMetrics()
    assert metrics.registry is REGISTRY
    before = REGISTRY.get_sample_value("acp_watch_events_total", {"kind": "updated"})
    metrics.watch_event("updated")
    assert REGISTRY.get_sample_value("acp_watch_events_total", {"kind": "updated"}) == (
        (before or 0) + 1
    )


def test_importing_the_package_or_the_cli_loads_no_prometheus_client() -> None:
    """The extra stays optional: ``import acp_async`` (and the CLI) never import it."""
    code = (
        "import sys, acp_async, acp_async.cli, acp_async.cli._app; "
        "acp_async.cli._app.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prometheus_client'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


# -- the CLI's /metrics server -----------------------------------------------------------


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_serving_answers_a_scrape_in_the_text_format() -> None:
    """GET /metrics over real HTTP returns the registry, parseable by prometheus_client."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.watch_event("created")
    metrics.request_started()
    async with (
        _metrics.serving(registry, "127.0.0.1", 0) as url,
        aiohttp.ClientSession() as session,
        session.get(url) as response,
    ):
        assert url.startswith("http://127.0.0.1:")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        samples = parse(await response.text())
    assert samples[("acp_watch_events_total", (("kind", "created"),))] == 1
    assert samples[("acp_in_flight_requests", ())] == 1
    assert samples[("acp_requests_total", (("outcome", "2xx"),))] == 0


async def test_serving_stops_listening_when_the_block_ends() -> None:
    """Nothing is left listening after the block."""
    async with _metrics.serving(CollectorRegistry(), "127.0.0.1", 0) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _args(port: int) -> argparse.Namespace:
    return argparse.Namespace(metrics_port=port, metrics_host="127.0.0.1")


async def test_serve_while_runs_the_command_and_reports_a_busy_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A port in use is exit code 1 with a clear message, and the command never runs."""
    ran = []

    async def command() -> int:
        ran.append(True)
        return 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert await _metrics.serve_while(_args(busy), command) == 1
    assert not ran
    assert f"cannot serve metrics on 127.0.0.1:{busy}" in capsys.readouterr().err
    assert await _metrics.serve_while(_args(0), command) == 0
    assert ran == [True]
    assert "serving metrics at http://127.0.0.1:" in capsys.readouterr().err


async def test_serve_while_without_metrics_serves_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --metrics-port: the command runs alone and nothing is said about metrics."""

    async def command() -> int:
        return 7

    assert await _metrics.serve_while(argparse.Namespace(), command) == 7
    assert capsys.readouterr().err == ""


def test_observer_is_none_without_the_flag_and_explains_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No flag, no metrics; the flag without the extra is a usage error naming it."""
    assert _metrics.observer(argparse.Namespace(metrics_port=None)) is None
    assert _metrics.observer(argparse.Namespace()) is None  # a command without the option
    assert isinstance(_metrics.observer(_args(0)), PrometheusMetrics)
    monkeypatch.setitem(sys.modules, "acp_async.metrics", None)
    with pytest.raises(UsageError, match=r"pip install '\.\[metrics\]'"):
        _metrics.observer(_args(0))


def test_the_port_must_be_a_port_number(capsys: pytest.CaptureFixture[str]) -> None:
    """`--metrics-port` takes 0..65535; anything else is a usage error (exit 2)."""
    from acp_async.cli._app import build_parser

    for bad in ("-1", "70000", "http"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["runs", "watch", "srv", "--metrics-port", bad])
        assert exit_.value.code == 2
        assert "expected a port number" in capsys.readouterr().err
    args = build_parser().parse_args(["runs", "watch", "srv", "--metrics-port", "0"])
    assert (args.metrics_port, args.metrics_host) == (0, "127.0.0.1")


def test_without_the_extra_the_import_error_names_it() -> None:
    """No prometheus_client: importing acp_async.metrics says which extra to install."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n    import acp_async.metrics\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert "pip install '.[metrics]'" in out.stdout
