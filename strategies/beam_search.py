"""Step-level beam search with a PRM (Snell et al. 2024; search-and-learn's convention).

    beams = N first steps sampled from the question
    repeat up to max_steps:
        score every beam with the PRM (one call for all of them)
        set aside finished beams; drop duplicates
        keep the top N / M open beams (the context frees the rest from the PRM's cache),
            less those that can no longer beat the best finished beam (min, prod)
        sample M next steps for each kept beam (N open again)
    the last round generates to the end; the best finished beam wins

With verify_every = g, a round grows g steps before the PRM scores it (VG-Search,
rfprm_tts.search.granularity); with verify_margin, a round after one whose kept beams scored
within the margin of each other grows one step. With draft_threshold, each round's steps are
drafted (rfprm_tts.search.speculation): the draft model writes them, the generator rewrites
those the PRM scores under the threshold.

Beam pools belong to one search (one question), never shared across questions.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.granularity import verify_after
from rfprm_tts.search.speculation import DraftTally, next_steps
from rfprm_tts.strategies.base import (
    BaseStrategy,
    DraftedParams,
    SearchOutcome,
    StrategyParams,
    best_outcome,
    rank,
    register,
)
from rfprm_tts.trajectory import Candidate


class TreeParams(StrategyParams):
    """Beam search's and DVTS's: M continuations per kept path, for up to max_steps rounds."""

    beam_width: int = Field(4, ge=1, description="M: continuations sampled per kept beam.")
    max_steps: int = Field(40, ge=1, description="Rounds before the rest is generated to the end.")
    verify_every: int = Field(
        1,
        ge=1,
        description="g: steps a round grows before the PRM scores it (VG-Search): 1 verifies every step; a g "
        "past the answer's length verifies finished answers only, as Best-of-N does.",
    )

    @model_validator(mode="after")
    def _n_is_a_multiple_of_beam_width(self) -> TreeParams:
        """The search keeps N / M beams (DVTS: N / M subtrees) and samples M steps for each: with
        any other N it would run another budget than the N it reports."""
        n, m = self.n, self.beam_width
        if n % m:
            widths = ", ".join(str(w) for w in range(1, n + 1) if n % w == 0)
            raise ValueError(
                f"n={n} is not a multiple of beam_width={m}, so the search cannot spend exactly n samples per "
                f"round; use n in {m}, {2 * m}, {3 * m}, ... or a beam_width that divides {n} ({widths})"
            )
        return self


class BeamSearchParams(DraftedParams, TreeParams):
    """TreeParams, drafted steps (draft_threshold), and the adaptive verification rule."""

    verify_margin: float | None = Field(
        None,
        ge=0.0,
        description="Adaptive verification: when the kept beams score within this of each other, the next "
        "round grows one step (the PRM could not tell them apart), else verify_every; None: always verify_every.",
    )

    @model_validator(mode="after")
    def _drafts_are_judged_every_step(self) -> BeamSearchParams:
        if self.draft_threshold is not None and (self.verify_every > 1 or self.verify_margin is not None):
            raise ValueError(
                "draft_threshold has the PRM judge every drafted step, so it cannot be combined with verify_every > 1 "
                "or verify_margin"
            )
        return self


def unique(candidates: list[Candidate]) -> list[Candidate]:
    """Drop beams whose text repeats an earlier one (they would double the same path)."""
    seen: set[str] = set()
    kept = []
    for c in candidates:
        if c.trajectory.text not in seen:
            seen.add(c.trajectory.text)
            kept.append(c)
    return kept


@register
class BeamSearch(BaseStrategy):
    name = "beam_search"
    Params = BeamSearchParams
    params: BeamSearchParams

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        n, m, max_steps = self.params.n, self.params.beam_width, self.params.max_steps
        keep = n // m
        finished: list[Candidate] = []
        tally = DraftTally()

        every, grown = self.params.verify_every, []  # grown: the steps of each round (0: to the end)

        async def grow(prefixes: list[str], k: int, one_step: bool, steps: int) -> list[Candidate]:
            grown.append(steps if one_step else 0)  # the round's continuations, scored, repeats dropped
            return await next_steps(ctx, prefixes, k, one_step, self.params.draft_threshold, tally, unique, steps)

        beams = await grow([""], n, max_steps > 1, every)
        for depth in range(1, max_steps + 1):
            finished += [b for b in beams if b.state != "open"]
            open_beams = [
                b for b in rank([b for b in beams if b.state == "open"])[:keep] if ctx.may_still_win(b, finished)
            ]
            await ctx.keep(open_beams)
            if not open_beams or len(finished) >= n:
                break
            last_round = depth + 1 == max_steps  # the final round generates to the end
            steps = verify_after(open_beams, every, self.params.verify_margin)
            beams = await grow([b.trajectory.text for b in open_beams], m, not last_round, steps)
        drafted = tally.details() if self.params.draft_threshold is not None else {}
        granular = {"steps_per_round": grown} if every > 1 or self.params.verify_margin is not None else {}
        return best_outcome(finished or open_beams, {"rounds": depth, **drafted, **granular})
