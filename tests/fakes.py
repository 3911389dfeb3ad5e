"""Deterministic in-process backends: functions of their input, so results can be worked out
by hand. They follow the same protocols as the real backends."""

from __future__ import annotations

from rfprm_tts.generators import Completion, GenerationRequest, GenerationResult
from rfprm_tts.prm import ScoredBatch


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


class DigitScorer:
    """A step scores (its first digit) / 10, or 0.05 without one; tokens = characters."""

    def __init__(self):
        self.calls = 0

    def score_batch(self, question, trajectories) -> ScoredBatch:
        self.calls += 1
        scores = [[next((int(ch) / 10 for ch in step if ch.isdigit()), 0.05) for step in steps] for steps in trajectories]
        return ScoredBatch(scores, tokens=sum(len(s) for steps in trajectories for s in steps))

    def score(self, question, trajectories):
        return self.score_batch(question, trajectories).step_scores
