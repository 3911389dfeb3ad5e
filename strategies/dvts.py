"""Diverse verifier tree search (DVTS; Beeching et al. 2024).

    split the budget N into N / M independent subtrees
    each subtree keeps one path: at every step sample M next steps, score them with the
    PRM (one call for all subtrees), follow the best one
    a subtree ends when its chosen step finishes the answer, or can no longer beat the
    best finished path (min, prod)

Subtrees never compete with each other, so one strong early step cannot collapse the
search onto a single path (beam search's failure at large N). With verify_every = g, each of
the M samples grows g steps before the PRM scores it (rfprm_tts.search.granularity).
"""

from __future__ import annotations

from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.granularity import grow_steps
from rfprm_tts.strategies.base import BaseStrategy, SearchOutcome, best_outcome, rank, register
from rfprm_tts.strategies.beam_search import TreeParams
from rfprm_tts.trajectory import Candidate


@register
class DVTS(BaseStrategy):
    name = "dvts"
    Params = TreeParams
    params: TreeParams

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        m = self.params.beam_width
        subtrees = self.params.n // m
        paths: list[str] = [""] * subtrees  # the current prefix of every open subtree
        finished: list[Candidate] = []
        for depth in range(1, self.params.max_steps + 1):
            last_round = depth == self.params.max_steps
            # one group of M children a subtree (a path that finished while it grew: alone); a
            # token budget may cut the round to its first subtrees
            groups = await grow_steps(ctx, paths, m, self.params.verify_every, one_step=not last_round)
            scored = iter(await ctx.score_candidates([c for group in groups for c in group]))
            chosen = [rank([next(scored) for _ in group])[0] for group in groups if group]
            await ctx.keep(chosen)
            finished += [c for c in chosen if c.state != "open"]
            paths = [c.trajectory.text for c in chosen if c.state == "open" and ctx.may_still_win(c, finished)]
            if not paths:
                break
        return best_outcome(finished, {"subtrees": subtrees, "rounds": depth})
