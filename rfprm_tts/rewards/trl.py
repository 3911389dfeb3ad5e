"""TRL: a reward function for `GRPOTrainer(reward_funcs=[PRMReward()])` (checked against TRL
1.16's GRPOTrainer._calculate_rewards).

TRL calls it with the batch's prompts and completions (strings, or message lists in the
conversational format) and every other dataset column as a list: the gold answer comes from
`gold_column` ("answer"), the question from `question_column` when the dataset has one (else
the prompt, or its last user message). It returns one reward per completion, None where
neither the PRM nor a gold answer gives one (TRL leaves it out), and logs the mean PRM score,
the mean outcome and the PRM fallbacks as metrics, the PRM score as a completions column.
"""

from __future__ import annotations

from typing import Any

from rfprm_tts.rewards.core import RewardModel


def text_of(message: Any) -> str:
    """A prompt or completion: a string, or the content of its last (user/assistant) message."""
    if isinstance(message, str):
        return message
    if isinstance(message, list) and message and isinstance(message[-1], dict):
        users = [m for m in message if m.get("role") == "user"]
        return str((users or message)[-1].get("content", ""))
    raise TypeError(f"expected a string or a list of chat messages, got {type(message).__name__}")


class PRMReward:
    def __init__(
        self, model: RewardModel | None = None, gold_column: str = "answer", question_column: str | None = None
    ):
        self.model = model or RewardModel()
        self.gold_column, self.question_column = gold_column, question_column

    def __call__(self, prompts: list, completions: list, completion_ids: list | None = None, **columns: Any) -> list:
        questions = columns.get(self.question_column) if self.question_column else None
        questions = questions or [text_of(p) for p in prompts]
        responses = [c if isinstance(c, str) else str(c[-1].get("content", "")) for c in completions]
        rewards = self.model.rewards(questions, responses, columns.get(self.gold_column))
        if callable(log_metric := columns.get("log_metric")):
            prm = [r.prm for r in rewards if r.prm is not None]
            outcome = [r.outcome for r in rewards if r.outcome is not None]
            if prm:
                log_metric("rfprm/prm_mean", sum(prm) / len(prm))
            if outcome:
                log_metric("rfprm/outcome_mean", sum(outcome) / len(outcome))
            log_metric("rfprm/prm_fallbacks", float(sum(r.fallback is not None for r in rewards)))
        if callable(log_extra := columns.get("log_extra")):
            log_extra("prm_score", [r.prm for r in rewards])
        return [r.reward for r in rewards]
