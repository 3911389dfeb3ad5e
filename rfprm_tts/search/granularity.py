"""Verification granularity (VG-Search, Chen et al. 2025, arXiv 2505.11730): a step search that
asks the PRM every g steps instead of after every step. As in the paper's search, a kept path
first grows g - 1 steps by one sample, and then branches into its k next steps, which the PRM
scores (k paths sharing the g - 1 steps); from the question the k branches come first and each
grows g - 1 more steps, so the first round's paths differ from their first step. g = 1 is
step-level beam search; a g past the answer's length scores the first round's finished answers
only, as Best-of-N does.

    from the question: k first steps, each grown g - 1 more steps (one sample a step)
    from a kept path:  the path grown g - 1 steps (one sample a step), then k next steps
    the PRM scores the round once

A path that finishes while it grows comes back once, as it is; a sample that fails, or a token
budget that ends, leaves the path as far as it got.

`verify_after` is an adaptive rule of rfprm's own (not the paper's): when the kept paths' scores
lie within a margin of each other the PRM could not tell them apart, so the next round grows
one step; otherwise g.
"""

from __future__ import annotations

from rfprm_tts.search.context import SearchContext
from rfprm_tts.trajectory import Candidate


async def grow_steps(
    ctx: SearchContext, prefixes: list[str], k: int, steps: int, one_step: bool
) -> list[list[Candidate]]:
    """k continuations of each prefix, `steps` steps on (above), unscored, in one group per
    prefix (k children; a path that finished while it grew alone; none where the token budget
    ended first); `one_step` off: each runs to the end."""
    if not one_step or steps == 1 or not any(prefixes):
        children = await ctx.extend(prefixes, k, one_step)
        if one_step and steps > 1:  # the first round: branch, then grow every branch
            children = await grow_each(ctx, children, steps - 1)
        return [children[i : i + k] for i in range(0, len(children), k)]
    paths = await grow_each(ctx, [kept(ctx, p) for p in prefixes], steps - 1)
    branching = [path.trajectory.text for path in paths if path.state == "open"]
    branches = iter(await ctx.extend(branching, k) if branching else [])  # k a path, in order
    return [[c for _, c in zip(range(k), branches)] if path.state == "open" else [path] for path in paths]


def kept(ctx: SearchContext, prefix: str) -> Candidate:
    """The candidate a search kept whose text is `prefix` (every kept path was handed out by ctx)."""
    path = ctx.partial(prefix)
    assert path is not None, "a kept path is a partial answer the search context handed out"
    return path


async def grow_each(ctx: SearchContext, paths: list[Candidate], steps: int) -> list[Candidate]:
    """Each open path grown `steps` steps, one sample a step (a failed sample or a spent budget
    leaves it as far as it got)."""
    for _ in range(steps):
        growing = [i for i, c in enumerate(paths) if c.state == "open"]
        if not growing:
            break
        grown = await ctx.extend([paths[i].trajectory.text for i in growing], 1, check=False)
        for i, child in zip(growing, grown):
            if child.error is None:
                paths[i] = child
    return paths


def verify_after(kept: list[Candidate], every: int, margin: float | None) -> int:
    """Steps the next round grows: 1 when the kept paths' scores lie within `margin` of each
    other (None: never; one kept path has no rival), else `every`."""
    scores = [c.score for c in kept if c.score is not None]
    if margin is not None and len(scores) > 1 and max(scores) - min(scores) <= margin:
        return 1
    return every
