"""Turning a trajectory's step scores into one score.

`reasonflux` is the ReasonFlux-PRM paper's trajectory reward: the mean step reward plus
alpha times the reward of the final answer (alpha = 1.0 in the paper). `learned:PATH` is a
model fitted on answers of known correctness (rfprm_tts/prm/learned.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rfprm_tts.errors import ConfigError
from rfprm_tts.prm import learned
from rfprm_tts.prm.protocol import Scorer

AGGREGATIONS = ("last", "min", "mean", "prod", "reasonflux")
# With step scores in [0, 1] these can only fall as steps are added: a partial answer that
# already scores no higher than a finished one can never overtake it.
FALLING = ("min", "prod")


def resolve_aggregation(setting: str, scorer: Scorer) -> str:
    """The prm.aggregation setting, or with "auto" the scorer's checkpoint's own choice
    (`rfprm_aggregation` in its config), else reasonflux."""
    if setting != "auto":
        return setting
    choice = scorer.aggregation or "reasonflux"
    if choice not in AGGREGATIONS:
        raise ConfigError(
            f"the PRM checkpoint's config names rfprm_aggregation {choice!r}, not one of "
            f"{', '.join(AGGREGATIONS)}; set prm.aggregation to the one to use"
        )
    return choice


def aggregate(
    step_scores: Sequence[float | None], method: str, alpha: float = 1.0, answer_step: bool = False
) -> float | None:
    """One score for a trajectory, None when it has no scored step.

    With `answer_step` the last score belongs to the final answer after `<think>`: the
    reasonflux mean then covers only the thinking steps before it. Steps the overflow
    policy left unscored (None) are skipped.
    """
    if method.startswith(learned.PREFIX):
        scored = [s for s in step_scores if s is not None]
        return learned.load(method).score(scored) if scored else None
    if method not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)} or learned:PATH")
    answer_step = answer_step and bool(step_scores) and step_scores[-1] is not None
    scores = [s for s in step_scores if s is not None]
    if not scores:
        return None
    if method == "last":
        return scores[-1]
    if method == "min":
        return min(scores)
    if method == "mean":
        return sum(scores) / len(scores)
    if method == "prod":
        return math.prod(scores)
    steps = scores[:-1] if answer_step and len(scores) > 1 else scores
    return sum(steps) / len(steps) + alpha * scores[-1]
