"""The reward core: beta x PRM + (1 - beta) x outcome for a batch of completions.

prm      the response's PRM score under `aggregation`; `reasonflux` (mean of the steps +
         alpha x the final one, as the paper defines the trajectory reward) is divided by
         1 + alpha so that it lies in [0, 1] like the outcome
outcome  1 if the final answer equals the gold answer (the project's grader), else 0;
         unknown without a gold answer
reward   beta x prm + (1 - beta) x outcome (beta 0.75, as in the official ReasonFlux RL
         code); the PRM alone without a gold answer; the outcome alone when the PRM could
         not score the response (longer than its context: flagged); None when neither is
         known (TRL then leaves the completion out)

A call's outcome comparisons share one time limit (`budget_s`, OUTCOME_BUDGET_S): an answer
that only math-verify can compare with the gold one (a policy can learn to write
`\\boxed{9^{9^{9^{k}}}}`) takes up to its 5 s time limit, so a group of such answers would
otherwise take minutes. Past the limit answers are compared by spelling and value only; an
outcome left undecided counts as wrong and is flagged (`Reward.unchecked`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rfprm_tts.grading.equivalence import cheap, compare
from rfprm_tts.offline.responses import ResponseScore, score_responses
from rfprm_tts.prm.protocol import Scorer
from rfprm_tts.settings import Settings
from rfprm_tts.text import extract_answer

log = logging.getLogger(__name__)
OUTCOME_BUDGET_S = 10.0  # all of one call's math-verify comparisons (a GRPO group's)
COMPARISON_TIMEOUT_S = 5.0  # one comparison's


@dataclass
class Reward:
    reward: float | None
    prm: float | None
    outcome: float | None
    prm_tokens: int
    fallback: str | None = None  # why the reward is not the mix (the PRM's error)
    unchecked: bool = False  # the outcome could not be decided within the time limit: counted as wrong


class RewardModel:
    """Rewards for completions, one scorer call per batch. Build it once and share it (the
    adapters keep one per process): the PRM loads on first use. With `url` (an `rfprm serve`
    root) the PRM runs there instead, through its `/v1/prm/score` endpoint (batched with
    other callers', behind its keys: `api_key`). `budget_s` bounds the time one call spends
    comparing answers with the gold ones (default OUTCOME_BUDGET_S)."""

    def __init__(
        self,
        settings: Settings | None = None,
        scorer: Scorer | None = None,
        beta: float = 0.75,
        aggregation: str = "reasonflux",
        url: str | None = None,
        api_key: str | None = None,
        budget_s: float | None = None,
    ):
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.budget_s = OUTCOME_BUDGET_S if budget_s is None else budget_s
        self.settings = settings or Settings.load()
        self._scorer = scorer
        self.beta, self.aggregation = beta, aggregation
        self.url, self.api_key = url, api_key

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            from rfprm_tts.prm import build_scorer

            built: Scorer = build_scorer(self.settings.prm)
            self._scorer = built
            return built
        return self._scorer

    def score(self, questions: Sequence[str], responses: Sequence[str]) -> list[ResponseScore]:
        if self.url is None:
            return score_responses(
                self.scorer, list(zip(questions, responses)), self.settings.step_separator, self.settings.prm.alpha
            )
        import httpx

        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"items": [{"question": q, "response": r} for q, r in zip(questions, responses)]}
        reply = httpx.post(f"{self.url.rstrip('/')}/v1/prm/score", json=body, headers=headers, timeout=600)
        reply.raise_for_status()
        return [ResponseScore(**r) for r in reply.json()["results"]]

    def prm_score(self, s: ResponseScore) -> float | None:
        value = None if s.error else s.scores.get(self.aggregation)
        if value is not None and self.aggregation == "reasonflux" and not s.one_score:
            value /= 1 + self.settings.prm.alpha
        return value

    def rewards(
        self, questions: Sequence[str], responses: Sequence[str], golds: Sequence[str | None] | None = None
    ) -> list[Reward]:
        """One reward per (question, response, gold answer or None)."""
        golds = list(golds) if golds is not None else [None] * len(responses)
        if not len(questions) == len(responses) == len(golds):
            raise ValueError(f"{len(questions)} questions, {len(responses)} responses and {len(golds)} gold answers")
        scored = self.score(questions, responses)
        outcomes = self.outcomes(responses, golds)
        out = []
        for s, (outcome, unchecked) in zip(scored, outcomes):
            prm = self.prm_score(s)
            if prm is None:
                reward = outcome
            elif outcome is None:
                reward = prm
            else:
                reward = self.beta * prm + (1 - self.beta) * outcome
            out.append(Reward(reward, prm, outcome, s.prm_tokens, s.error, unchecked))
        return out

    def outcomes(self, responses: Sequence[str], golds: Sequence[str | None]) -> list[tuple[float | None, bool]]:
        """(1.0 or 0.0, None without a gold answer; whether it was left undecided) per response,
        math-verify's comparisons sharing `budget_s`; past it only spellings and values count."""
        deadline = time.monotonic() + self.budget_s
        out: list[tuple[float | None, bool]] = []
        for response, gold in zip(responses, golds):
            if gold is None:
                out.append((None, False))
                continue
            answer, left = extract_answer(response), deadline - time.monotonic()
            verdict = (
                compare(answer, str(gold), min(COMPARISON_TIMEOUT_S, left)) if left > 0 else cheap(answer, str(gold))
            )
            out.append((float(verdict is True), verdict is None))
        if time.monotonic() > deadline and (undecided := sum(unchecked for _, unchecked in out)):
            log.warning(
                "rewards for %d responses ran past their %.0f s for answer comparisons; %d outcomes left "
                "undecided (counted as wrong)",
                len(out),
                self.budget_s,
                undecided,
            )
        return out
