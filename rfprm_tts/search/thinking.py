"""Sampling with the thinking under control: stop a long `<think>` early, or hold it to a budget.

The samples grow together, in rounds of at most `probe_every` thinking tokens (for the
confidence and PRM exits, to the end of the paragraph if that comes first):

    grow every thinking sample by one chunk, stopping at </think>
    closed before min_thinking_tokens?    the close becomes "Wait", thinking goes on    (s1)
    reached max_thinking_tokens?          close it with answer_prompt                   (s1)
    closed?                               write the answer after the close
    still thinking, early_exit set:       probe = greedy answer after answer_prompt
        "probe":      stop once the last probe_agree probes agree                       (Dynasor-CoT)
        "confidence": stop once the probe's mean token probability >= exit_threshold    (DEER)
        "prm":        stop once the PRM scores thinking + probe >= exit_threshold       (PRM-gated)
        a stopped sample's answer is its probe (those tokens are the answer's)
    finish_first = m: once m samples have answers, the others stop                     (short-m@k)

Probe tokens are generated tokens (they count against budgets) and are also counted apart,
in `usage.probe_tokens`. A backend must continue a partial answer (`GenerationRequest.prefix`):
the in-process backends do, and an OpenAI-compatible server through completions or a chat
continued with `continue_final_message` (vLLM).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion
from rfprm_tts.text import THINK_CLOSE, extract_answer

if TYPE_CHECKING:
    from rfprm_tts.search.context import SearchContext

FORCED_CONTINUATION = "Wait"  # s1's word: what replaces a close that comes too early


class ThinkingControl(BaseModel):
    """Early exit and budget forcing: the knobs of every sampling strategy (all off by default)."""

    model_config = ConfigDict(extra="forbid")
    early_exit: Literal["none", "probe", "confidence", "prm"] = Field(
        "none",
        description="Stop a sample's thinking early: 'probe' once probe_agree answer probes in a row agree; "
        "'confidence' once a probe's mean token probability reaches exit_threshold; 'prm' once the PRM scores "
        "the thinking with the probe's answer at exit_threshold or more; 'none': think to the end.",
    )
    probe_every: int = Field(64, ge=1, description="Thinking tokens between answer probes (and between checks).")
    probe_agree: int = Field(3, ge=1, description="early_exit 'probe': consecutive agreeing probes that stop.")
    probe_tokens: int = Field(16, ge=1, description="Most tokens one probe may generate (greedy).")
    exit_threshold: float = Field(
        0.9, gt=0, le=1, description="early_exit 'confidence' and 'prm': the score at which a sample stops."
    )
    answer_prompt: str = Field(
        "\n</think>\n\nThe answer is \\boxed{",
        description="What closes the thinking to ask for the answer (probes, max_thinking_tokens): write it "
        "as your model ends its own thinking. Must hold </think>.",
    )
    min_thinking_tokens: int = Field(
        0, ge=0, description="A sample that closes its thinking sooner gets 'Wait' instead and thinks on (s1)."
    )
    max_thinking_tokens: int | None = Field(
        None, ge=1, description="Close the thinking here with answer_prompt and take the answer (s1); None: no cap."
    )
    finish_first: int | None = Field(
        None, ge=1, description="Stop every other sample once this many have answers (short-m@k); None: all finish."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ThinkingControl:
        if THINK_CLOSE not in self.answer_prompt:
            raise ValueError(f"answer_prompt must hold {THINK_CLOSE} (it closes the thinking)")
        if self.max_thinking_tokens is not None and self.min_thinking_tokens > self.max_thinking_tokens:
            raise ValueError("min_thinking_tokens is above max_thinking_tokens")
        return self

    @property
    def controls_thinking(self) -> bool:
        """Whether sampling goes through the thinking loop (else: whole samples, as before)."""
        return (
            self.early_exit != "none"
            or self.min_thinking_tokens > 0
            or self.max_thinking_tokens is not None
            or self.finish_first is not None
        )

    @classmethod
    def idle_knobs(cls, params: Mapping[str, object]) -> set[str]:
        """The thinking knobs among a strategy's `params` when they are all off (to leave out of
        what a person reads); none when any is on."""
        knobs = {name: params[name] for name in cls.model_fields if name in params}
        if not knobs or cls.model_validate(knobs).controls_thinking:
            return set()
        return set(knobs)


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


async def sample_thinking(
    ctx: SearchContext, n: int, control: ThinkingControl, exits: Counter[str]
) -> list[Completion]:
    """n samples with their thinking controlled as `control` says; `exits` counts how each
    sample's thinking ended."""
    thoughts = [Thought() for _ in range(n)]
    while live := [t for t in thoughts if not t.done]:
        if (
            control.finish_first is not None
            and sum(t.done and t.error is None for t in thoughts) >= control.finish_first
        ):
            for t in live:
                t.error, t.exit = (
                    f"stopped: {control.finish_first} other samples answered first (finish_first)",
                    "stopped",
                )
            break
        if ctx.budget.left is not None and ctx.budget.left <= 0:
            ctx.usage.budget_exhausted = True
            for t in live:
                t.error, t.exit = ctx.budget.cut_note(), "budget"
            break
        await grow(ctx, [t for t in live if t.closing is None], control)
        thinking = [t for t in live if not t.done and t.closing is None]
        if control.early_exit != "none" and thinking:
            await probe(ctx, thinking, control)
        await answer(ctx, [t for t in live if not t.done and t.closing is not None])
    exits.update(t.exit or "failed" for t in thoughts)
    return [t.completion() for t in thoughts]


def room(ctx: SearchContext, t: Thought) -> int:
    """What the answer's token limit (generator.max_tokens) has left for this sample."""
    return ctx.sampling.max_tokens - t.tokens


async def grow(ctx: SearchContext, thoughts: list[Thought], control: ThinkingControl) -> None:
    """One chunk more of each sample's thinking, then s1's budget forcing."""
    if not thoughts:
        return
    paragraphs = control.early_exit in ("confidence", "prm")
    stop = [THINK_CLOSE, ctx.separator] if paragraphs else [THINK_CLOSE]
    cap = control.max_thinking_tokens
    limits = [min(control.probe_every, room(ctx, t), *([cap - t.thinking_tokens] if cap else [])) for t in thoughts]
    for t, c in zip(thoughts, await ctx.continue_each([t.text for t in thoughts], stop=stop, max_tokens=limits)):
        if c.error is not None:
            t.error, t.exit = c.error, "failed"
            continue
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


async def probe(ctx: SearchContext, thoughts: list[Thought], control: ThinkingControl) -> None:
    """Ask each sample for its answer now (greedy, after answer_prompt) and stop those whose
    exit rule is met; the probe then is the sample's answer."""
    prompt = control.answer_prompt
    probes = await ctx.continue_each([t.text + prompt for t in thoughts], max_tokens=control.probe_tokens, greedy=True)
    ctx.usage.probe_tokens += sum(p.tokens or 0 for p in probes)
    answers = [extract_answer(prompt + p.text) if p.error is None else None for p in probes]
    if control.early_exit == "probe":
        stop = [_agreed(t.probes, a, control.probe_agree) for t, a in zip(thoughts, answers)]
    elif control.early_exit == "confidence":
        stop = [a is not None and _confidence(p) >= control.exit_threshold for p, a in zip(probes, answers)]
    else:
        stop = await _prm_approves(ctx, [t.text + prompt + p.text for t, p in zip(thoughts, probes)], answers, control)
    for t, p, a, exit_now in zip(thoughts, probes, answers, stop):
        t.probes.append(a)
        if exit_now:
            t.text += prompt + p.text
            t.tokens += p.tokens or 0
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
