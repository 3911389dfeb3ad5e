"""Voting over N complete samples.

majority_vote (self-consistency, Wang et al.): the most common final answer; no PRM.
weighted_best_of_n: the answer whose samples have the largest total PRM score (the same
aggregation setting as best_of_n). Equivalent answers are grouped (rfprm_tts.grading.equivalence).
"""

from __future__ import annotations

from rfprm_tts.grading.equivalence import Vote, vote
from rfprm_tts.strategies.base import SampleThenChoose, SearchOutcome, rank, register
from rfprm_tts.trajectory import Candidate


def vote_outcome(result: Vote, candidates: list[Candidate], **details: object) -> SearchOutcome:
    """The winning group's candidates first (best scored first), then the rest. When no
    sample has an answer there is no winner, but the best-ranked sample is still returned.
    Comparisons math-verify could not decide are reported (counted as different answers)."""
    chosen = set(result.members)
    ranked = rank([candidates[i] for i in result.members]) + rank(
        [c for i, c in enumerate(candidates) if i not in chosen]
    )
    best = ranked[0] if ranked and ranked[0].ok else None
    details = {"votes": len(result.members), **details, "unchecked_comparisons": result.unchecked}
    return SearchOutcome(answer=result.answer, candidates=ranked, best=best, details=details)


def tally(candidates: list[Candidate], weighted: bool = False) -> Vote:
    """The vote over the candidates' answers (failed ones abstain), each counted once, or
    weighted by its PRM score (unscored: 0)."""
    answers = [c.answer if c.ok else None for c in candidates]
    weights = [c.score if c.ok and c.score is not None else 0.0 for c in candidates] if weighted else None
    return vote(answers, weights)


@register
class MajorityVote(SampleThenChoose):
    name = "majority_vote"
    scores_answers = False

    def choose(self, candidates: list[Candidate]) -> SearchOutcome:
        return vote_outcome(tally(candidates), candidates)


@register
class WeightedBestOfN(SampleThenChoose):
    name = "weighted_best_of_n"

    def choose(self, candidates: list[Candidate]) -> SearchOutcome:
        result = tally(candidates, weighted=True)
        return vote_outcome(result, candidates, weight=sum(candidates[i].score or 0.0 for i in result.members))
