"""The generator-confidence verifier (prm.format 'confidence'): read-outs by hand on known
log-probabilities and a solve on a scripted generator (the real vLLM server's log-probs: integration/test_vllm_server.py)."""

from __future__ import annotations

import math

import pytest

from rfprm_tts import ConfigError, ReasoningSolver, Settings
from rfprm_tts.generators import Completion, GenerationResult
from rfprm_tts.prm.verifiers.confidence import ConfidenceScorer, confidence

LOGPROBS = [-0.1, -2.0, -0.1, -0.1]


def test_read_outs_by_hand():
    assert confidence(LOGPROBS, "mean") == pytest.approx(math.exp(-2.3 / 4))
    assert confidence(LOGPROBS, "min") == pytest.approx(math.exp(-2.0))
    # windows of 2: (-0.1, -2.0), (-2.0, -0.1), (-0.1, -0.1): the lowest mean is -1.05
    assert confidence(LOGPROBS, "lowest_group", window=2) == pytest.approx(math.exp(-1.05))
    assert confidence(LOGPROBS, "tail", window=2) == pytest.approx(math.exp(-0.1))
    # a window longer than the answer is the whole answer
    assert confidence(LOGPROBS, "lowest_group", window=99) == confidence(LOGPROBS, "mean")
    assert confidence(LOGPROBS, "tail", window=99) == confidence(LOGPROBS, "mean")
    with pytest.raises(ConfigError, match="prm.confidence 'median'"):
        ConfidenceScorer("median")


class LogprobGenerator:
    """Answers with fixed texts and per-token log-probabilities; records each request."""

    def __init__(self, answers: list[tuple[str, list[float] | None]]):
        self.answers, self.requests = answers, []

    async def generate(self, request):
        self.requests.append(request)
        result = GenerationResult(prompt_tokens=1, calls=1)
        for i in range(request.n):
            text, logprobs = self.answers[i % len(self.answers)]
            result.completions.append(
                Completion(
                    text=text,
                    finish_reason="stop",
                    tokens=len(logprobs or [0]),
                    logprobs=logprobs if request.sampling.logprobs else None,
                )
            )
            result.generated_tokens += len(logprobs or [0])
        return result

    async def aclose(self):
        pass


def test_best_of_n_picks_the_most_confident_answer_and_asks_for_logprobs():
    answers = [
        ("1 + 2 = 4\n\n\\boxed{4}", [-1.5, -0.2, -1.0]),
        ("1 + 2 = 3\n\n\\boxed{3}", [-0.1, -0.2, -0.3]),
        ("hmm", None),
    ]
    gen = LogprobGenerator(answers)
    settings = Settings.load(prm=dict(format="confidence", confidence="mean"))  # logprobs off: the solve turns them on
    with ReasoningSolver(settings, generator=gen) as solver:
        result = solver.solve("Compute 1 + 2.", n=3)
    assert all(r.sampling.logprobs for r in gen.requests)
    assert result.answer == "3" and result.best.score == pytest.approx(math.exp(-0.2))
    assert result.usage.prm_tokens == 0 and result.usage.prm_calls == 1
    unscored = next(c for c in result.candidates if c.trajectory.text == "hmm")
    assert unscored.score is None and "log-probabilities" in unscored.error
    weighted = ReasoningSolver(settings, generator=LogprobGenerator(answers)).solve(
        "Compute 1 + 2.", n=3, strategy="weighted_best_of_n"
    )
    assert weighted.answer == "3"


def test_text_alone_cannot_be_scored_by_confidence():
    with pytest.raises(ConfigError, match="log-probabilities.*not text"):
        ConfidenceScorer().score_batch("q", [["a step"]])


def test_prm_score_times_confidence():
    """prm.confidence_weight 1: the PRM's score times the answer's confidence. The digit
    scorer prefers "9 ..." (0.9 vs 0.5), confidence prefers the other (e^-0.1 vs e^-3):
    0.9 e^-3 = 0.045 < 0.5 e^-0.1 = 0.452."""
    from helpers.fakes import DigitScorer

    answers = [("9 is it\n\n\\boxed{9}", [-3.0, -3.0]), ("5 is it\n\n\\boxed{5}", [-0.1, -0.1])]
    for weight, want in ((0.0, "9"), (1.0, "5")):
        gen = LogprobGenerator(answers)
        settings = Settings.load(prm=dict(aggregation="min", confidence="mean", confidence_weight=weight))
        result = ReasoningSolver(settings, generator=gen, scorer=DigitScorer()).solve("q", n=2)
        assert result.answer == want and all(r.sampling.logprobs == (weight > 0) for r in gen.requests)
    assert result.best.score == pytest.approx(0.5 * math.exp(-0.1))
