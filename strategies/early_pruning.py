"""PRM-guided early pruning (after Speculative Rejection, Sun et al. 2024).

    start N trajectories
    for each fraction in the schedule:
        generate one more chunk (a number of steps, or of tokens) of every open trajectory
        score the partial trajectories with the PRM
        keep the top fraction of the open ones (the context frees the rest from the PRM's cache)
    finish the survivors (continuing where they stopped, never regenerating)
    return the best complete candidate

Most generated tokens go to trajectories that look right early, so the budget N costs far
fewer tokens than Best-of-N.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from rfprm_tts.search.context import SearchContext
from rfprm_tts.strategies.base import BaseStrategy, SearchOutcome, StrategyParams, best_outcome, rank, register
from rfprm_tts.trajectory import Candidate


class EarlyPruningParams(StrategyParams):
    schedule: list[float] = Field(
        default_factory=lambda: [0.5, 0.5],
        description="Fraction of open trajectories kept at each pruning, in order.",
    )
    chunk: Literal["steps", "tokens"] = Field("steps", description="What a chunk counts.")
    chunk_size: int = Field(1, ge=1, description="Steps (or tokens) generated between prunings.")

    @field_validator("schedule")
    @classmethod
    def _fractions(cls, schedule: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in schedule):
            raise ValueError(f"every fraction must be in (0, 1], got {schedule}")
        return schedule


@register
class EarlyPruning(BaseStrategy):
    name = "early_pruning"
    Params = EarlyPruningParams
    params: EarlyPruningParams

    async def grow(self, ctx: SearchContext, prefixes: list[str], k: int) -> list[Candidate]:
        """One chunk more of every prefix (k continuations of each)."""
        if self.params.chunk == "tokens":
            return await ctx.extend(prefixes, k, one_step=False, max_tokens=self.params.chunk_size)
        candidates = await ctx.extend(prefixes, k)
        for _ in range(self.params.chunk_size - 1):
            open_ = [c for c in candidates if c.state == "open"]
            grown = iter(await ctx.extend([c.trajectory.text for c in open_], 1)) if open_ else iter(())
            candidates = [next(grown) if c.state == "open" else c for c in candidates]
        return candidates

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        finished: list[Candidate] = []
        open_ = await self.grow(ctx, [""], self.params.n)
        for fraction in self.params.schedule:
            scored = await ctx.score_candidates(open_)
            finished += [c for c in scored if c.state != "open"]
            partial = rank([c for c in scored if c.state == "open"])
            open_ = partial[: max(1, math.ceil(fraction * len(partial)))] if partial else []
            await ctx.keep(open_)
            if not open_:
                break
            open_ = await self.grow(ctx, [c.trajectory.text for c in open_], 1)
        if open_:
            done = [c for c in open_ if c.state != "open"]
            rest = [c for c in open_ if c.state == "open"]
            if rest:
                done += await ctx.extend([c.trajectory.text for c in rest], 1, one_step=False)
            finished += await ctx.score_candidates(done)
        return best_outcome(finished, {"survivors": len(open_)})
