"""Throughput of `rfprm bench --executor ray` with 1 and with 2 Ray nodes, in one run.

A local cluster (Ray's own `ray start`, one process group per node, `--cpus-per-node` CPUs
each) first with the head alone and one replica, then with a second node and two replicas;
the same demo-world problems, strategies and budgets each time, into fresh run directories.
Prints wall time (replica start included, as a user waits for it), jobs and problems per
hour, and the 2-node / 1-node ratio.

    python benchmarks/ray_scaling.py --limit 40
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rfprm_tts.bench import RayExecutor, load_problems, run_bench
from rfprm_tts.bench.local_ray import LocalRayCluster
from rfprm_tts.settings import Settings


def timed_run(address: str, replicas: int, args: argparse.Namespace, out: Path) -> tuple[float, int]:
    import ray

    problems = load_problems("demo", limit=args.limit)
    executor = RayExecutor(replicas, address=address, concurrency=args.concurrency, cpus_per_replica=args.cpus_per_node)
    started = time.perf_counter()
    store = asyncio.run(
        run_bench(
            problems,
            args.strategies,
            args.budgets,
            Settings(generator={"seed": 0}),
            out,
            executor=executor,
            progress=False,
        )
    )
    elapsed = time.perf_counter() - started
    ray.shutdown()
    rows = store.rows()
    assert not [r for r in rows if r["error"]], "a job failed; see rows.jsonl"
    return elapsed, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=40, help="demo problems")
    parser.add_argument("--strategies", nargs="+", default=["majority_vote", "best_of_n", "beam_search"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--concurrency", type=int, default=4, help="problems at once per replica")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    args = parser.parse_args()

    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp,
        LocalRayCluster(Path(tmp) / "ray", workers=0, cpus_per_node=args.cpus_per_node) as cluster,
    ):
        for nodes in (1, 2):
            if nodes == 2:
                cluster.add_node()
            results[nodes] = timed_run(cluster.address, nodes, args, Path(tmp) / f"run{nodes}")

    print(
        f"{args.limit} demo problems, {args.strategies}, budgets {args.budgets}, "
        f"{args.cpus_per_node} CPU per node and replica, {args.concurrency} problems at once per replica"
    )
    print("| nodes = replicas | wall s | rows | problems/hour |")
    print("|---|---|---|---|")
    for nodes, (seconds, rows) in results.items():
        print(f"| {nodes} | {seconds:.1f} | {rows} | {args.limit / seconds * 3600:.0f} |")
    print(f"2 nodes / 1 node throughput: {results[1][0] / results[2][0]:.2f}x")


if __name__ == "__main__":
    main()
