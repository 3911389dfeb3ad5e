"""The benchmarks' servers: vLLM's OpenAI server on the demo generator (started with
rfprm_tts.bench.servers, as `rfprm serve` and peers' proxies are), and CPU-time readings."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rfprm_tts.bench.servers import server_process
from rfprm_tts.demo import model_path
from rfprm_tts.demo.paths import think_model_path


def vllm_server(port: int, log: Path, world: str = "demo", extra: tuple[str, ...] = ()):
    """vLLM's server on a demo world's generator (`demo` or `demo-think`), served by that name
    (`extra`: more of `vllm serve`'s options)."""
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path("generator") if world == "demo" else think_model_path("generator"),
        "--served-model-name",
        world,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "1024",
        "--seed",
        "0",
        "--max-num-seqs",
        "1024",
        *extra,
    ]
    env = {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    return server_process(command, f"http://127.0.0.1:{port}/health", log, env)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process `pid` (Linux /proc)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
