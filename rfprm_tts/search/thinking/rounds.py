"""Growing the samples together, in rounds of one chunk (one request) each: the in-process
backends, and an OpenAI-compatible server with generator.stream_thinking "off" (or "auto"
while probes run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfprm_tts.search.thinking.control import ThinkingControl
from rfprm_tts.search.thinking.sample import (
    Thought,
    answer,
    answered,
    ask,
    decide,
    settle,
    spent,
    stop_with,
    stopped_note,
    thinking_limit,
)
from rfprm_tts.text import THINK_CLOSE

if TYPE_CHECKING:
    from rfprm_tts.search.context import SearchContext


async def grow_in_rounds(ctx: SearchContext, thoughts: list[Thought], control: ThinkingControl) -> None:
    """All samples grow together, one chunk (one request) each per round."""
    while live := [t for t in thoughts if not t.done]:
        if control.finish_first is not None and answered(thoughts) >= control.finish_first:
            for t in live:
                t.error, t.exit = stopped_note(control), "stopped"
            break
        if spent(ctx):
            for t in live:
                t.error, t.exit = ctx.budget.cut_note(), "budget"
            break
        await grow(ctx, [t for t in live if t.closing is None], control)
        thinking = [t for t in live if not t.done and t.closing is None]
        if control.early_exit != "none" and thinking:
            await probe(ctx, thinking, control)
        await answer(ctx, [t for t in live if not t.done and t.closing is not None])


async def grow(ctx: SearchContext, thoughts: list[Thought], control: ThinkingControl) -> None:
    """One chunk more of each sample's thinking, then s1's budget forcing."""
    if not thoughts:
        return
    paragraphs = control.early_exit in ("confidence", "prm")
    stop = [THINK_CLOSE, ctx.separator] if paragraphs else [THINK_CLOSE]
    limits = [min(control.probe_every, thinking_limit(ctx, t, control)) for t in thoughts]
    for t, c in zip(thoughts, await ctx.continue_each([t.text for t in thoughts], stop=stop, max_tokens=limits)):
        settle(ctx, t, c, control)


async def probe(ctx: SearchContext, thoughts: list[Thought], control: ThinkingControl) -> None:
    """Ask each sample for its answer now and stop those whose exit rule is met."""
    for t, p in zip(thoughts, await ask(ctx, [t.text for t in thoughts], control)):
        if decide(t, p, control):
            stop_with(t, p, control)
