"""Deterministic in-process backends: functions of their input, so results can be worked out
by hand. They follow the same protocols as the real backends."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rfprm_tts.generators import Completion, GenerationRequest, GenerationResult
from rfprm_tts.generators.base import Piece
from rfprm_tts.prm import ScoredBatch, ScorerDefaults


class ListGenerator:
    """Returns the given texts in order (cycling), each costing len(text) tokens."""

    def __init__(self, texts: list[str], fail: set[int] = frozenset()):
        self.texts, self.fail, self.requests = texts, fail, []

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        result = GenerationResult(prompt_tokens=len(request.question), calls=1)
        for i in range(request.n):
            if i in self.fail:
                result.completions.append(Completion(text="", error="injected failure"))
                continue
            text = self.texts[i % len(self.texts)]
            result.completions.append(Completion(text=text, finish_reason="stop", tokens=len(text)))
            result.generated_tokens += len(text)
        return result

    async def aclose(self) -> None:
        pass


class DigitScorer(ScorerDefaults):
    """A step scores (its first digit) / 10, or 0.05 without one; tokens = characters."""

    def __init__(self):
        self.calls = 0

    def score_batch(self, question, trajectories) -> ScoredBatch:
        self.calls += 1
        scores = [
            [next((int(ch) / 10 for ch in step if ch in "0123456789"), 0.05) for step in steps]
            for steps in trajectories
        ]
        return ScoredBatch(scores, tokens=sum(len(s) for steps in trajectories for s in steps))


class StepTreeGenerator:
    """A deterministic tree of trajectories: `depth` steps, then the answer.

    Continuation i of a prefix with j steps is the step str((i + 2 * j) % 9 + 1); after
    `depth` steps the answer is \\boxed{sum of the step digits}. A step costs 1 token, the
    answer 2. With the step separator as a stop string it returns one step at a time
    (reporting the stop string, as vLLM does), otherwise the whole rest.
    """

    def __init__(self, depth: int = 3, separator: str = "\n\n"):
        self.depth, self.separator, self.requests = depth, separator, []

    def _rest(self, prefix: str, i: int, one_step: bool) -> tuple[str, str | None, int]:
        steps = [s for s in prefix.split(self.separator) if s]
        out, tokens = [], 0
        while True:
            j = len(steps)
            if j == self.depth:
                out.append(f"\\boxed{{{sum(int(s) for s in steps)}}}")
                return self.separator.join(out), None, tokens + 2
            steps.append(str((i + 2 * j) % 9 + 1))
            out.append(steps[-1])
            tokens += 1
            if one_step:
                return out[0], self.separator, tokens

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        one_step = bool(request.stop) and self.separator in request.stop
        result = GenerationResult(prompt_tokens=1 + len(request.prefix), calls=1)
        for i in range(request.n):
            text, stop_reason, tokens = self._rest(request.prefix, i, one_step)
            result.completions.append(
                Completion(text=text, finish_reason="stop", tokens=tokens, stop_reason=stop_reason)
            )
            result.generated_tokens += tokens
        return result

    async def aclose(self) -> None:
        pass


class ThinkingTraceGenerator:
    """Scripted long-reasoning samples, one character per token, so the token at which a method
    stops can be worked out by hand.

    The i-th sample asked for without a prefix (over all requests) writes traces[i]. A prefix that is the start of a
    trace goes on with that trace. Any other prefix is a trace's first j characters followed
    by text the trace does not have (a probe, a forced "Wait" or close): `rest(i, j, added)`
    gives what follows, and `probability(i, j)` each of its tokens' probability. Either way the
    text stops at the request's max_tokens or at its first stop string, which is left out of
    the text, counted as generated and named in stop_reason (as vLLM does)."""

    def __init__(self, traces: list[str], rest=None, probability=None, logprobs: bool = True, stream: str = "off"):
        self.traces, self.rest, self.requests, self.started = traces, rest, [], 0
        self.stream_thinking = stream  # generator.stream_thinking: "on" streams, one character per piece
        self.streamed: list[tuple[int, int]] = []  # per stream: (pieces sent before it closed, pieces it had)
        self.probability = probability or (lambda i, j: 0.5)
        self.logprobs = logprobs  # False: a backend that returns none, even when asked

    def _continue(self, prefix: str) -> tuple[str, float]:
        if not prefix:
            self.started += 1
            return self.traces[(self.started - 1) % len(self.traces)], 0.5
        for trace in self.traces:
            if trace.startswith(prefix):
                return trace[len(prefix) :], 0.5
        i, j = max(
            (
                (i, next((m for m in range(min(len(t), len(prefix))) if t[m] != prefix[m]), len(t)))
                for i, t in enumerate(self.traces)
            ),
            key=lambda found: found[1],
        )
        return self.rest(i, j, prefix[j:]), self.probability(i, j)

    def _complete(self, request: GenerationRequest) -> Completion:
        sampling = request.sampling
        text, p = self._continue(request.prefix)
        finish, stop_reason, tokens = "stop", None, None
        limit = sampling.max_tokens if sampling is not None else len(text)
        hits = [(text.find(s), s) for s in request.stop or [] if s in text and text.find(s) + len(s) <= limit]
        if hits:
            at, stop_reason = min(hits)
            text, tokens = text[:at], at + len(stop_reason)
        elif len(text) > limit:
            text, finish = text[:limit], "length"
        tokens = len(text) if tokens is None else tokens
        return Completion(
            text=text,
            finish_reason=finish,
            tokens=tokens,
            stop_reason=stop_reason,
            logprobs=[math.log(p)] * tokens if self.logprobs and sampling is not None and sampling.logprobs else None,
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        result = GenerationResult(prompt_tokens=1 + len(request.prefix), calls=1)
        for _ in range(request.n):
            completion = self._complete(request)
            result.completions.append(completion)
            result.generated_tokens += completion.tokens or 0
        return result

    @asynccontextmanager
    async def stream(self, request: GenerationRequest) -> AsyncIterator[AsyncIterator[Piece]]:
        """The sample `generate` would return, one character (token) at a time, generated as
        it is read (like a server that stops when the client closes); a stop string's tokens
        come with the last piece."""
        self.requests.append(request)
        c = self._complete(request)
        extra = (c.tokens or 0) - len(c.text)
        pieces = [Piece(ch) for ch in c.text] + ([Piece("", extra)] if extra else [])
        if not pieces:
            pieces = [Piece("", 0)]
        pieces[-1].finish_reason, pieces[-1].stop_reason = c.finish_reason, c.stop_reason
        sent = 0

        async def pace() -> AsyncIterator[Piece]:
            nonlocal sent
            for piece in pieces:
                await asyncio.sleep(0)  # let probes in flight run, as the network would
                sent += 1
                yield piece

        try:
            yield pace()
        finally:
            self.streamed.append((sent, len(pieces)))

    async def aclose(self) -> None:
        pass
