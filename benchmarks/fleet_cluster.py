"""``python -m benchmarks.fleet_cluster``: the fleet's scale run on a 3-master Redis
Cluster beside the same run on one redis-server, alternating in one run; its own
section of ``FLEET.md`` and a redone estimate for 1,000,000 servers a minute.

Both deployments get the same load: ``servers`` busy servers split over two fleets
(names whose keys live on two different masters of the cluster), ``workers`` worker
processes taking the fleets in turn, interval 1 s. Needs ``redis-server`` and
``redis-cli`` on PATH. ``--smoke``: tiny sizes, numbers meaningless.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from acp_async.fleet._store import Keys

from . import fleet_scenarios as fs
from .fleet import bench_main
from .stats import fmt, write_section

FULL = {"servers": 20_000, "workers": 4, "seconds": 20.0, "reps": 2}
SMOKE = {"servers": 20, "workers": 2, "seconds": 0.6, "reps": 1}
KINDS = ("single", "cluster")


def fleet_names(cluster_url: str, count: int = 2) -> list[str]:
    """``count`` fleet names whose keys live on as many different masters."""
    import redis  # noqa: PLC0415 - the redis extra

    owners: dict[str, str] = {}  # master -> a name whose slot it serves
    with redis.RedisCluster.from_url(cluster_url) as client:
        for i in range(1000):
            name = f"scale-{i}"
            owners.setdefault(client.get_node_from_key(Keys.of(name).due).name, name)
            if len(owners) == count:
                return list(owners.values())
    raise AssertionError("not enough masters")


def run(sizes: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    with fs.redis_server() as single, fs.redis_cluster() as cluster:
        names = fleet_names(cluster.url)
        assert single.process is not None
        deployments = {
            "single": (single.url, [(single.url, single.process.pid)], False),
            "cluster": (
                cluster.url,
                [(node.url, node.process.pid) for node in cluster.nodes if node.process],
                True,
            ),
        }
        for rep in range(sizes["reps"]):
            for kind in KINDS if rep % 2 == 0 else KINDS[::-1]:
                print(f"fleet_cluster: {kind}, run {rep + 1} ...", file=sys.stderr)
                url, nodes, is_cluster = deployments[kind]
                results[kind].append(
                    fs.scale(
                        url,
                        nodes,
                        sizes["servers"],
                        sizes["workers"],
                        sizes["seconds"],
                        names=names,
                        cluster=is_cluster,
                    )
                )
    merged = {kind: _median(runs) for kind, runs in results.items()}
    return {
        "sizes": sizes,
        "names": names,
        "runs": results,
        **merged,
        "estimate": {kind: fs.estimate(merged[kind]) for kind in KINDS},
        "seconds": time.perf_counter() - started,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def markdown(r: dict[str, Any]) -> str:
    one, many = r["single"], r["cluster"]
    sizes = r["sizes"]
    rows = [
        ("polls/s", fmt(one["polls_per_s"]), fmt(many["polls_per_s"])),
        ("Redis commands per poll", f"{one['redis_commands_per_poll']:.2f}",
         f"{many['redis_commands_per_poll']:.2f}"),
        ("Redis commands/s", fmt(one["redis_commands_per_s"]), fmt(many["redis_commands_per_s"])),
        ("Redis CPU (all nodes), us per poll", fmt(one["redis_cpu_us_per_poll"]),
         fmt(many["redis_cpu_us_per_poll"])),
        ("workers' CPU, ms per poll", f"{one['worker_cpu_ms_per_poll']:.3f}",
         f"{many['worker_cpu_ms_per_poll']:.3f}"),
        ("state in Redis per server, bytes", fmt(one["state_bytes_per_server"]),
         fmt(many["state_bytes_per_server"])),
        ("servers overdue at the end", f"{one['overdue']:,.0f}", f"{many['overdue']:,.0f}"),
    ]  # fmt: skip
    per_run = ", ".join(
        f"{kind} {fmt(run['polls_per_s'])}" for kind in KINDS for run in r["runs"][kind]
    )
    est_one, est_many = r["estimate"]["single"], r["estimate"]["cluster"]
    return "\n".join(
        [
            f"## Scale on a Redis Cluster: {sizes['servers']:,} servers, {sizes['workers']} "
            f"workers, two fleets, against one redis-server",
            "",
            f"Measured by `python -m benchmarks.fleet_cluster` in {r['seconds']:.0f} s: the "
            "scale run above, once on one redis-server and once on a local 3-master Redis "
            f"Cluster, alternating, {sizes['reps']} runs each (medians; polls/s per run: "
            f"{per_run}). Both split the servers over the same two fleets, "
            f"{' and '.join(f'`{n}`' for n in r['names'])}, whose keys live on two "
            "different masters of the cluster; the workers take the fleets in turn.",
            "",
            "| | one redis-server | Redis Cluster, 3 masters |",
            "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows),
            "",
            "### 1,000,000 servers polled every 60 s, from these figures",
            "",
            f"{fmt(est_one['polls_per_s'])} polls/s: on one redis-server, "
            f"{fmt(est_one['redis_commands_per_s'])} commands/s and "
            f"{est_one['redis_cores']:.2f} Redis cores, {est_one['worker_cores']:.1f} worker "
            f"cores; on the cluster, {fmt(est_many['redis_commands_per_s'])} commands/s and "
            f"{est_many['redis_cores']:.2f} Redis cores over its masters (each fleet's "
            f"share on its own master), {est_many['worker_cores']:.1f} worker cores; "
            f"{est_many['state_gb']:.2f} GB of state (1-run pages).",
            "",
        ]
    )


def _save(out: Path, text: str) -> None:
    """Its own section of the file, the single-server figures around it kept."""
    write_section(out, text, "fleet_cluster")


def main() -> None:
    bench_main("python -m benchmarks.fleet_cluster", run, markdown, (FULL, SMOKE), _save)


if __name__ == "__main__":
    main()
