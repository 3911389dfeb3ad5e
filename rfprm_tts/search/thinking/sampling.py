"""A sampling strategy's samples with their thinking controlled: grown in rounds, or streamed
where the generator streams (see the package's docstring for the rules)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rfprm_tts.generators.base import Completion
from rfprm_tts.search.thinking.control import ThinkingControl
from rfprm_tts.search.thinking.rounds import grow_in_rounds
from rfprm_tts.search.thinking.sample import Thought
from rfprm_tts.search.thinking.streamed import stream_all, streams

if TYPE_CHECKING:
    from rfprm_tts.search.context import SearchContext


async def sample_thinking(
    ctx: SearchContext, n: int, control: ThinkingControl, exits: Counter[str]
) -> list[Completion]:
    """n samples with their thinking controlled as `control` says; `exits` counts how each
    sample's thinking ended."""
    thoughts = [Thought() for _ in range(n)]
    if streams(ctx, probing=control.early_exit != "none"):
        await stream_all(ctx, thoughts, control)
        if all(t.exit == "failed" for t in thoughts):  # as the rounds' requests raise
            ctx.check_failures([t.completion() for t in thoughts])
    else:
        await grow_in_rounds(ctx, thoughts, control)
    exits.update(t.exit or "failed" for t in thoughts)
    return [t.completion() for t in thoughts]
