"""verl: a custom reward function (checked against verl 0.9.1's reward managers).

    custom_reward_function.path=<site-packages>/rfprm_tts/rewards/verl.py
    custom_reward_function.name=compute_score_batch   reward_model.reward_manager=batch
    (or name=compute_score with the default per-sample manager: one PRM call a sample)

verl does not pass the question: put it in each row's `extra_info["question"]`. The PRM is
built once per process from the environment (RFPRM_PRM__MODEL, ...), or reached over HTTP
when RFPRM_REWARD_URL names an `rfprm serve` (RFPRM_REWARD_KEY its key), which batches the
work of every verl worker together. Each result is a dict: `score` (the reward), `prm`,
`outcome` (NaN where unknown), which verl logs as reward extras.
"""

from __future__ import annotations

import math
import os
from typing import Any

from rfprm_tts.rewards.core import Reward, RewardModel

_model: RewardModel | None = None


def shared_model() -> RewardModel:
    global _model
    if _model is None:
        _model = RewardModel(
            url=os.environ.get("RFPRM_REWARD_URL"),
            api_key=os.environ.get("RFPRM_REWARD_KEY"),
            beta=float(os.environ.get("RFPRM_REWARD_BETA", 0.75)),
        )
    return _model


def question_in(extra_info: dict | None) -> str:
    question = (extra_info or {}).get("question")
    if not isinstance(question, str) or not question:
        raise ValueError(
            "rfprm's verl reward needs the question: put it in each row's extra_info['question'] "
            "when you build the dataset"
        )
    return question


def as_dict(r: Reward) -> dict[str, float]:
    def known(v: float | None) -> float:
        return math.nan if v is None else v

    return {"score": 0.0 if r.reward is None else r.reward, "prm": known(r.prm), "outcome": known(r.outcome)}


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, float]:
    (reward,) = shared_model().rewards([question_in(extra_info)], [solution_str], [ground_truth])
    return as_dict(reward)


def compute_score_batch(
    data_sources: list, solution_strs: list[str], ground_truths: list, extra_infos: list, **kwargs: Any
) -> list[dict[str, float]]:
    questions = [question_in(e) for e in extra_infos]
    return [as_dict(r) for r in shared_model().rewards(questions, solution_strs, ground_truths)]
