"""A Ray cluster of several nodes on this one machine, started with Ray's own `ray start`:
to try `rfprm bench --executor ray`, for the tests (a node can be killed), and for the scaling
benchmark. A real cluster is started the same way, one `ray start` per machine.

Authentication: since Ray 2.5x, `ray start` runs in token mode when it finds a token (for
example the ~/.ray/auth_token that a first local `ray.init()` saves), and a driver connecting
without that token is refused. So the cluster picks its mode itself, whatever RAY_AUTH_* and
~/.ray say, and `env` gives its drivers the same settings."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from rfprm_tts.errors import RfprmError

AuthMode = Literal["disabled", "token"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """A head node plus `workers` more, each with `cpus_per_node` CPUs, on 127.0.0.1. Every
    node is one `ray start --block` process group: killing it kills that node (and `stop()`
    leaves any other Ray on the machine alone, unlike `ray stop`).

    `auth`: "disabled" or "token" (a fresh token in `temp_dir`/auth_token), for the nodes and
    for `env`, the environment to give the cluster's drivers. A driver in this process
    (benchmarks/ray_scaling.py) connects to a "disabled" cluster as long as RAY_AUTH_MODE is
    unset or disabled here. Ray listens on every interface of the machine either way: use
    "token" where others can reach it."""

    def __init__(
        self,
        temp_dir: str | Path,
        workers: int = 1,
        cpus_per_node: int = 1,
        object_store_bytes: int = 80_000_000,
        auth: AuthMode = "disabled",
    ):
        self.ray = str(Path(sys.executable).with_name("ray"))  # the `ray` of this environment
        self.temp_dir = Path(temp_dir)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.env = _cluster_env(self.temp_dir, auth)
        self.node_args = [
            f"--num-cpus={cpus_per_node}",
            f"--object-store-memory={object_store_bytes}",
            "--node-ip-address=127.0.0.1",
        ]
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self.head = self._node(
            "head",
            "--head",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            f"--ray-client-server-port={_free_port()}",
            "--include-dashboard=false",
        )
        self.workers: list[subprocess.Popen] = []
        try:
            self._wait_for_nodes(1)
            for _ in range(workers):
                self.add_node()
        except BaseException:
            self.stop()
            raise

    def _node(self, name: str, *args: str) -> subprocess.Popen:
        """`ray start` for one node; its output in `temp_dir`/NAME.log says why it stopped."""
        with open(self.temp_dir / f"{name}.log", "w") as output:
            return subprocess.Popen(
                [self.ray, "start", "--block", *args, *self.node_args],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def add_node(self) -> None:
        """Start one more node and wait until the cluster counts it."""
        self.workers.append(self._node(f"worker{len(self.workers) + 1}", f"--address={self.address}"))
        self._wait_for_nodes(1 + sum(w.poll() is None for w in self.workers))

    def _wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        """Wait in a fresh Python with `env`: a driver there authenticates as the nodes do,
        whatever this process's environment says or its Ray has cached. A head that exits
        ends the wait at once."""
        code = (
            "import sys\nfrom rfprm_tts.bench.local_ray import wait_for_nodes\nfrom rfprm_tts.errors import RfprmError\n"
            f"try:\n    wait_for_nodes({self.address!r}, {count}, {timeout})\n"
            "except RfprmError as exc:\n    sys.exit(f'error: {exc}')\n"
        )
        waiter = subprocess.Popen(
            [sys.executable, "-c", code], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        while True:
            try:
                _, stderr = waiter.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if self.head.poll() is not None:
                    waiter.kill()
                    waiter.communicate()
                    head_log = self.temp_dir / "head.log"
                    raise RfprmError(
                        f"the Ray head node at {self.address} exited: {_last_line(head_log.read_text())}; "
                        f"see {head_log}"
                    ) from None
        if waiter.returncode != 0:
            raise RfprmError(_last_line(stderr).removeprefix("error: "))

    def kill_node(self, index: int = 0) -> None:
        """SIGKILL worker node `index` (its raylet and object store); its actors die with it."""
        _kill(self.workers[index])

    def stop(self) -> None:
        """Kill every node (a graceful head shutdown takes about 30 s; nothing here is kept)."""
        for node in [*self.workers, self.head]:
            _kill(node)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_nodes(address: str, count: int, timeout: float) -> None:
    """Connect to `address` until the cluster counts `count` live nodes. A refused
    authentication ends the wait at once: more time does not fix it."""
    import ray

    from rfprm_tts.bench.ray_executor import connect

    deadline = time.time() + timeout
    while True:
        try:
            connect(ray, address, log_to_driver=False)
            try:
                if sum(n["Alive"] for n in ray.nodes()) >= count:
                    return
            finally:
                ray.shutdown()
        except ConnectionError:  # the head is not listening yet
            pass
        if time.time() > deadline:
            raise RfprmError(
                f"the local Ray cluster at {address} did not reach {count} node(s) in {timeout:g} s; "
                "see its nodes' logs in session_latest/logs under its temp_dir"
            )
        time.sleep(0.5)


def _cluster_env(temp_dir: Path, auth: AuthMode) -> dict[str, str]:
    """This process's environment with one explicit authentication mode, for nodes and drivers."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE=auth)
    if auth == "token":
        token_file = temp_dir / "auth_token"
        token_file.touch(mode=0o600)  # readable by this user only
        token_file.write_text(secrets.token_hex(32))
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file)  # before ~/.ray/auth_token in Ray's search
    return env


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _kill(node: subprocess.Popen) -> None:
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGKILL)
    node.wait()
