"""Adaptive self-consistency: vote in rounds and stop once the vote is clear.

    total = first
    repeat:
        sample (total - samples so far) more answers      (none sent beyond what is needed)
        vote over all of them (PRM-weighted with `weighted`)
        stop if the leading answer is clear, or N samples are in, or the token budget is spent
        total = min(N, 2 x total)
    return the vote's winner

"Clear" is a Beta posterior test (after its_hub's Beta self-consistency): with a uniform
prior, the leader's share p of answers has posterior Beta(1 + a, 1 + b) after a votes for it
and b for the rest, and the vote stops once P(p > 1/2) >= `confidence`, or, with
`stop="share"`, once the leader holds at least `share` of the answers given.
"""

from __future__ import annotations

from collections import Counter
from math import comb
from typing import Literal

from pydantic import Field

from rfprm_tts.search.context import SearchContext
from rfprm_tts.strategies.base import (
    BaseStrategy,
    SamplingParams,
    SearchOutcome,
    StrategyParams,
    grouping,
    register,
    sample_answers,
)
from rfprm_tts.strategies.voting import tally, vote_outcome
from rfprm_tts.trajectory import Candidate


class AdaptiveVoteParams(SamplingParams):
    first: int = Field(2, ge=1, description="Samples in the first round; each round doubles the total.")
    stop: Literal["beta", "share"] = Field("beta", description="The stopping rule: Beta posterior test, or a share.")
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="beta: stop once P(the leader's share > 1/2) reaches this."
    )
    share: float = Field(
        0.7, gt=0.5, le=1.0, description="share: stop once the leader holds this share of the answers."
    )
    weighted: bool = Field(False, description="Weight votes by PRM score (loads the PRM); else plain counts.")


def leader_is_clear(leader: int, others: int, confidence: float) -> bool:
    """P(p > 1/2) under Beta(1 + leader, 1 + others) >= confidence. For integer parameters
    P(p <= 1/2) is P(Binomial(leader + others + 1, 1/2) >= leader + 1)."""
    n = leader + others + 1
    outcomes: int = 2**n  # an int: typeshed types int ** int as Any (a negative power is a float)
    return sum(comb(n, k) for k in range(leader + 1)) / outcomes >= confidence


@register
class AdaptiveVote(BaseStrategy):
    name = "adaptive_vote"
    Params = AdaptiveVoteParams
    params: AdaptiveVoteParams

    def __init__(self, params: StrategyParams):
        super().__init__(params)
        # unweighted and without PRM-gated exits, a solve never loads the PRM
        self.uses_prm = self.params.weighted or self.params.early_exit == "prm"

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        p = self.params
        candidates: list[Candidate]
        candidates, total, rounds = [], min(p.first, p.n), 0
        exits: Counter[str] = Counter()
        while True:
            rounds += 1
            completions = await sample_answers(ctx, total - len(candidates), p, exits)
            candidates += await ctx.evaluate(completions) if p.weighted else [ctx.candidate(c) for c in completions]
            result = await grouping([c.answer for c in candidates], tally, candidates, p.weighted)
            given = sum(c.ok and c.answer is not None for c in candidates)
            leader = len(result.members)
            clear = given > 0 and (
                leader_is_clear(leader, given - leader, p.confidence) if p.stop == "beta" else leader / given >= p.share
            )
            if clear or total >= p.n or ctx.usage.budget_exhausted:
                details = {"thinking": dict(exits)} if exits else {}
                return vote_outcome(
                    result, candidates, rounds=rounds, samples=len(candidates), stopped_early=total < p.n, **details
                )
            total = min(p.n, 2 * total)
