"""Servers tests talk to: a scripted HTTP server for fault injection, and the handle of the real vLLM server."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rfprm_tts.bench.servers import prometheus_counter

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@dataclass
class Reply:
    """One scripted HTTP answer: status, JSON (or raw) body, headers, delay before answering."""

    status: int = 200
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunks: list[dict] | None = None  # a stream: server-sent events, one per chunk_delay_s
    chunk_delay_s: float = 0.0


def stream_chunks(text: str, finish_reason: str = "stop", stop_reason: str | None = None) -> list[dict]:
    """A chat completion streamed one character (token) per chunk, each with the running usage
    (as vLLM sends it with continuous_usage_stats), the last chunk with the finish reason."""
    chunks = [{"role": "assistant", "content": ""}] + [{"content": ch} for ch in text]
    return [
        {
            "id": "chunk",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": finish_reason if i == len(chunks) - 1 else None,
                    "stop_reason": stop_reason if i == len(chunks) - 1 else None,
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": i, "total_tokens": 7 + i},
        }
        for i, delta in enumerate(chunks)
    ]


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
        self.headers: list[dict[str, str]] = []  # each request's headers, names in lower case
        self.request_times: list[float] = []
        self.streamed: list[tuple[int, int]] = []  # per stream: (chunks sent before it closed, chunks it had)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({key.lower(): value for key, value in self.headers.items()})
                    server.request_times.append(time.monotonic())
                    reply = server.script.pop(0) if server.script else server.default
                if reply is None:
                    reply = Reply(500, {"error": {"message": "script exhausted"}})
                if callable(reply):
                    reply = reply(body)
                time.sleep(reply.delay_s)
                if reply.chunks is not None:
                    self.stream(reply)
                    return
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body or {})
                try:
                    self.send_response(reply.status)
                    headers = {"content-type": "application/json", **reply.headers}
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(payload.encode())))
                    self.end_headers()
                    self.wfile.write(payload.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def stream(self, reply: Reply) -> None:
                """Server-sent events until the last chunk or until the client closes; how many
                chunks went out goes to `server.streamed`."""
                sent = 0
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    for chunk in reply.chunks or []:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        sent += 1
                        time.sleep(reply.chunk_delay_s)
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client closed the stream
                finally:
                    with server._lock:
                        server.streamed.append((sent, len(reply.chunks or [])))

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's teardown
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class VLLMServer:
    base_url: str
    root: str
    model_dir: Path

    def metric(self, name: str, label: str = "") -> float:
        """A counter from the server's /metrics, over the label sets that hold `label`."""
        return prometheus_counter(self.root, name, label)


def vllm_env() -> dict[str, str]:
    """The environment of the vLLM engines and servers tests start. They all run eager
    (--enforce-eager, vllm.enforce_eager): no torch.compile, which halves a start on this CPU
    (49.6 -> 24.5 s for the demo-think server) and changes no result a test reads. And with
    the engine core in the process that starts it (VLLM_ENABLE_V1_MULTIPROCESSING=0; on the CPU
    vLLM otherwise spawns an engine-core process and a worker process, each importing vLLM
    again): an in-process engine starts in 4.9 s instead of 18.6, a server in 16.3 instead of
    23.9 (tiny generator, 2 cores). The CLI's vLLM test runs as users do, with both processes."""
    env = dict(os.environ)
    env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; skips the free-memory check
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env
