"""One worker thread that runs what many callers submit, in batches.

Used where one model serves concurrent callers: the proxy's PRM (the scoring work of
concurrent requests goes to one `score_many`). (The in-process vLLM generator drives its engine
step by step instead, so a cancelled request leaves the engine at the next step.) Callers submit from any thread or event loop and get a
`concurrent.futures.Future` (await it with `asyncio.wrap_future`).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchWorker(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        window_s: float = 0.0,
        max_size: int | None = None,
        size: Callable[[T], int] = lambda item: 1,
        on_batch: Callable[[int, int], None] | None = None,
        name: str = "rfprm-batch-worker",
    ):
        """`run_batch(items)` returns one result per item, in order. After the first item
        arrives the worker waits `window_s` for more, up to `max_size` (counted by `size`);
        `on_batch(items, size)` is told each batch it takes. A batch that raises is split: each
        item runs alone, so an error reaches only the item that caused it."""
        self.run_batch = run_batch
        self.window_s = window_s
        self.max_size = max_size
        self.size = size
        self.on_batch = on_batch
        self._queue: list[tuple[T, concurrent.futures.Future]] = []
        self._arrived = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> concurrent.futures.Future[R]:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._arrived:
            if self._closed:
                raise RuntimeError("this batch worker is closed")
            self._queue.append((item, future))
            self._arrived.notify()
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._arrived:
            self._closed = True
            self._arrived.notify()
        self._thread.join()

    def _total(self, queued: list[tuple[T, concurrent.futures.Future]]) -> int:
        return sum(self.size(item) for item, _ in queued)

    def _full(self) -> bool:
        return self.max_size is not None and self._total(self._queue) >= self.max_size

    def _take(self) -> list[tuple[T, concurrent.futures.Future]] | None:
        """Wait for a first item, then for the window to pass or the batch to fill. None
        once closed and drained."""
        with self._arrived:
            while not self._queue and not self._closed:
                self._arrived.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.window_s
            while (left := deadline - time.monotonic()) > 0 and not self._full() and not self._closed:
                self._arrived.wait(left)
            batch: list[tuple[T, concurrent.futures.Future]] = []
            taken = 0
            while self._queue and (
                not batch or self.max_size is None or taken + self.size(self._queue[0][0]) <= self.max_size
            ):
                taken += self.size(self._queue[0][0])
                batch.append(self._queue.pop(0))
            return batch

    def _serve(self) -> None:
        while (batch := self._take()) is not None:
            live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if self.on_batch is not None and live:
                self.on_batch(len(live), self._total(live))
            if live:
                self._run(live)

    def _run(self, batch: list[tuple[T, concurrent.futures.Future]]) -> None:
        try:
            results = self.run_batch([item for item, _ in batch])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for one in batch:
                self._run([one])
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)
