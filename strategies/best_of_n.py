"""Best-of-N: sample N complete answers, score each with the PRM, keep the highest.

    candidates = sample(N)
    for c in candidates: c.score = aggregate(PRM(c.steps))
    return argmax_c c.score
"""

from __future__ import annotations

from rfprm_tts.context import SearchContext, rank
from rfprm_tts.strategies.base import SearchOutcome, StrategyParams, register


@register
class BestOfN:
    name = "best_of_n"
    Params = StrategyParams

    def __init__(self, params: StrategyParams):
        self.params = params

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        completions = await ctx.sample(self.params.n)
        ranked = rank(await ctx.evaluate(completions))
        best = ranked[0] if ranked and ranked[0].ok else None
        return SearchOutcome(answer=best.answer if best else None, candidates=ranked, best=best)
