"""Ray's token authentication (Ray 2.5x and later) and our Ray clusters and drivers; and
LocalRayCluster's wait, which ends at once on errors that waiting cannot cure.

On a machine where Ray has run before, ~/.ray/auth_token holds a token, `ray start` then runs
its nodes in token mode, and a driver without that token is refused. Each process here runs
with HOME pointed at a temporary folder (the developer's ~/.ray is never read or written),
every driver is a separate `rfprm` or Python process with its own environment, and each
cluster is a real one from `ray start` (LocalRayCluster)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.bench import bench_command
from rfprm_tts.bench import RunStore
from rfprm_tts.bench.local_ray import AuthMode, LocalRayCluster
from rfprm_tts.errors import RfprmError

pytest.importorskip("ray")

REFUSED = "error: Ray refused the connection to {address}: authentication token missing or wrong; "
NO_TOKEN = "error: RAY_AUTH_MODE=token but Ray found no authentication token; "


def home_dir(folder: Path, token: str | None) -> Path:
    """A HOME for a test process: with ~/.ray/auth_token holding `token`, or without one."""
    folder.mkdir(parents=True, exist_ok=True)
    if token is not None:
        (folder / ".ray").mkdir(exist_ok=True)
        (folder / ".ray" / "auth_token").write_text(token)
    return folder


def user_env(home: Path, **ray_auth: str) -> dict[str, str]:
    """The environment of a user with this HOME and these RAY_AUTH_* settings (and no others)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH_")}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **ray_auth}


def start_cluster(tmp_path_factory: pytest.TempPathFactory, home: Path, auth: AuthMode) -> LocalRayCluster:
    temp_dir = tmp_path_factory.mktemp("ray")  # a short path: Ray's socket paths must fit in 107 bytes
    with pytest.MonkeyPatch.context() as patch:  # the nodes take this process's HOME
        patch.setenv("HOME", str(home))
        return LocalRayCluster(temp_dir, workers=0, cpus_per_node=1, auth=auth)


def bench(address: str, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = bench_command(
        out, "--executor", "ray", "--ray-address", address, limit=1, strategies=["majority_vote"], budgets=[1]
    )
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def assert_solved(done: subprocess.CompletedProcess, out: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    rows = RunStore(out).rows()
    assert len(rows) == 1 and not rows[0]["error"]


@pytest.mark.parametrize("token_file", [False, True], ids=["no-token-file", "token-file"])
def test_a_local_cluster_without_auth_starts_and_serves_a_driver_with_no_settings(
    tmp_path, tmp_path_factory, token_file
):
    """The bug: with ~/.ray/auth_token, `ray start` ran in token mode and the cluster's own
    wait, connecting without the token, ended after 120 s in "did not reach 1 node(s)"."""
    home = home_dir(tmp_path / "home", "a-token-from-an-earlier-ray-init" if token_file else None)
    with start_cluster(tmp_path_factory, home, "disabled") as cluster:
        # As a driver in a process of the user's (benchmarks/ray_scaling.py): no RAY_AUTH_* set.
        assert_solved(bench(cluster.address, tmp_path / "run", user_env(home)), tmp_path / "run")


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    """A cluster in token mode with a token of its own, started where ~/.ray/auth_token holds
    another one: the cluster's must win, for its nodes and its own wait alike."""
    root = tmp_path_factory.mktemp("token_cluster")
    home = home_dir(root / "home", "the-users-other-token")
    with start_cluster(tmp_path_factory, home, "token") as cluster:
        yield cluster


def cluster_token(cluster: LocalRayCluster) -> str:
    return Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text()


def test_drivers_with_the_clusters_token_connect(token_cluster, tmp_path):
    token = cluster_token(token_cluster)
    # The cluster's own settings, as its nodes have them (RAY_AUTH_TOKEN_PATH).
    assert_solved(bench(token_cluster.address, tmp_path / "env", token_cluster.env), tmp_path / "env")
    # The token in RAY_AUTH_TOKEN.
    by_variable = user_env(home_dir(tmp_path / "home1", None), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    assert_solved(bench(token_cluster.address, tmp_path / "variable", by_variable), tmp_path / "variable")
    # The token in ~/.ray/auth_token and RAY_AUTH_MODE unset: Ray alone would not send it to a HOST:PORT.
    by_file = user_env(home_dir(tmp_path / "home2", token))
    done = bench(token_cluster.address, tmp_path / "file", by_file)
    assert_solved(done, tmp_path / "file")
    assert token not in done.stdout + done.stderr


@pytest.mark.parametrize("case", ["wrong token", "another token in ~/.ray", "no token", "auth disabled"])
def test_a_refused_driver_gets_one_clear_error_at_once(token_cluster, tmp_path, case):
    home = home_dir(tmp_path / "home", "the-users-other-token" if case == "another token in ~/.ray" else None)
    env = {
        "wrong token": user_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-clusters-token"),
        "another token in ~/.ray": user_env(home),
        "no token": user_env(home, RAY_AUTH_MODE="token"),
        "auth disabled": user_env(home, RAY_AUTH_MODE="disabled"),
    }[case]
    started = time.time()
    done = bench(token_cluster.address, tmp_path / "run", env)
    assert time.time() - started < 60, "a refusal should not be retried"
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    expected = NO_TOKEN if case == "no token" else REFUSED.format(address=token_cluster.address)
    assert len(errors) == 1 and errors[0].startswith(expected), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert cluster_token(token_cluster) not in done.stdout + done.stderr
    assert not (tmp_path / "run" / "rows.jsonl").exists()


def test_the_wait_for_nodes_ends_at_a_refusal(token_cluster, tmp_path):
    """LocalRayCluster's wait (a driver of its own) stops at once when refused: waiting would not help."""
    code = (
        f"from rfprm_tts.bench.local_ray import wait_for_nodes\n"
        f"wait_for_nodes({token_cluster.address!r}, 1, timeout=120)\n"
    )
    env = user_env(home_dir(tmp_path / "home", None), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-clusters-token")
    started = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert time.time() - started < 60
    assert done.returncode != 0
    assert "RfprmError: Ray refused the connection" in done.stderr.splitlines()[-1]


def test_the_wait_for_nodes_ends_when_the_head_exits(tmp_path_factory):
    """Another error that waiting cannot cure: a head that cannot start (here Ray's socket
    paths under a too long temp_dir) is reported at once, with the line of its log that says why."""
    too_long = tmp_path_factory.mktemp("ray") / ("x" * 60)
    started = time.time()
    with pytest.raises(RfprmError, match="the Ray head node at .* exited: .*AF_UNIX path length"):
        LocalRayCluster(too_long, workers=0)
    assert time.time() - started < 60
