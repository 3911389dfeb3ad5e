"""Generator confidence as the verifier: no reward model, the generator's own token
log-probabilities (after DeepConf, Fu et al. 2025). The cheapest verifier for a hosted API:
every backend here returns the sampled tokens' log-probabilities (`generator.logprobs`, which
a solve turns on for this verifier).

One score per answer (or partial answer), in (0, 1]: the geometric-mean probability of
its tokens under one of four read-outs (`prm.confidence`):

    mean          exp(mean log p) over every token
    min           exp(min log p): the least likely token
    lowest_group  exp(lowest mean log p over any window of `prm.confidence_window` tokens)
    tail          exp(mean log p over the last `prm.confidence_window` tokens)

DeepConf's token confidence is the negative mean of the top-k log-probabilities at each
position; the sampled token's own log-probability is what every API returns, so it is what
is read here. Windows shorter than the answer fall back to the whole answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rfprm_tts.errors import ConfigError
from rfprm_tts.prm.protocol import ScoredBatch, ScorerDefaults, Steps
from rfprm_tts.prm.registry import register_verifier

METHODS = ("mean", "min", "lowest_group", "tail")


def confidence(logprobs: Sequence[float], method: str = "lowest_group", window: int = 2048) -> float:
    """The confidence of one answer's tokens (see the module docstring)."""
    if not logprobs:
        raise ValueError("no tokens")
    values = [float(v) for v in logprobs]
    if method == "mean":
        log_conf = sum(values) / len(values)
    elif method == "min":
        log_conf = min(values)
    elif method == "tail":
        tail = values[-window:]
        log_conf = sum(tail) / len(tail)
    elif method == "lowest_group":
        width = min(window, len(values))
        running = sum(values[:width])
        lowest = running
        for i in range(width, len(values)):
            running += values[i] - values[i - width]
            lowest = min(lowest, running)
        log_conf = lowest / width
    else:
        raise ConfigError(f"unknown prm.confidence {method!r}; use one of {', '.join(METHODS)}")
    return math.exp(log_conf)


class ConfidenceScorer(ScorerDefaults):
    """A LogprobScorer: its input is each candidate's token log-probabilities, not its steps
    (the search context calls `score_logprobs`)."""

    one_score = True
    num_parameters = 0  # no model runs: no verifier FLOPs

    def __init__(self, method: str = "lowest_group", window: int = 2048):
        if method not in METHODS:
            raise ConfigError(f"unknown prm.confidence {method!r}; use one of {', '.join(METHODS)}")
        self.method, self.window = method, window

    def score_logprobs(self, logprobs: Sequence[Sequence[float] | None]) -> ScoredBatch:
        """One score per candidate; a candidate without log-probabilities goes unscored, with why."""
        batch = ScoredBatch()
        for lp in logprobs:
            if lp:
                batch.step_scores.append([confidence(lp, self.method, self.window)])
                batch.errors.append(None)
            else:
                batch.step_scores.append([None])
                batch.errors.append("no token log-probabilities: the generator did not return them")
            batch.notes.append(None)
        return batch

    def score_batch(self, question: str, trajectories: Sequence[Steps]) -> ScoredBatch:
        raise ConfigError(
            "prm.format 'confidence' reads the generator's token log-probabilities, which step texts do not "
            "carry: it scores candidates during a solve (best_of_n, weighted_best_of_n, searches), not text"
        )

    def describe(self) -> dict:
        return {"format": "confidence", "readout": self.method, "window": self.window, "runner": None}


register_verifier("confidence", lambda settings: ConfidenceScorer(settings.confidence, settings.confidence_window))
