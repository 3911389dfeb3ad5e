"""One PRM shared by concurrent requests: their scoring work is batched.

Each request's strategy scores its candidates with `score_batch` (from a worker thread).
`BatchingScorer` queues those calls; a single thread takes what arrived within a short window
(up to a maximum number of trajectories) and scores it in one `score_many` call, so the PRM
runs larger batches, and its throughput grows, as load grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rfprm_tts.prm.base import ScoredBatch


@dataclass(eq=False)
class _Call:
    question: str
    trajectories: Sequence[Sequence[str]]
    done: threading.Event = field(default_factory=threading.Event)
    result: ScoredBatch | None = None
    error: BaseException | None = None


class BatchingScorer:
    """The scorer protocol over a scorer with `score_many`, batching concurrent calls."""

    def __init__(
        self,
        scorer,
        *,
        window_s: float = 0.005,
        max_batch: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
    ):
        """`on_batch(requests, trajectories)` is told the size of every batched call."""
        self.scorer = scorer
        self.window_s = window_s
        self.max_batch = max_batch
        self.on_batch = on_batch
        self.num_parameters = getattr(scorer, "num_parameters", None)
        self.aggregation = getattr(scorer, "aggregation", None)
        self._queue: list[_Call] = []
        self._arrived = threading.Condition()
        self._worker = threading.Thread(target=self._serve, name="rfprm-prm-batcher", daemon=True)
        self._worker.start()

    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        call = _Call(question, trajectories)
        with self._arrived:
            self._queue.append(call)
            self._arrived.notify()
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def score(self, question: str, trajectories: Sequence[Sequence[str]]) -> list[list[float | None]]:
        return self.score_batch(question, trajectories).step_scores

    def release(self, question: str, trajectories: Sequence[Sequence[str]]) -> None:
        release = getattr(self.scorer, "release", None)
        if release is not None:
            release(question, trajectories)

    def forget(self, question: str) -> None:
        forget = getattr(self.scorer, "forget", None)
        if forget is not None:
            forget(question)

    def _take(self) -> list[_Call]:
        """Wait for a first call, then for the window to pass or the batch to fill."""
        with self._arrived:
            while not self._queue:
                self._arrived.wait()
            deadline = time.monotonic() + self.window_s
            while (left := deadline - time.monotonic()) > 0 and self._size(self._queue) < self.max_batch:
                self._arrived.wait(left)
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].trajectories) <= self.max_batch):
                size += len(self._queue[0].trajectories)
                batch.append(self._queue.pop(0))
            return batch

    @staticmethod
    def _size(calls: list[_Call]) -> int:
        return sum(len(c.trajectories) for c in calls)

    def _serve(self) -> None:
        while True:
            batch = self._take()
            self._score(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), self._size(batch))
            for call in batch:
                call.done.set()

    def _score(self, batch: list[_Call]) -> None:
        """Score the calls together; when that fails, each on its own, so an error reaches
        only the call that caused it (a trajectory too long for the PRM is not an error here:
        the scorer reports it on that trajectory)."""
        try:
            results = self.scorer.score_many([(c.question, c.trajectories) for c in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to the call that caused it
            if len(batch) == 1:
                batch[0].error = exc
                return
            for call in batch:
                self._score([call])
            return
        for call, result in zip(batch, results):
            call.result = result
