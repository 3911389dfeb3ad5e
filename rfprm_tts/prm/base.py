"""The scorer protocol: what every PRM implementation provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rfprm_tts.errors import PRMInputTooLongError


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


class BatchScorer:
    """What the scorer implementations share: `score` from `score_batch`, and the context check."""

    max_length: int | None

    def score(self, question: str, trajectories: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.score_batch(question, trajectories).step_scores

    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        raise NotImplementedError

    def fits(self, ids: list[int]) -> list[int]:
        """`ids` if they fit the PRM's context; scores past it would be unreliable, so it raises."""
        if self.max_length is not None and len(ids) > self.max_length:
            raise PRMInputTooLongError(
                f"PRM input is {len(ids)} tokens, past the model's context of {self.max_length} "
                "(max_position_embeddings); scores there would be unreliable. Shorten the "
                "trajectory (generator.max_tokens) or use a PRM with a longer context."
            )
        return ids
