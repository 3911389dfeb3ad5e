"""Speculative steps: a cheap draft model (settings.draft) writes each step, a judge checks it,
and the target model (the generator) writes only the steps the judge rejects.

`speculative_steps` is reward-guided speculative decoding (RSD, Liao et al., ICML 2025), the
PRM the judge; `specreason` is SpecReason (Pan et al. 2025), the target model the judge (it
rates the step with one digit: rfprm_tts.search.judge), no PRM.

    answer = ""
    repeat up to max_steps:
        the draft proposes n next steps; the judge scores them
        the best draft step scores >= threshold?   accept it
        else (or the draft failed): the target writes target_n next steps and the best is
            taken (the PRM's pick; with compare_drafts, the best of them and the rejected
            drafts, target steps winning ties; specreason takes the target's first)
        a finished answer ends the search
    an answer still open after max_steps: the target writes the rest

The result's details count the steps each model wrote, and the draft's acceptance rate (the
share of rounds whose draft passed the threshold); each candidate's `step_models` says who
wrote each of its steps.
"""

from __future__ import annotations

import logging

from pydantic import Field

from rfprm_tts.errors import GenerationError
from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.judge import rate_last_steps
from rfprm_tts.search.speculation import last_step_score
from rfprm_tts.strategies.base import BaseStrategy, SearchOutcome, StrategyParams, best_outcome, register
from rfprm_tts.trajectory import Candidate

log = logging.getLogger(__name__)


class SpeculativeStepsParams(StrategyParams):
    n: int = Field(1, ge=1, description="Draft steps proposed for each step (RSD's default: 1).")
    threshold: float = Field(
        0.7, ge=0.0, description="A draft step is accepted when the judge scores it at least this (0 to 1)."
    )
    target_n: int = Field(1, ge=1, description="Steps the target writes when the drafts are rejected.")
    compare_drafts: bool = Field(
        False, description="When the drafts are rejected, the PRM chooses among the target's steps and the drafts."
    )
    max_steps: int = Field(40, ge=1, description="Step rounds before the target writes the rest of the answer.")


@register
class SpeculativeSteps(BaseStrategy):
    name = "speculative_steps"
    Params = SpeculativeStepsParams
    params: SpeculativeStepsParams

    @property
    def uses_draft(self) -> bool:
        return True

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        p = self.params
        answer, chosen = "", None
        counts = {"draft_steps": 0, "target_steps": 0, "accepted": 0, "draft_failures": 0}
        rounds = 0
        for rounds in range(1, p.max_steps + 1):  # noqa: B007 - read after the loop
            try:
                drafts = await self.judged(ctx, await ctx.extend([answer], p.n, by="draft"))
            except GenerationError:  # the draft failed (after its retries): the target takes this step
                drafts, counts["draft_failures"] = [], counts["draft_failures"] + 1
            best = max(drafts, key=lambda judged: judged[1], default=None)
            if best is not None and best[1] >= p.threshold:
                chosen = best[0]
                counts["draft_steps"] += 1
                counts["accepted"] += 1
            else:
                targets = await ctx.extend([answer], p.target_n, by="target")
                if not targets:  # the token budget is spent
                    break
                chosen = await self.pick_target(ctx, targets, [c for c, _ in drafts])
                counts["draft_steps" if any(chosen is c for c, _ in drafts) else "target_steps"] += 1
            await ctx.keep([chosen] if chosen.state == "open" else [])
            answer = chosen.trajectory.text
            if chosen.state != "open":
                break
        else:
            rest = (
                await ctx.extend([answer], 1, one_step=False) if chosen is not None and chosen.state == "open" else []
            )
            if rest:  # none when the token budget is spent: the open answer stands
                chosen = (await self.finished(ctx, rest))[0]
        details = {**counts, "acceptance": counts["accepted"] / rounds if rounds else None}
        return best_outcome([chosen] if chosen is not None else [], details)

    async def judged(self, ctx: SearchContext, drafts: list[Candidate]) -> list[tuple[Candidate, float]]:
        """Each draft step with the judge's score of it: the PRM's step score."""
        return [(c, last_step_score(c)) for c in await ctx.score_candidates(drafts)]

    async def pick_target(self, ctx: SearchContext, targets: list[Candidate], drafts: list[Candidate]) -> Candidate:
        """The step taken when the drafts are rejected: the PRM's best target step (or of the
        target steps and the drafts, with compare_drafts)."""
        scored = await ctx.score_candidates(targets)
        return max([*scored, *drafts] if self.params.compare_drafts else scored, key=last_step_score)

    async def finished(self, ctx: SearchContext, candidates: list[Candidate]) -> list[Candidate]:
        return await ctx.score_candidates(candidates)


@register
class SpecReason(SpeculativeSteps):
    name = "specreason"
    uses_prm = False

    async def judged(self, ctx: SearchContext, drafts: list[Candidate]) -> list[tuple[Candidate, float]]:
        """Each draft step with the target's rating of it (rfprm_tts.search.judge)."""
        ok = [c for c in drafts if c.ok]
        ratings = await rate_last_steps(ctx, [c.trajectory.text for c in ok])
        if ok and all(r is None for r in ratings):
            log.warning(
                "specreason: the generator gave no digit among its top log-probabilities (does the server return "
                "top_logprobs?), so the drafts count as rejected and the generator writes every step"
            )
        return [(c, r if r is not None else float("-inf")) for c, r in zip(ok, ratings)]

    async def pick_target(self, ctx: SearchContext, targets: list[Candidate], drafts: list[Candidate]) -> Candidate:
        """The target's own step: it is the judge, and it wrote it."""
        return next((c for c in targets if c.ok), targets[0])

    async def finished(self, ctx: SearchContext, candidates: list[Candidate]) -> list[Candidate]:
        return candidates
