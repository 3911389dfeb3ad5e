"""One thinking sample as it grows (`Thought`) and the rules both ways of growing it share:
where a piece of thinking leaves a sample (`settle`: closed, "Wait", forced, out of room), what a
probe answers and whether it stops the sample (`ask`, `decide`, `stop_with`), and the answer
after a closed thinking."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion
from rfprm_tts.search.thinking.control import FORCED_CONTINUATION, ThinkingControl
from rfprm_tts.text import THINK_CLOSE, extract_answer

if TYPE_CHECKING:
    from rfprm_tts.search.context import SearchContext


@dataclass
class Thought:
    """One sample as it grows: its text, tokens (thinking apart), probe answers so far, and how
    it ended (`exit`: closed, forced, probe, confidence, prm, stopped, length, failed)."""

    text: str = ""
    tokens: int = 0
    thinking_tokens: int = 0
    probes: list[str | None] = field(default_factory=list)
    closing: str | None = None  # the text that closed the thinking; the answer comes next
    exit: str | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.error is not None

    def completion(self) -> Completion:
        return Completion(text=self.text, finish_reason=self.finish_reason, tokens=self.tokens, error=self.error)


def answered(thoughts: list[Thought]) -> int:
    return sum(t.done and t.error is None for t in thoughts)


def stopped_note(control: ThinkingControl) -> str:
    return f"stopped: {control.finish_first} other samples answered first (finish_first)"


def spent(ctx: SearchContext) -> bool:
    """Whether the solve's token budget is spent (and `usage` says so)."""
    if ctx.budget.left is not None and ctx.budget.left <= 0:
        ctx.usage.budget_exhausted = True
        return True
    return False


def room(ctx: SearchContext, t: Thought) -> int:
    """What the answer's token limit (generator.max_tokens) has left for this sample."""
    return ctx.sampling.max_tokens - t.tokens


def thinking_limit(ctx: SearchContext, t: Thought, control: ThinkingControl) -> int:
    """The most tokens the thinking may grow by now: the answer's room, and max_thinking_tokens."""
    cap = control.max_thinking_tokens
    return min([room(ctx, t), *([cap - t.thinking_tokens] if cap else [])])


def settle(ctx: SearchContext, t: Thought, c: Completion, control: ThinkingControl) -> None:
    """Add a piece of thinking to its sample and say where that leaves it: ended, closed (the
    answer comes next), "Wait" put in for a close that came too early (s1), forced closed at
    max_thinking_tokens (s1), out of room, or still thinking."""
    if c.error is not None:
        t.error, t.exit = c.error, "failed"
        return
    t.text += c.text
    # The end of the sample (EOS) holds its answer; a stop without a stop string and without
    # an answer is a close whose name the backend did not give (a hosted API).
    ended = c.finish_reason == "stop" and not c.stop_reason and extract_answer(t.text) is not None
    closed = c.stop_reason == THINK_CLOSE or (c.finish_reason == "stop" and not c.stop_reason and not ended)
    if THINK_CLOSE in t.text:  # the backend kept the close, or it came split over two chunks
        t.text, closed, ended = t.text.split(THINK_CLOSE, 1)[0], True, False
    t.tokens += c.tokens or 0
    t.thinking_tokens += c.tokens or 0
    if ended:
        t.finish_reason, t.exit = "stop", "ended"  # answered without closing a thinking section
    elif c.stop_reason == ctx.separator:
        t.text += ctx.separator  # a paragraph ended: put the separator back, a probe comes next
    elif closed and t.thinking_tokens < control.min_thinking_tokens and c.tokens:
        t.text += FORCED_CONTINUATION
    elif closed:
        t.closing, t.exit = THINK_CLOSE, "closed"
    elif room(ctx, t) <= 0 or not c.tokens:  # the answer's token limit, inside the thinking; or nothing came
        t.finish_reason, t.exit = c.finish_reason or "length", "length"
    if t.closing is None and not t.done and _at_cap(t, control):
        t.closing, t.exit = control.answer_prompt, "forced"


def _at_cap(t: Thought, control: ThinkingControl) -> bool:
    return control.max_thinking_tokens is not None and t.thinking_tokens >= control.max_thinking_tokens


@dataclass
class Probe:
    """What a sample would answer now: the greedy continuation after answer_prompt, its
    answer, and whether the confidence or PRM exit rule passes on it."""

    completion: Completion
    answer: str | None
    passes: bool = False


async def ask(ctx: SearchContext, texts: list[str], control: ThinkingControl) -> list[Probe]:
    """Probe each thinking text (one request each, concurrently; the PRM exit in one call)."""
    prompt = control.answer_prompt
    probes = await ctx.continue_each([x + prompt for x in texts], max_tokens=control.probe_tokens, greedy=True)
    ctx.usage.probe_tokens += sum(p.tokens or 0 for p in probes)
    answers = [extract_answer(prompt + p.text) if p.error is None else None for p in probes]
    if control.early_exit == "confidence":
        passes = [a is not None and _confidence(p) >= control.exit_threshold for p, a in zip(probes, answers)]
    elif control.early_exit == "prm":
        passes = await _prm_approves(ctx, [x + prompt + p.text for x, p in zip(texts, probes)], answers, control)
    else:
        passes = [False] * len(probes)  # "probe": agreement, judged in order (decide)
    return [Probe(p, a, ok) for p, a, ok in zip(probes, answers, passes)]


def decide(t: Thought, p: Probe, control: ThinkingControl) -> bool:
    """Record a sample's probe (in order) and say whether its exit rule stops the sample."""
    agreed = control.early_exit == "probe" and _agreed(t.probes, p.answer, control.probe_agree)
    t.probes.append(p.answer)
    return p.passes or agreed


def stop_with(t: Thought, p: Probe, control: ThinkingControl) -> None:
    """End a sample with its probe as the answer (those tokens are the answer's)."""
    t.text += control.answer_prompt + p.completion.text
    t.tokens += p.completion.tokens or 0
    t.finish_reason, t.exit = "stop", control.early_exit


def _agreed(earlier: list[str | None], answer: str | None, k: int) -> bool:
    """Dynasor-CoT's rule: this probe and the k - 1 before it give the same answer."""
    last = [*earlier[len(earlier) - (k - 1) :], answer] if k > 1 else [answer]
    return answer is not None and len(last) == k and len(set(last)) == 1


def _confidence(p: Completion) -> float:
    """The probe's mean token probability (geometric): DEER's trial-answer confidence."""
    if p.logprobs is None:
        raise ConfigError(
            "early_exit 'confidence' reads token log-probabilities, which this generator did not return; "
            "use early_exit 'probe' or 'prm', or a backend that returns them (vLLM, transformers, OpenAI-compatible)"
        )
    return math.exp(sum(p.logprobs) / len(p.logprobs)) if p.logprobs else 0.0


async def _prm_approves(
    ctx: SearchContext, texts: list[str], answers: list[str | None], control: ThinkingControl
) -> list[bool]:
    """The PRM scores each sample as if it ended with its probe: stop where that reaches the threshold."""
    asked = [i for i, a in enumerate(answers) if a is not None]
    verdicts = [False] * len(texts)
    if asked:
        trajectories = [ctx.trajectory(texts[i]) for i in asked]
        batch = await ctx.score(trajectories)
        for i, trajectory, scores in zip(asked, trajectories, batch.step_scores):
            score = ctx.aggregate(trajectory, scores)
            verdicts[i] = score is not None and score >= control.exit_threshold
    return verdicts


async def answer(ctx: SearchContext, thoughts: list[Thought]) -> None:
    """The answer after each closed thinking, to the end (or the answer's token limit)."""
    for t in thoughts:
        if room(ctx, t) <= 0:  # closed with the answer's token limit spent: no room for an answer
            t.text += t.closing or ""
            t.finish_reason = "length"
    thoughts = [t for t in thoughts if not t.done]
    if not thoughts:
        return
    prefixes = [t.text + (t.closing or "") for t in thoughts]
    limits = [room(ctx, t) for t in thoughts]
    for t, c in zip(thoughts, await ctx.continue_each(prefixes, max_tokens=limits)):
        if c.error is not None:
            t.error, t.exit = c.error, "failed"
            continue
        t.text += (t.closing or "") + c.text
        t.tokens += c.tokens or 0
        t.finish_reason = c.finish_reason
