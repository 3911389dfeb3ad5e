"""The scorer protocol: what every PRM implementation provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class ScoredBatch:
    """Step scores (one list per trajectory, one score per step) and the tokens the PRM ran."""

    step_scores: list[list[float]] = field(default_factory=list)
    tokens: int = 0


@runtime_checkable
class Scorer(Protocol):
    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        """Score every step of every trajectory (each a list of step strings) of one question."""
        ...

    def score(self, question: str, trajectories: Sequence[Sequence[str]]) -> list[list[float]]:
        """Just the step scores of `score_batch`."""
        ...
