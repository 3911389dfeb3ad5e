"""Voting over N complete samples.

majority_vote (self-consistency, Wang et al.): the most common final answer; no PRM.
weighted_best_of_n: the answer whose samples have the largest total PRM score (the same
aggregation setting as best_of_n). Equivalent answers are grouped (rfprm_tts.grading).
"""

from __future__ import annotations

from rfprm_tts.context import rank
from rfprm_tts.grading import vote
from rfprm_tts.strategies.base import SampleThenChoose, SearchOutcome, register
from rfprm_tts.trajectory import Candidate


def _outcome(answer: str | None, candidates: list[Candidate], members: list[int], details: dict) -> SearchOutcome:
    """The winning group's candidates first (best scored first), then the rest. When no
    sample has an answer there is no winner, but the best-ranked sample is still returned."""
    chosen = set(members)
    ranked = rank([candidates[i] for i in members]) + rank([c for i, c in enumerate(candidates) if i not in chosen])
    best = ranked[0] if ranked and ranked[0].ok else None
    return SearchOutcome(answer=answer, candidates=ranked, best=best, details=details)


@register
class MajorityVote(SampleThenChoose):
    name = "majority_vote"
    uses_prm = False

    def choose(self, candidates: list[Candidate]) -> SearchOutcome:
        answer, members = vote([c.answer if c.ok else None for c in candidates])
        return _outcome(answer, candidates, members, {"votes": len(members)})


@register
class WeightedBestOfN(SampleThenChoose):
    name = "weighted_best_of_n"

    def choose(self, candidates: list[Candidate]) -> SearchOutcome:
        weights = [c.score if c.ok and c.score is not None else 0.0 for c in candidates]
        answer, members = vote([c.answer if c.ok else None for c in candidates], weights)
        return _outcome(answer, candidates, members, {"votes": len(members), "weight": sum(weights[i] for i in members)})
