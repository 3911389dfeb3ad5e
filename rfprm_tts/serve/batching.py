"""One PRM shared by concurrent requests: their scoring work is batched.

Each request's strategy scores its candidates with `score_batch` (from a worker thread).
`BatchingScorer` hands those calls to a BatchWorker, which takes what arrived within a short
window (up to a maximum number of trajectories) and scores it in one `score_many` call, so the
PRM runs larger batches, and its throughput grows, as load grows. A batch that fails is split:
an error reaches only the request that caused it. Batches are size-aware: a trajectory longer
than TRAJECTORY_CHARS (question included) counts as one per TRAJECTORY_CHARS towards the
batch's maximum, so a huge prompt fills a batch of its own instead of padding its neighbours'
inputs to its length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rfprm_tts.prm.protocol import Request, ScoredBatch, Scorer, ScorerDefaults, Steps
from rfprm_tts.runtime.batch_worker import BatchWorker

TRAJECTORY_CHARS = 8192  # an ordinary answer and its question are shorter: each counts as one


def weight(request: Request) -> int:
    """What a request counts towards a batch's maximum: its trajectories, a long one counting
    once per TRAJECTORY_CHARS."""
    question, trajectories = request
    return sum(1 + (len(question) + sum(len(step) for step in steps)) // TRAJECTORY_CHARS for steps in trajectories)


class BatchingScorer(ScorerDefaults):
    """The Scorer protocol over another scorer, batching concurrent calls; every capability
    of the wrapped scorer (its aggregation, parameter count, prefix cache, what it can score)
    passes through."""

    def __init__(
        self,
        scorer: Scorer,
        *,
        window_s: float = 0.005,
        max_batch: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
    ):
        """`on_batch(requests, weight)` is told the size of every batched call (its
        trajectories, long ones counting more: see `weight`)."""
        self.scorer = scorer
        self.aggregation = scorer.aggregation
        self.num_parameters = scorer.num_parameters
        self.prefix_cache = scorer.prefix_cache
        self.partial_ok = scorer.partial_ok
        self.one_score = scorer.one_score
        self._worker: BatchWorker[Request, ScoredBatch] = BatchWorker(
            scorer.score_many,
            window_s=window_s,
            max_size=max_batch,
            size=weight,
            on_batch=on_batch,
            name="rfprm-prm-batcher",
        )

    def score_batch(self, question: str, trajectories: Sequence[Steps]) -> ScoredBatch:
        return self._worker.submit((question, trajectories)).result()

    def score_many(self, requests: Sequence[Request]) -> list[ScoredBatch]:
        """All of them into the batcher at once (so they share batches), then every result."""
        futures = [self._worker.submit(request) for request in requests]
        return [future.result() for future in futures]

    def describe(self) -> dict:
        return self.scorer.describe()

    def close(self) -> None:
        self._worker.close()
        self.scorer.close()
