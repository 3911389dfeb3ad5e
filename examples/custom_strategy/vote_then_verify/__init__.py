"""vote_then_verify: a plug-in strategy for rfprm-tts, in a package of its own.

    samples = sample(N)
    votes = majority vote over the samples' final answers
    if the leading answer holds at least `agreement` of the votes: return it (no PRM call)
    else: score every sample with the PRM and return the best one

Cheap when the generator is confident, careful when it is not. Install this folder
(`pip install examples/custom_strategy`) and use it by name:
    rfprm solve "Compute 2 + 3 * 4." --strategy vote_then_verify -n 8 --param agreement=0.75
    rfprm bench --dataset demo --limit 20 --strategies vote_then_verify majority_vote --budgets 4 8 --out runs/vtv
"""

from __future__ import annotations

from pydantic import Field

from rfprm_tts.strategies import BaseStrategy, SearchContext, SearchOutcome, StrategyParams, best_outcome, rank, vote


class VoteThenVerifyParams(StrategyParams):
    agreement: float = Field(0.5, gt=0, le=1, description="Share of votes that settles the answer without the PRM.")


class VoteThenVerify(BaseStrategy):
    name = "vote_then_verify"
    Params = VoteThenVerifyParams

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        candidates = [ctx.candidate(c) for c in await ctx.sample(self.params.n)]
        majority = vote([c.answer if c.ok else None for c in candidates])
        share = len(majority.members) / len(candidates)
        if share >= self.params.agreement:
            ranked = rank([candidates[i] for i in majority.members])
            others = [c for i, c in enumerate(candidates) if i not in set(majority.members)]
            return SearchOutcome(majority.answer, ranked + rank(others), ranked[0], {"verified": False, "share": share})
        return best_outcome(await ctx.score_candidates(candidates), {"verified": True, "share": share})
