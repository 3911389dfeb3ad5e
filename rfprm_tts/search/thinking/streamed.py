"""Each sample's thinking as one streamed request, closed at the decision: the probes go out
beside the stream at the points where rounds would end, are judged in order, and the stream
closes at the first that stops the sample (the server aborts the request there);
finish_first closes the others' streams. For generators that stream (the openai backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rfprm_tts.errors import GenerationError
from rfprm_tts.generators.base import Completion, GenerationRequest, Piece, StreamingGenerator
from rfprm_tts.search.thinking.control import ThinkingControl
from rfprm_tts.search.thinking.sample import (
    Probe,
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


def streams(ctx: SearchContext, probing: bool) -> bool:
    """Whether to stream the samples, so one can be closed the moment it stops: where the
    generator can, as generator.stream_thinking says ('auto': unless `probing`)."""
    if not isinstance(ctx.generator, StreamingGenerator):
        return False
    mode = ctx.generator.stream_thinking
    return mode == "on" or (mode == "auto" and not probing)


@asynccontextmanager
async def open_stream(
    ctx: SearchContext, prefix: str, stop: list[str], max_tokens: int
) -> AsyncIterator[AsyncIterator[Piece]]:
    """One sample continuing `prefix` as it is generated, within `max_tokens` and what the
    solve's token budget has left; its tokens count in `ctx.usage` as they arrive, so
    `budget.left` is current between pieces. Leaving the block closes the stream."""
    assert isinstance(ctx.generator, StreamingGenerator), "only where streams(ctx, ...)"
    sampling = ctx.sampling.model_copy(update={"seed": ctx.next_seeds(1), "max_tokens": ctx.budget.cap(max_tokens)})
    request = GenerationRequest(ctx.messages, prefix=prefix, stop=stop, sampling=sampling)
    prompt_tokens = 0

    async def counted(pieces: AsyncIterator[Piece]) -> AsyncIterator[Piece]:
        nonlocal prompt_tokens
        async for piece in pieces:
            ctx.usage.generated_tokens += piece.tokens
            prompt_tokens = piece.prompt_tokens or prompt_tokens
            yield piece

    ctx.usage.generator_calls += 1
    try:
        async with ctx.generator.stream(request) as pieces:
            yield counted(pieces)
        ctx.budget.samples_back += 1
    finally:
        ctx.usage.prompt_tokens += prompt_tokens


async def stream_all(ctx: SearchContext, thoughts: list[Thought], control: ThinkingControl) -> None:
    """Every sample streams on its own, side by side; once finish_first samples have answers,
    the others' streams are closed."""
    tasks = {asyncio.create_task(stream_one(ctx, t, control)): t for t in thoughts}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failures = [task.exception() for task in done if not task.cancelled()]
            if raised := next((f for f in failures if f is not None), None):
                raise raised  # a misconfiguration raised in a sample stops the solve
            if control.finish_first is not None and answered(thoughts) >= control.finish_first:
                for task in pending:
                    tasks[task].error, tasks[task].exit = stopped_note(control), "stopped"
                break
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def stream_one(ctx: SearchContext, t: Thought, control: ThinkingControl) -> None:
    """One sample: its thinking streamed (again after each forced "Wait"), then its answer."""
    try:
        while not t.done and t.closing is None:
            if spent(ctx):
                t.error, t.exit = ctx.budget.cut_note(), "budget"
                return
            await think_streamed(ctx, t, control)
        if not t.done:
            await answer(ctx, [t])
        if not t.done:  # the token budget had nothing left for the answer
            t.error, t.exit = ctx.budget.cut_note(), "budget"
    except GenerationError as exc:
        t.error, t.exit = str(exc), "failed"


@dataclass
class Check:
    """A point in a streamed sample's thinking where a probe was sent: the new thinking up to
    there, its tokens, and the probe in flight."""

    text: str
    tokens: int
    probe: asyncio.Task[Probe]


async def think_streamed(ctx: SearchContext, t: Thought, control: ThinkingControl) -> None:
    """Stream t's thinking to its close or limit, sending a probe at every check point (every
    probe_every tokens; for the confidence and PRM exits also at each paragraph's end) while
    the stream goes on. Probes are judged in order, as the rounds would judge them: the stream
    closes at the first that stops the sample, and the sample ends at that probe's point."""
    got = Completion(text="", tokens=0)
    checks: list[Check] = []
    since, mark = 0, 0  # tokens since the last check point; where its text ended
    stopped: Check | None = None
    try:
        async with open_stream(ctx, t.text, stop=[THINK_CLOSE], max_tokens=thinking_limit(ctx, t, control)) as pieces:
            async for piece in pieces:
                got.text += piece.text
                got.tokens = (got.tokens or 0) + piece.tokens
                got.finish_reason = piece.finish_reason or got.finish_reason
                got.stop_reason = piece.stop_reason or got.stop_reason
                since += piece.tokens
                if control.early_exit != "none" and got.finish_reason is None:
                    point = check_point(got.text, mark, since, control, ctx.separator)
                    if point is not None:
                        task = asyncio.create_task(probe_one(ctx, t.text + got.text[:point], control))
                        checks.append(Check(got.text[:point], got.tokens or 0, task))
                        since, mark = 0, point
                if (stopped := await first_stop(t, checks, control, wait=False)) or spent(ctx):
                    break  # leaving the block closes the stream
        if stopped is None and not spent(ctx):
            stopped = await first_stop(t, checks, control, wait=True)
    finally:  # also when the sample is stopped from outside (finish_first)
        for check in checks:
            check.probe.cancel()
        await asyncio.gather(*(check.probe for check in checks), return_exceptions=True)
    if stopped is not None:
        t.text += stopped.text
        t.tokens += stopped.tokens
        t.thinking_tokens += stopped.tokens
        ctx.usage.overrun_tokens += (got.tokens or 0) - stopped.tokens
        stop_with(t, stopped.probe.result(), control)
    elif spent(ctx) and got.finish_reason is None:
        t.error, t.exit = ctx.budget.cut_note(), "budget"
    else:
        settle(ctx, t, got, control)


def check_point(text: str, mark: int, since: int, control: ThinkingControl, separator: str) -> int | None:
    """Where in the streamed `text` (new since `mark`) a probe goes, if one does now."""
    if control.early_exit in ("confidence", "prm") and separator in text[mark:]:
        return text.index(separator, mark) + len(separator)
    return len(text) if since >= control.probe_every else None


async def probe_one(ctx: SearchContext, text: str, control: ThinkingControl) -> Probe:
    """A probe of one streamed sample; its failure (a server that cannot continue an answer)
    fails the sample. With the budget spent, it answers nothing."""
    probes = await ask(ctx, [text], control)
    return probes[0] if probes else Probe(Completion(text="", error=ctx.budget.cut_note()), None)


async def first_stop(t: Thought, checks: list[Check], control: ThinkingControl, wait: bool) -> Check | None:
    """Judge the probes back so far (all of them, with `wait`), oldest first; the first that
    stops the sample, else None. Judged checks leave the list."""
    while checks and (wait or checks[0].probe.done()):
        check = checks.pop(0)
        if decide(t, await check.probe, control):
            return check
    return None
