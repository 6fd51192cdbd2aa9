"""The benchmark harness runs end to end at tiny sizes, so it never rots (no timings asserted)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import acp_async
from benchmarks import __main__ as bench
from benchmarks import cli_scenario, converter_scenarios, http_bench, report, tls, watch_scenario


def test_every_scenario_runs_at_tiny_sizes() -> None:
    """HTTP, converter and watch scenarios all run, and the report renders."""
    results = bench.run(dict(bench.SMOKE), None)
    rates = results["http"]["rates"]  # type: ignore[index]
    assert {"a", "b", "c"} <= set(rates)
    assert all(len(values) == 1 and values[0] > 0 for values in rates.values())
    memory = results["memory"]  # type: ignore[index]
    assert {"decoded dict", "acp_async (generated)", "hand-written constructor"} <= set(memory)
    assert set(results["watch"]) == {5, 10}  # type: ignore[arg-type]
    if tls.available():  # the certificate is made with the openssl CLI
        assert set(results["https"]["rates"]) == {"a", "b", "c"}  # type: ignore[index]
    assert results["wan"]["rates"]["c"][0] > 0  # type: ignore[index]
    if cli_scenario.available():
        assert set(results["cli"]["cpu"]) == {"uvloop", "asyncio"}  # type: ignore[index]
    text = report.markdown(results)
    assert "## Targets" in text
    assert "over TLS" in text or not tls.available()


def test_our_scenarios_need_no_optional_library() -> None:
    """(a), (b), (c), our converter, the hand-written one and watch need only dev extras."""
    http = http_bench.measure(requests=8, servers=4, concurrency=2, reps=1, keys=["a", "b", "c"])
    assert set(http["rates"]) == {"a", "b", "c"}
    conv = converter_scenarios.throughput(pages=2, rounds=1)
    assert {"acp_async (generated)", "hand-written constructor"} <= set(conv["bytes"])
    assert watch_scenario.measure([3], polls=2)[3]["bytes_per_server"] > 0


def test_compare_runs_a_revision_beside_the_working_tree(tmp_path: Path) -> None:
    """benchmarks.compare loads HEAD's package under another name and runs both fan-outs
    (a gzip page, over TLS where the openssl CLI can make the certificate)."""
    from benchmarks import compare

    base = compare.load_revision("HEAD", tmp_path)
    assert base.__name__ == "acp_async_base"
    assert base.ACPClient is not acp_async.ACPClient
    results = compare.measure(
        base, base_name="HEAD", requests=8, concurrency=2, reps=1, tls=tls.available(), gzipped=True
    )
    assert all(values["rate"][0] > 0 for values in results.values())
    assert "now / HEAD" in compare.table(results, base_name="HEAD")


def test_fleet_scenarios_run_at_tiny_sizes(redis_server: object) -> None:
    """The fleet figures' harness runs end to end (it starts its own redis-server)."""
    from benchmarks import fleet

    results = fleet.run(dict(fleet.SMOKE))
    assert results["throughput"]["redis_polls_per_s"] > 0
    assert results["recovery"]["seconds"]
    assert "## Estimate" in fleet.markdown(results)


def test_fleet_on_a_cluster_beside_one_server_runs_at_tiny_sizes() -> None:
    """The cluster-vs-single scale harness starts both deployments (its own redis-server
    and 3-master cluster), runs both on two fleets of different masters and renders. (At
    this size, on a loaded machine, the workers may not start polling within the window.)"""
    from benchmarks import fleet_cluster

    results = fleet_cluster.run(dict(fleet_cluster.SMOKE))
    assert [results[kind]["servers"] for kind in fleet_cluster.KINDS] == [20, 20]
    assert len(set(results["names"])) == 2
    assert "### 1,000,000 servers" in fleet_cluster.markdown(results)


def test_fleet_benches_share_one_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both fleet benches' command line: --smoke prints and writes nothing, a full run
    saves; the cluster's section survives a new run of the single-server figures."""
    from benchmarks import fleet, fleet_cluster

    out = tmp_path / "FLEET.md"
    sizes = ({"size": "full"}, {"size": "smoke"})

    def bench(*args: str, title: str, save: Callable[[Path, str], None]) -> None:
        monkeypatch.setattr(sys, "argv", ["bench", "--out", str(out), *args])
        fleet.bench_main("bench", dict, lambda r: f"# {title} {r['size']}", sizes, save)

    bench("--smoke", title="single", save=fleet._rewrite)
    assert not out.exists()
    assert capsys.readouterr().out == "# single smoke\n"
    bench(title="single", save=fleet._rewrite)
    bench(title="cluster", save=fleet_cluster._save)
    bench(title="single again", save=fleet._rewrite)
    text = out.read_text()
    assert text.startswith("# single again full\n")
    assert "# cluster full" in text
    assert "# single full" not in text


def test_send_path_ladder_runs_at_tiny_sizes() -> None:
    """The layer-by-layer ladder runs and renders."""
    from benchmarks import send_path

    results = send_path.measure(requests=6, servers=3, concurrency=2, reps=1)
    assert set(results["cpu"]["acp_async"]) == set(range(len(send_path.Rungs.LABELS)))
    assert "list_many" in send_path.markdown(results)


def test_poll_cost_runs_at_tiny_sizes(redis_server: object) -> None:
    """The unchanged-poll figure's harness runs its three loops and renders."""
    from benchmarks import poll_cost

    results = poll_cost.measure(servers=4, seconds=0.2, reps=1)
    assert all(len(values) == 1 for values in results["cpu"].values())
    assert "Redis fleet worker" in poll_cost.markdown(results)
