"""A Ray cluster of several nodes on this one machine, started with Ray's own `ray start`:
to try `rfprm bench --executor ray`, for the tests (a node can be killed), and for the scaling
benchmark. A real cluster is started the same way, one `ray start` per machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """A head node plus `workers` more, each with `cpus_per_node` CPUs, on 127.0.0.1. Every
    node is one `ray start --block` process group: killing it kills that node (and `stop()`
    leaves any other Ray on the machine alone, unlike `ray stop`)."""

    def __init__(self, temp_dir: str | Path, workers: int = 1, cpus_per_node: int = 1, object_store_bytes: int = 80_000_000):
        self.ray = str(Path(sys.executable).with_name("ray"))  # the `ray` of this environment
        self.node_args = [f"--num-cpus={cpus_per_node}", f"--object-store-memory={object_store_bytes}",
                          "--node-ip-address=127.0.0.1"]
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self.head = self._node("--head", f"--port={port}", f"--temp-dir={temp_dir}",
                               f"--ray-client-server-port={_free_port()}", "--include-dashboard=false")
        self.workers: list[subprocess.Popen] = []
        try:
            self._wait_for_nodes(1)
            for _ in range(workers):
                self.add_node()
        except BaseException:
            self.stop()
            raise

    def _node(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.ray, "start", "--block", *args, *self.node_args], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def add_node(self) -> None:
        """Start one more node and wait until the cluster counts it."""
        self.workers.append(self._node(f"--address={self.address}"))
        self._wait_for_nodes(1 + sum(w.poll() is None for w in self.workers))

    def _wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        import ray

        deadline = time.time() + timeout
        while True:
            try:
                ray.init(address=self.address, log_to_driver=False)
                try:
                    if sum(n["Alive"] for n in ray.nodes()) >= count:
                        return
                finally:
                    ray.shutdown()
            except ConnectionError:  # the head is not listening yet
                pass
            if time.time() > deadline or self.head.poll() is not None:
                raise RuntimeError(f"the local Ray cluster at {self.address} did not reach {count} node(s)")
            time.sleep(0.5)

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


def _kill(node: subprocess.Popen) -> None:
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGKILL)
    node.wait()
