"""Drafted steps for the step searches (beam search, particle filtering): the next steps of a
round written by the draft model first (settings.draft), the PRM judging each, and the target
model (the generator) writing again only the steps the PRM scores under a threshold (RSD's rule,
strategies/speculative.py, applied to a whole round at once).

    k drafts of each prefix's next step; the PRM scores them
    a draft step under the threshold (or a draft that failed): the target writes that step
    the round's steps: the accepted drafts and the target's, all scored

`next_steps` is the one call the searches make for a round, drafted or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.granularity import grow_steps
from rfprm_tts.trajectory import Candidate


@dataclass
class DraftTally:
    """What drafting did over a search, for its details, in draft steps: accepted, rewritten
    by the target (the PRM scored them under the threshold, or could not score them), and
    failed (the draft gave no step, after its retries). The target wrote the last two again."""

    accepted: int = 0
    rewritten: int = 0
    draft_failures: int = 0

    def details(self) -> dict[str, float | int | None]:
        drafted = self.accepted + self.rewritten
        return {
            "draft_accepted": self.accepted,
            "draft_rewritten": self.rewritten,
            "draft_failures": self.draft_failures,
            "acceptance": self.accepted / drafted if drafted else None,
        }


def last_step_score(c: Candidate) -> float:
    """The PRM's score of a candidate's last step, what a draft threshold is held to (-inf:
    failed or unscored)."""
    last = c.step_scores[-1] if c.ok and c.step_scores else None
    return last if last is not None else float("-inf")


async def next_steps(
    ctx: SearchContext,
    prefixes: list[str],
    k: int,
    one_step: bool = True,
    draft_threshold: float | None = None,
    tally: DraftTally | None = None,
    distinct: Callable[[list[Candidate]], list[Candidate]] = list,
    steps: int = 1,
) -> list[Candidate]:
    """k scored continuations of each prefix (`distinct` drops repeats before the PRM sees
    them), each `steps` steps long (search.granularity: the PRM is asked every `steps` steps).
    With a `draft_threshold`, one step at a time, the draft writes them first (above); the rest
    of an answer (`one_step` off) the target writes."""
    if draft_threshold is None or not one_step:
        groups = await grow_steps(ctx, prefixes, k, steps, one_step)
        return await ctx.score_candidates(distinct([c for group in groups for c in group]))
    tally = tally if tally is not None else DraftTally()
    # a draft request that fails gives failed steps (after its retries), which the target writes again
    drafts = await ctx.extend(prefixes, k, one_step, by="draft", check=False)
    origin = {id(c): prefixes[i // k] for i, c in enumerate(drafts)}  # extend gives k children a prefix, in order
    failed = [c for c in drafts if c.error is not None]
    scored = await ctx.score_candidates(distinct([c for c in drafts if c.error is None]))
    accepted = [c for c in scored if last_step_score(c) >= draft_threshold]
    rejected = [c for c in scored if last_step_score(c) < draft_threshold]
    tally.accepted += len(accepted)
    tally.rewritten += len(rejected)
    tally.draft_failures += len(failed)
    if not rejected and not failed:
        return accepted
    again = [origin[id(c)] for c in rejected + failed]
    rewritten = await ctx.score_candidates(distinct(await ctx.extend(again, 1, one_step)))
    return distinct(accepted + rewritten)
