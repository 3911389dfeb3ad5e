"""Running the proxy: `serve` (uvicorn in the foreground, as `rfprm serve` does) and `serving`
(in a thread, for tests and notebooks), with the query string's keys kept out of the access log."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode

from rfprm_tts.serve.app import create_app
from rfprm_tts.settings import Settings

# Longer than clients keep idle pooled connections between bursts: a server that closes a
# keep-alive connection as a client reuses it makes that request fail (uvicorn's 5 s default
# did so at 256 requests in flight, benchmarks/overhead.py).
KEEP_ALIVE_S = 75


class RedactQuery(logging.Filter):
    """Blanks the values of a logged request's query string: a client may put its key there
    (`?api_key=...`), and the proxy's own API takes nothing in a query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access line: (client, method, path with query, HTTP version, status)
        if isinstance(record.args, tuple) and len(record.args) == 5 and "?" in str(record.args[2]):
            path, _, query = str(record.args[2]).partition("?")
            blanked = urlencode([(name, "REDACTED") for name, _ in parse_qsl(query, keep_blank_values=True)], safe="")
            record.args = (*record.args[:2], f"{path}?{blanked}", *record.args[3:])
        return True


def _config(settings: Settings, log_level: str):  # -> uvicorn.Config
    import uvicorn

    config = uvicorn.Config(
        create_app(settings),
        host=settings.serve.host,
        port=settings.serve.port,
        log_level=log_level,
        access_log=settings.serve.access_log,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    access = logging.getLogger("uvicorn.access")  # configured by uvicorn.Config just now
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())
    return config


def serve(settings: Settings) -> None:
    """Run the proxy until interrupted."""
    import uvicorn

    steady_malloc()
    uvicorn.Server(_config(settings, "info")).run()


# glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8


def steady_malloc() -> None:
    """Keep a long-running proxy's memory flat. glibc raises its mmap threshold each time a
    large block (a request body of hundreds of KB) is freed, so later large blocks come from
    heaps that never shrink, one per thread: the soak grew the proxy from 758 to 1,887 MB. A
    fixed threshold and two arenas keep it flat, as MALLOC_MMAP_THRESHOLD_ / MALLOC_ARENA_MAX
    would. Nothing happens off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        return


@contextmanager
def serving(settings: Settings, start_timeout_s: float = 300.0) -> Iterator[str]:
    """The proxy in a background thread of this process (tests, benchmarks, notebooks);
    yields its base URL (port 0 in settings: a free port) and stops it on exit."""
    import uvicorn

    server = uvicorn.Server(_config(settings, "warning"))
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
