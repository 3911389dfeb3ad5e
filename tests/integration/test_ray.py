"""`rfprm bench --executor ray` on a real local Ray cluster: a head node and a second node,
each a `ray start` process on 127.0.0.1 with one CPU, so each of two replicas lands on its
own node. The tests run in file order: the last one kills the second node. The cluster runs
without token authentication and its drivers get the same setting from `cluster.env`
(tests/test_ray_auth.py covers token mode)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from helpers.bench import bench_command, demo_settings
from helpers.processes import run_fresh_python
from rfprm_tts.bench import RunStore

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from rfprm_tts.bench.local_ray import LocalRayCluster

    with LocalRayCluster(tmp_path_factory.mktemp("ray"), workers=1, cpus_per_node=1) as cluster:
        yield cluster


def bench(out: Path, *extra: str, limit: int = 6, strategies=("majority_vote", "best_of_n")) -> list[str]:
    return bench_command(out, *extra, limit=limit, strategies=strategies)


# beam search needs N to be a multiple of its beam width: width 1 runs it at budgets 1 and 2
BEAM_AT_EVERY_BUDGET = ("--param", "beam_width=1")


def on_ray(cluster, replicas: int = 2) -> list[str]:
    return ["--executor", "ray", "--ray-address", cluster.address, "--replicas", str(replicas)]


def keys(rows: list[dict]) -> list[tuple]:
    return [(r["problem_id"], r["strategy"], r["n"]) for r in rows]


def wait_for_rows(path: Path, count: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        assert process.poll() is None, "the run ended before the kill"
        assert time.time() < deadline, f"fewer than {count} rows after {timeout} s"
        time.sleep(0.2)


def test_ray_replicas_give_the_rows_of_a_local_run(cluster, tmp_path):
    """Two replicas, one per node: the same rows (answers, tokens, verdicts) as one local
    solver, the same resolved settings, and the summary on stdout."""
    local = subprocess.run(bench(tmp_path / "local"), capture_output=True, text=True, timeout=600, env=cluster.env)
    assert local.returncode == 0, local.stderr[-3000:]
    done = subprocess.run(
        bench(tmp_path / "ray", *on_ray(cluster)), capture_output=True, text=True, timeout=600, env=cluster.env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy vs compute" in done.stdout and "wrote" in done.stdout

    def timeless(store: RunStore) -> list[dict]:
        return sorted(
            ({k: v for k, v in r.items() if k != "wall_s"} for r in store.rows()),
            key=lambda r: (r["problem_id"], r["strategy"], r["n"]),
        )

    here, there = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    assert len(there.rows()) == 6 * 2 * 2 and not any(r["error"] for r in there.rows())
    assert timeless(there) == timeless(here)
    assert there.config()["resolved"] == here.config()["resolved"]


def test_resume_after_the_driver_is_killed(cluster, tmp_path):
    out = tmp_path / "run"
    command = bench(
        out,
        *on_ray(cluster),
        "--concurrency",
        "1",
        *BEAM_AT_EVERY_BUDGET,
        limit=8,
        strategies=("majority_vote", "beam_search"),
    )
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cluster.env, start_new_session=True
    )
    wait_for_rows(out / "rows.jsonl", 3, driver)
    driver.kill()  # the driver alone: Ray ends the actors it owned
    driver.wait()
    before = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert 3 <= len(before) < 8 * 2 * 2, "the kill should land mid-run"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=cluster.env)
    assert again.returncode == 0, again.stderr[-3000:]
    after = RunStore(out).rows()
    assert len(keys(after)) == len(set(keys(after))) == 8 * 2 * 2
    assert after[: len(before)] == before  # the first driver's rows kept as they were


def test_option_errors_are_clear(cluster, tmp_path):
    local = subprocess.run(
        bench(tmp_path / "a", "--replicas", "2"), capture_output=True, text=True, timeout=300, env=cluster.env
    )
    assert local.returncode == 2 and "--replicas only apply to --executor ray" in local.stderr
    gpus = subprocess.run(
        bench(tmp_path / "b", *on_ray(cluster), "--gpus-per-replica", "1"),
        capture_output=True,
        text=True,
        timeout=300,
        env=cluster.env,
    )
    assert gpus.returncode == 2 and "a replica needs 1 CPU and 1 GPU" in gpus.stderr and "0 GPUs" in gpus.stderr
    assert not (tmp_path / "b" / "rows.jsonl").exists()
    run_fresh_python(
        "import sys; sys.modules['ray'] = None\n"
        "from rfprm_tts.errors import ConfigError\n"
        "from rfprm_tts.bench.ray_executor import import_ray\n"
        "try:\n    import_ray()\nexcept ConfigError as exc:\n    assert \"pip install 'rfprm-tts[ray]'\" in str(exc), exc\n"
        "else:\n    raise SystemExit('no error without ray')\n"
    )


def test_a_replica_dead_for_good_is_left_out(cluster, tmp_path, caplog):
    """A replica Ray will not restart (killed with no_restart): its problems go to the other
    one, the run finishes, and the dead one is not polled in a loop."""
    import asyncio

    import ray

    from rfprm_tts.bench import RayExecutor, load_problems, run_bench

    if os.environ.get("RAY_AUTH_MODE", "disabled").lower() != "disabled":
        pytest.skip("the driver here is this process, whose RAY_AUTH_MODE is not the cluster's (disabled)")
    executor = RayExecutor(2, address=cluster.address, concurrency=2)
    out = tmp_path / "run"

    async def run_and_kill() -> None:
        bench = asyncio.ensure_future(
            run_bench(
                load_problems("demo", limit=10),
                ["majority_vote", "beam_search"],
                [1, 2],
                demo_settings(generator={"model": "demo", "seed": 0}, strategy_params={"beam_width": 1}),
                out,
                executor=executor,
                progress=False,
            )
        )
        while not ((out / "rows.jsonl").exists() and len((out / "rows.jsonl").read_text().splitlines()) >= 4):
            assert not bench.done(), "the run ended before the kill"
            await asyncio.sleep(0.1)
        ray.kill(executor._actors[1], no_restart=True)
        started = time.process_time()
        await bench
        assert time.process_time() - started < 60, "the driver spun on the dead replica"

    with caplog.at_level("WARNING", logger="rfprm_tts.bench.ray_executor"):
        try:
            asyncio.run(run_and_kill())
        finally:
            ray.shutdown()
    assert "Ray replica 1 is dead and left out" in caplog.text
    rows = RunStore(out).rows()
    assert len(keys(rows)) == len(set(keys(rows))) == 10 * 2 * 2 and not [r for r in rows if r["error"]]


def test_a_worker_node_killed_mid_run_loses_no_problem(cluster, tmp_path):
    """Kill the second node (its raylet and the replica on it) while it holds problems: they
    are solved by the other replica; every row is written exactly once and none failed."""
    out, log = tmp_path / "run", tmp_path / "driver.log"
    command = bench(
        out, *on_ray(cluster), *BEAM_AT_EVERY_BUDGET, "-v", limit=16, strategies=("majority_vote", "beam_search")
    )
    with log.open("w") as stderr_file:
        driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=cluster.env)
        # The kill must find work on both replicas: the one that loads second joins the run
        # later (it says "is up"), and on a busy machine that can be after the first rows.
        deadline = time.time() + 300
        while "is up" not in log.read_text():
            assert driver.poll() is None and time.time() < deadline, "the second replica never joined the run"
            time.sleep(0.2)
        wait_for_rows(out / "rows.jsonl", 4, driver)  # early: at beam width 1 the rest goes fast
        cluster.kill_node(0)
        stdout, _ = driver.communicate(timeout=600)
    stderr = log.read_text()
    assert driver.returncode == 0, stderr[-3000:]
    assert "died" in stderr and "goes to another replica" in stderr, "the kill should catch problems in flight"
    rows = RunStore(out).rows()
    assert len(keys(rows)) == len(set(keys(rows))) == 16 * 2 * 2
    assert not [r for r in rows if r["error"]]
    assert "accuracy vs compute" in stdout
