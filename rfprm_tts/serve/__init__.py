"""`rfprm serve`: PRM reranking behind an OpenAI-compatible API (see app.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rfprm_tts.serve.app import create_app
from rfprm_tts.settings import Settings


def serve(settings: Settings) -> None:
    """Run the proxy until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.serve.host, port=settings.serve.port, log_level="info")


@contextmanager
def serving(settings: Settings, start_timeout_s: float = 300.0) -> Iterator[str]:
    """The proxy in a background thread of this process (tests, benchmarks, notebooks);
    yields its base URL (port 0 in settings: a free port) and stops it on exit."""
    import uvicorn

    config = uvicorn.Config(
        create_app(settings), host=settings.serve.host, port=settings.serve.port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="rfprm-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise RuntimeError("the proxy did not start (see its log above)")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{settings.serve.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


__all__ = ["create_app", "serve", "serving"]
