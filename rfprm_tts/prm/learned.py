"""Learned aggregation (after its_hub's learned aggregator): a logistic regression over a few
features of a trajectory's step scores, fitted on answers whose correctness is known, so the
score it gives is the estimated probability that the answer is right.

    features(step scores) = last, min, mean, log of the geometric mean, first, spread (standard
        deviation), share of steps under 0.5, log(1 + number of steps)
    score = sigmoid(w . standardised(features) + b)

`rfprm fit-aggregation SCORED.jsonl -o MODEL.json` fits one (rfprm_tts/offline/fit_aggregation.py);
`prm.aggregation = "learned:MODEL.json"` uses it. Fitting is Newton's method on the L2-penalised
log-likelihood (a handful of iterations on 9 parameters), in plain Python: no torch needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError

PREFIX = "learned:"
FEATURES = ("last", "min", "mean", "log_geometric_mean", "first", "spread", "share_below_half", "log_steps")
FLOOR = 1e-6  # a step score of 0 would make the geometric mean's log infinite


def features(scores: Sequence[float]) -> list[float]:
    """The FEATURES of a non-empty list of step scores."""
    mean = sum(scores) / len(scores)
    return [
        scores[-1],
        min(scores),
        mean,
        sum(math.log(max(s, FLOOR)) for s in scores) / len(scores),
        scores[0],
        math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)),
        sum(s < 0.5 for s in scores) / len(scores),
        math.log1p(len(scores)),
    ]


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


@dataclass(frozen=True)
class LearnedAggregation:
    """A fitted model: each feature's mean and scale (for standardising), weights, bias, and
    what it was fitted on (`fitted`: rows, correct ones, source, held-out figures)."""

    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    features: tuple[str, ...] = FEATURES
    fitted: dict[str, Any] = field(default_factory=dict)

    def score(self, scores: Sequence[float]) -> float:
        x = [(v - m) / s for v, m, s in zip(features(scores), self.mean, self.scale)]
        return sigmoid(self.bias + sum(w * v for w, v in zip(self.weights, x)))

    def save(self, path: str | Path) -> None:
        data = {"kind": "rfprm learned aggregation (logistic regression)", **asdict(self)}
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load(setting: str) -> LearnedAggregation:
    """The model a `learned:PATH` aggregation names (read once per path and modification time)."""
    path = Path(setting.removeprefix(PREFIX)).expanduser()
    try:
        return _load(str(path.resolve()), path.stat().st_mtime_ns)
    except OSError as exc:
        raise ConfigError(
            f"aggregation {setting!r}: cannot read {path} ({exc.strerror}); write one with "
            f"`rfprm fit-aggregation SCORED.jsonl -o {path}`"
        ) from None


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> LearnedAggregation:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        model = LearnedAggregation(
            mean=[float(v) for v in data["mean"]],
            scale=[float(v) for v in data["scale"]],
            weights=[float(v) for v in data["weights"]],
            bias=float(data["bias"]),
            features=tuple(data["features"]),
            fitted=dict(data.get("fitted", {})),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"aggregation 'learned:{path}' is not a model rfprm fit-aggregation wrote ({type(exc).__name__}: {exc})"
        ) from None
    if model.features != FEATURES or not len(model.mean) == len(model.scale) == len(model.weights) == len(FEATURES):
        raise ConfigError(
            f"aggregation 'learned:{path}' uses features {list(model.features)}, this version {list(FEATURES)}: "
            "fit it again with rfprm fit-aggregation"
        )
    return model


def fit(
    step_scores: Sequence[Sequence[float]], correct: Sequence[bool], l2: float = 1.0, iterations: int = 50
) -> LearnedAggregation:
    """Logistic regression of `correct` on the standardised features (Newton's method, L2
    penalty `l2` > 0 on the weights, not the bias, which keeps the system solvable)."""
    if l2 <= 0:
        raise ConfigError(f"the L2 penalty must be above 0 (it is {l2}): without it a constant feature has no fit")
    rows = [features(s) for s in step_scores]
    n, d = len(rows), len(FEATURES)
    mean = [sum(r[j] for r in rows) / n for j in range(d)]
    scale = [math.sqrt(sum((r[j] - mean[j]) ** 2 for r in rows) / n) or 1.0 for j in range(d)]
    x = [[1.0] + [(r[j] - mean[j]) / scale[j] for j in range(d)] for r in rows]  # the bias first
    y = [1.0 if c else 0.0 for c in correct]
    beta = [0.0] * (d + 1)
    for _ in range(iterations):
        p = [sigmoid(sum(b * v for b, v in zip(beta, row))) for row in x]
        gradient = [sum((p[i] - y[i]) * x[i][j] for i in range(n)) + (l2 * beta[j] if j else 0.0) for j in range(d + 1)]
        hessian = [
            [
                sum(p[i] * (1 - p[i]) * x[i][j] * x[i][k] for i in range(n)) + (l2 if j == k and j else 0.0)
                for k in range(d + 1)
            ]
            for j in range(d + 1)
        ]
        step = solve(hessian, gradient)
        beta = [b - s for b, s in zip(beta, step)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return LearnedAggregation(mean=mean, scale=scale, weights=beta[1:], bias=beta[0])


def solve(a: list[list[float]], b: list[float]) -> list[float]:
    """x with a x = b (Gaussian elimination with partial pivoting; `a` is small and positive definite)."""
    m = [[*row[:], v] for row, v in zip(a, b)]
    size = len(b)
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, size):
            factor = m[r][col] / m[col][col]
            m[r] = [v - factor * p for v, p in zip(m[r], m[col])]
    x = [0.0] * size
    for r in reversed(range(size)):
        x[r] = (m[r][size] - sum(m[r][c] * x[c] for c in range(r + 1, size))) / m[r][r]
    return x
