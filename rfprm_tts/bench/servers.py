"""Servers that benchmarks and tests start as their own processes (vLLM's OpenAI server,
`rfprm serve`, peers' proxies): a free port, and a process that is up once its health URL
answers and is stopped (terminate, then kill) when the block ends."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(
    command: list[str],
    ready_url: str,
    log: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Start `command` (output to `log`), yield it once `ready_url` answers, stop it on exit.
    A server that exits or is not ready within `timeout_s` is an error quoting its log's end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(ready_url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{command[:4]} not ready in {timeout_s:.0f} s:\n{log.read_text()[-4000:]}"
                    ) from None
                time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prometheus_counter(root: str, name: str, label: str = "") -> float:
    """A counter from a server's Prometheus /metrics at `root` (vLLM's, the proxy's), summed
    over the label sets that hold `label` (e.g. 'finished_reason="abort"')."""
    text = urllib.request.urlopen(f"{root}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
