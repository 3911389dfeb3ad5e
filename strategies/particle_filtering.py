"""Particle filtering with a PRM (after Puri et al. 2025, "Probabilistic Inference Scaling").

    particles = N first steps sampled from the question
    repeat up to max_steps:
        score the particles with the PRM (one call for all); set aside the finished ones
        weights = softmax(score / temperature) over the open particles; while the effective
            sample size 1 / sum(w^2) is below min_ess x their count, double the temperature
        draw as many particles as are open, with replacement, by weight (systematic or
            multinomial); the context frees the ones never drawn from the PRM's cache
        sample one next step for every drawn particle (copies of one particle grow apart)
    the last round generates to the end
    answer: the best finished particle, or the PRM-weighted vote of the finished ones

With draft_threshold, the steps are drafted (rfprm_tts.search.speculation): the draft model
writes them, the generator rewrites those the PRM scores under the threshold.

Unlike beam search, a particle with a lower score keeps a chance to survive, so one
over-rated early step does not take the whole budget. The score a weight reads is the last
step's (the paper's choice: how likely this step is right) or the aggregated one.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from itertools import accumulate
from typing import Literal, Protocol

from pydantic import Field

from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.speculation import DraftTally, next_steps
from rfprm_tts.strategies.base import BaseStrategy, DraftedParams, SearchOutcome, best_outcome, register
from rfprm_tts.strategies.voting import tally, vote_outcome
from rfprm_tts.trajectory import Candidate


class ParticleFilteringParams(DraftedParams):
    max_steps: int = Field(40, ge=1, description="Step rounds before the rest is generated to the end.")
    temperature: float = Field(0.2, gt=0, description="Softmax temperature turning scores (0-1) into weights.")
    min_ess: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Raise (double) the temperature until the effective sample size is at least this share "
        "of the open particles; 0 never tempers.",
    )
    resampling: Literal["systematic", "multinomial"] = Field("systematic", description="How particles are drawn.")
    weight_by: Literal["last_step", "score"] = Field(
        "last_step", description="The last step's score, or the aggregated one."
    )
    answer: Literal["best", "vote"] = Field("best", description="The best finished particle, or their weighted vote.")
    seed: int | None = Field(None, description="Seed of the resampling draws; default: the generator's seed.")


class Uniform(Protocol):
    def random(self) -> float: ...


def systematic(weights: list[float], k: int, rng: Uniform) -> list[int]:
    """k indices drawn by weight with one uniform: positions (u + i) / k on the cumulative
    weights. Low variance: a particle with weight w is drawn floor(k w) or ceil(k w) times."""
    cumulative = list(accumulate(weights))
    u = rng.random()
    return [min(bisect_left(cumulative, (u + i) / k * cumulative[-1]), len(weights) - 1) for i in range(k)]


def multinomial(weights: list[float], k: int, rng: Uniform) -> list[int]:
    """k independent draws by weight (one uniform each), in draw order."""
    cumulative = list(accumulate(weights))
    return [min(bisect_left(cumulative, rng.random() * cumulative[-1]), len(weights) - 1) for _ in range(k)]


def effective_sample_size(weights: list[float]) -> float:
    return 1.0 / sum(w * w for w in weights)


def tempered_weights(scores: list[float], temperature: float, min_ess: float) -> tuple[list[float], float]:
    """softmax(scores / t) with t the first of temperature, 2 x temperature, ... whose
    weights keep an effective sample size of at least min_ess x len(scores)."""
    t = temperature
    while True:
        top = max(scores)
        exps = [math.exp((s - top) / t) for s in scores]
        weights = [e / sum(exps) for e in exps]
        if effective_sample_size(weights) >= min_ess * len(scores) or t > temperature * 2**20:
            return weights, t
        t *= 2


@register
class ParticleFiltering(BaseStrategy):
    name = "particle_filtering"
    Params = ParticleFilteringParams
    params: ParticleFilteringParams

    def weight_score(self, particle: Candidate) -> float:
        if self.params.weight_by == "last_step" and particle.step_scores and particle.step_scores[-1] is not None:
            return particle.step_scores[-1]
        return particle.score if particle.score is not None else 0.0

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        p = self.params
        rng = random.Random(p.seed if p.seed is not None else ctx.sampling.seed)
        draw = systematic if p.resampling == "systematic" else multinomial
        finished: list[Candidate] = []
        temperatures: list[float] = []
        drafting = DraftTally()
        scored = await next_steps(ctx, [""], p.n, p.max_steps > 1, p.draft_threshold, drafting)
        for depth in range(1, p.max_steps + 1):
            finished += [c for c in scored if c.state == "finished"]
            alive = [c for c in scored if c.state == "open"]
            if not alive:
                break
            weights, t = tempered_weights([self.weight_score(c) for c in alive], p.temperature, p.min_ess)
            temperatures.append(t)
            drawn = [alive[i] for i in draw(weights, len(alive), rng)]
            await ctx.keep(drawn)
            last_round = depth + 1 == p.max_steps  # the final round generates to the end
            prefixes = [c.trajectory.text for c in drawn]
            scored = await next_steps(ctx, prefixes, 1, not last_round, p.draft_threshold, drafting)
        drafted = drafting.details() if p.draft_threshold is not None else {}
        details = {"rounds": depth, "temperatures": temperatures, **drafted}
        if p.answer == "vote" and finished:
            return vote_outcome(tally(finished, weighted=True), finished, **details)
        return best_outcome(finished or alive, details)
