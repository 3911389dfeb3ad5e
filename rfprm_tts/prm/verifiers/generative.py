"""Generative verifiers (LLM-as-judge, ThinkPRM, GenPRM): a chat model behind any
OpenAI-compatible endpoint reads the question and the numbered steps, writes a critique, and
gives a verdict per step; the verdicts are the step scores.

    prm.format = "generative", prm.base_url = the endpoint, prm.model = the judge's model name

The judge is asked to end with one line per step, "Step k: correct" or "Step k: incorrect";
ThinkPRM-style "\\boxed{correct}" / "\\boxed{incorrect}" verdicts, one per step in order, are
read too. A step's score is 1 for correct and 0 for incorrect, or, where the endpoint returns
log-probabilities, the probability the judge gave its verdict word (p for "correct", 1 - p
for "incorrect"). Steps after the last verdict it gave stay unscored (None); an answer whose
critique names no verdict at all is an error for that answer alone. The judge's prompt and
completion tokens count as verifier tokens in `usage.prm_tokens`. Answers are judged
concurrently (up to prm.judge_concurrency requests), each with the shared retry policy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from rfprm_tts.errors import ConfigError
from rfprm_tts.prm.protocol import ScoredBatch, ScorerDefaults, Steps
from rfprm_tts.prm.registry import register_verifier

JUDGE_PROMPT = (
    "Check a solution step by step.\n\nProblem:\n{question}\n\nSolution:\n{steps}\n\n"
    "Think about each step, then end with exactly one line per step, in order:\n"
    "Step 1: correct (or incorrect)\n...\nStep {count}: correct (or incorrect)"
)
STEP_LINE = re.compile(r"^\W*step\s*(\d+)\s*[:.\-)]\s*\**\s*(correct|incorrect)\b", re.I | re.M)
BOXED = re.compile(r"\\boxed\{\s*(correct|incorrect)\s*\}", re.I)


def judge_prompt(question: str, steps: Steps) -> str:
    numbered = "\n".join(f"Step {k}: {step}" for k, step in enumerate(steps, 1))
    return JUDGE_PROMPT.format(question=question, steps=numbered, count=len(steps))


def verdicts(critique: str, count: int) -> list[bool | None]:
    """Per step: True (correct), False (incorrect) or None (no verdict): "Step k: ..." lines
    (the last line for a step wins), else the boxed verdicts in order."""
    found: dict[int, bool] = {}
    for number, word in STEP_LINE.findall(critique):
        if 1 <= int(number) <= count:
            found[int(number) - 1] = word.lower() == "correct"
    if not found:
        found = {k: word.lower() == "correct" for k, word in enumerate(BOXED.findall(critique)[:count])}
    return [found.get(k) for k in range(count)]


def verdict_probabilities(tokens: Sequence[tuple[str, float]] | None, said: list[bool | None]) -> list[float | None]:
    """For each verdict given, the probability of the verdict word the judge wrote, read from
    the log-probabilities of the critique's last "correct"/"incorrect" tokens (one per verdict
    given, in order). None where the tokens do not match the verdicts (a word split into
    pieces, a verdict word missing): that step falls back to its verdict."""
    given = [v for v in said if v is not None]
    words = [
        (text.strip().lower(), math.exp(lp))
        for text, lp in tokens or []
        if text.strip().lower() in ("correct", "incorrect")
    ]
    if not given or len(words) < len(given):
        return [None] * len(said)
    last = iter(words[len(words) - len(given) :])
    probabilities: list[float | None] = []
    for verdict in said:
        if verdict is None:
            probabilities.append(None)
            continue
        word, p = next(last)
        probabilities.append(p if word == ("correct" if verdict else "incorrect") else None)
    return probabilities


class GenerativeVerifier(ScorerDefaults):
    """A judge model over the OpenAI chat API as a Scorer (one request per answer)."""

    num_parameters = None  # a remote model: verifier FLOPs unknown

    def __init__(self, settings):
        if not settings.base_url:
            raise ConfigError(
                "prm.format 'generative' needs prm.base_url: the judge model's OpenAI-compatible endpoint"
            )
        import openai

        key = settings.api_key.get_secret_value() if settings.api_key else "EMPTY"
        self.settings = settings
        self.model = settings.served_model_name or settings.model
        self.client = openai.OpenAI(base_url=settings.base_url, api_key=key, timeout=settings.timeout_s, max_retries=0)
        self.pool = ThreadPoolExecutor(max_workers=settings.judge_concurrency, thread_name_prefix="rfprm-judge")

    def _judge(self, question: str, steps: Steps) -> tuple[list[float | None], int, str | None]:
        from rfprm_tts.runtime.http_retry import describe_failure, retrying

        s = self.settings
        attempts = 0
        try:
            for attempt in retrying(s.max_retries, s.backoff_s, s.backoff_max_s, asynchronous=False):
                with attempt:
                    attempts += 1
                    response = self.client.chat.completions.create(
                        model=self.model,
                        messages=[{"role": "user", "content": judge_prompt(question, steps)}],
                        temperature=0.0,
                        max_completion_tokens=s.judge_max_tokens,
                        logprobs=True,
                    )
        except Exception as exc:
            return [None] * len(steps), 0, describe_failure(exc, s.base_url, attempts, "prm")
        choice = response.choices[0]
        tokens = response.usage.total_tokens if response.usage else 0
        said = verdicts(choice.message.content or "", len(steps))
        if all(v is None for v in said):
            return [None] * len(steps), tokens, "the judge gave no verdict for any step"
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        probs = verdict_probabilities([(t.token, t.logprob) for t in content] if content else None, said)
        scores = [
            None if v is None else (1.0 if v else 0.0) if p is None else (p if v else 1.0 - p)
            for v, p in zip(said, probs)
        ]
        return scores, tokens, None

    def score_batch(self, question: str, trajectories: Sequence[Steps]) -> ScoredBatch:
        batch = ScoredBatch()
        judged = list(
            self.pool.map(lambda steps: self._judge(question, list(steps)) if steps else ([], 0, None), trajectories)
        )
        for scores, tokens, error in judged:
            batch.step_scores.append(scores)
            batch.tokens += tokens
            batch.notes.append(None)
            batch.errors.append(error)
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.client.close()

    def describe(self) -> dict:
        return {"format": "generative", "readout": "verdicts", "runner": "openai", "judge": self.model}


register_verifier("generative", GenerativeVerifier)
