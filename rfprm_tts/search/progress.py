"""A search's progress as it runs, for callers that show it (the CLI's progress line, the
proxy's stream events): a `Progress` after every generation round and every PRM call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rfprm_tts.trajectory import Usage


@dataclass(frozen=True)
class Progress:
    """Where a search stands after one phase of a round: `candidates` generated (or scored)
    in it, how many of those are still `open` (partial), complete answers so far, the best
    PRM score of a complete answer so far, and the tokens spent."""

    round: int
    phase: Literal["generate", "score"]
    candidates: int
    open: int
    finished: int
    best_score: float | None
    generated_tokens: int
    prm_tokens: int
    elapsed_s: float


class ProgressMeter:
    """Counts rounds, complete answers and the best score of a solve, and tells `on_progress`."""

    def __init__(self, usage: Usage, on_progress: Callable[[Progress], None] | None = None):
        self.usage, self.on_progress = usage, on_progress
        self.rounds = 0
        self.finished = 0  # complete answers generated so far
        self.best_score: float | None = None
        self.started = time.perf_counter()

    def saw_scores(self, finished_scores: list[float | None]) -> None:
        """Scores of complete answers just given: the best so far may rise."""
        known = [s for s in [*finished_scores, self.best_score] if s is not None]
        self.best_score = max(known, default=None)

    def report(self, phase: Literal["generate", "score"], candidates: int, open: int, finished: int = 0) -> None:
        """The phase just done gave `candidates`, `open` of them still partial, `finished`
        newly complete (generation rounds)."""
        if phase == "generate":
            self.rounds += 1
            self.finished += finished
        if self.on_progress is None:
            return
        self.on_progress(
            Progress(
                round=self.rounds,
                phase=phase,
                candidates=candidates,
                open=open,
                finished=self.finished,
                best_score=self.best_score,
                generated_tokens=self.usage.generated_tokens,
                prm_tokens=self.usage.prm_tokens,
                elapsed_s=round(time.perf_counter() - self.started, 3),
            )
        )
