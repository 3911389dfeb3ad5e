"""Voting over N complete samples.

majority_vote (self-consistency, Wang et al.): the most common final answer; no PRM.
weighted_best_of_n: the answer whose samples have the largest total PRM score (the same
aggregation setting as best_of_n). Equivalent answers are grouped (rfprm_tts.grading).
"""

from __future__ import annotations

from rfprm_tts.context import SearchContext, rank
from rfprm_tts.grading import vote
from rfprm_tts.strategies.base import BaseStrategy, SearchOutcome, register
from rfprm_tts.trajectory import Candidate


def _winners_first(candidates: list[Candidate], members: list[int]) -> list[Candidate]:
    chosen = set(members)
    return rank([candidates[i] for i in members]) + rank(
        [c for i, c in enumerate(candidates) if i not in chosen]
    )


@register
class MajorityVote(BaseStrategy):
    name = "majority_vote"

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        completions = await ctx.sample(self.params.n)
        candidates = [ctx.candidate(c) for c in completions]
        answer, members = vote([c.answer if c.ok else None for c in candidates])
        ranked = _winners_first(candidates, members)
        return SearchOutcome(answer=answer, candidates=ranked, best=ranked[0] if members else None,
                             details={"votes": len(members)})


@register
class WeightedBestOfN(BaseStrategy):
    name = "weighted_best_of_n"

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        candidates = await ctx.evaluate(await ctx.sample(self.params.n))
        weights = [c.score if c.ok and c.score is not None else 0.0 for c in candidates]
        answer, members = vote([c.answer if c.ok else None for c in candidates], weights)
        ranked = _winners_first(candidates, members)
        return SearchOutcome(answer=answer, candidates=ranked, best=ranked[0] if members else None,
                             details={"votes": len(members), "weight": sum(weights[i] for i in members)})
