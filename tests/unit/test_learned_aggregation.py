"""Learned aggregation (rfprm_tts/prm/learned.py): its features by hand, the fit's optimality,
its use as prm.aggregation in a solve, and the errors of a wrong model file."""

import json
import math
import random

import pytest

from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ConfigError, ReasoningSolver, Settings
from rfprm_tts.prm.aggregate import aggregate
from rfprm_tts.prm.learned import FEATURES, LearnedAggregation, features, fit, sigmoid, solve


def test_features_of_three_step_scores():
    f = dict(zip(FEATURES, features([0.9, 0.5, 0.2])))
    mean = 1.6 / 3
    assert f["last"] == 0.2 and f["min"] == 0.2 and f["first"] == 0.9 and f["mean"] == pytest.approx(mean)
    assert f["log_geometric_mean"] == pytest.approx(math.log(0.09) / 3)
    assert f["spread"] == pytest.approx(math.sqrt(((0.9 - mean) ** 2 + (0.5 - mean) ** 2 + (0.2 - mean) ** 2) / 3))
    assert f["share_below_half"] == pytest.approx(1 / 3) and f["log_steps"] == pytest.approx(math.log(4))


def test_a_zero_step_score_keeps_the_features_finite():
    assert all(math.isfinite(v) for v in features([0.0, 1.0]))


def test_the_linear_solver():
    assert solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]) == pytest.approx([0.8, 1.4])
    assert solve([[0.0, 1.0], [1.0, 0.0]], [2.0, 3.0]) == pytest.approx([3.0, 2.0])  # needs a pivot


def synthetic(count: int, seed: int):
    """Answers that are right when their weakest step is sound (min > 0.4), wrong 10% of the time anyway."""
    rng = random.Random(seed)
    scores = [[rng.random() for _ in range(rng.randint(2, 6))] for _ in range(count)]
    correct = [min(s) > 0.4 and rng.random() > 0.1 for s in scores]
    return scores, correct


def test_the_fit_is_the_penalised_maximum_likelihood():
    """At the fitted weights the penalised log-likelihood's gradient is zero."""
    scores, correct = synthetic(300, seed=0)
    model, l2 = fit(scores, correct, l2=1.0), 1.0
    x = [[(v - m) / s for v, m, s in zip(features(t), model.mean, model.scale)] for t in scores]
    residual = [model.score(t) - c for t, c in zip(scores, correct)]
    assert abs(sum(residual)) < 1e-6  # the bias
    for j in range(len(FEATURES)):
        assert abs(sum(r * row[j] for r, row in zip(residual, x)) + l2 * model.weights[j]) < 1e-6


def test_the_fitted_model_ranks_unseen_answers_by_what_decides_them():
    model = fit(*synthetic(400, seed=1))
    scores, correct = synthetic(400, seed=2)
    right = [model.score(s) for s, c in zip(scores, correct) if c]
    wrong = [model.score(s) for s, c in zip(scores, correct) if not c]
    pairs = sum(r > w for r in right for w in wrong) / (len(right) * len(wrong))
    assert pairs > 0.95  # AUROC on answers it never saw (0.99; the last step alone: 0.75)


def test_a_learned_aggregation_chooses_best_of_n_in_a_solve(tmp_path):
    # sigmoid(4 x (min - 0.5)): the answer whose weakest step is best wins; 'last' would pick the other
    only_min = [4.0 if name == "min" else 0.0 for name in FEATURES]
    model = LearnedAggregation(mean=[0.5] * len(FEATURES), scale=[1.0] * len(FEATURES), weights=only_min, bias=0.0)
    model.save(tmp_path / "model.json")
    texts = ["2\n\n9\n\n\\boxed{9}", "6\n\n7\n\n\\boxed{7}"]  # DigitScorer: .2 .9 .9 / .6 .7 .7
    for aggregation, answer in [("last", "9"), (f"learned:{tmp_path / 'model.json'}", "7")]:
        settings = Settings.load(strategy="best_of_n", prm=dict(aggregation=aggregation))
        result = ReasoningSolver(settings, generator=ListGenerator(texts), scorer=DigitScorer()).solve("q", n=2)
        assert result.answer == answer
    assert result.best.score == pytest.approx(sigmoid(4 * (0.6 - 0.5)))
    assert aggregate([None, 0.6, 0.7], f"learned:{tmp_path / 'model.json'}") == pytest.approx(sigmoid(4 * 0.1))


def test_a_missing_or_foreign_model_file_is_one_clear_error(tmp_path):
    with pytest.raises(
        ConfigError, match=r"learned:PATH names no file; write one with `rfprm fit-aggregation"
    ) as caught:
        Settings.load(prm=dict(aggregation=f"learned:{tmp_path / 'missing.json'}"))
    assert "missing.json" not in str(caught.value)  # an error never shows a setting's value
    (tmp_path / "other.json").write_text(json.dumps({"weights": [1.0]}))
    with pytest.raises(ConfigError, match="is not a model rfprm fit-aggregation wrote"):
        aggregate([0.5], f"learned:{tmp_path / 'other.json'}")
    model = fit(*synthetic(50, seed=3))
    data = json.loads(json.dumps(model.__dict__ | {"features": ["last", "min"]}))
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="fit it again with rfprm fit-aggregation"):
        aggregate([0.5], f"learned:{tmp_path / 'old.json'}")
