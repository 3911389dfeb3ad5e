"""Best-of-N: sample N complete answers, score each with the PRM, keep the highest.

    candidates = sample(N)
    for c in candidates: c.score = aggregate(PRM(c.steps))
    return argmax_c c.score
"""

from __future__ import annotations

from rfprm_tts.context import SearchContext
from rfprm_tts.strategies.base import BaseStrategy, SearchOutcome, best_outcome, register


@register
class BestOfN(BaseStrategy):
    name = "best_of_n"

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        return best_outcome(await ctx.evaluate(await ctx.sample(self.params.n)))
