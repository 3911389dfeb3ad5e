"""Servers tests talk to: a scripted HTTP server for fault injection, and the handle of the real vLLM server."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HAS_VLLM = importlib.util.find_spec("vllm") is not None


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
