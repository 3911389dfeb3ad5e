"""`rfprm eval-prm`: ProcessBench's figures worked out by hand on a made-up file, and the CLI
on the bundled demo-world file as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.fakes import DigitScorer
from rfprm_tts.errors import ConfigError
from rfprm_tts.offline.eval_prm import evaluate, read_rows

RFPRM = str(Path(sys.executable).parent / "rfprm")

# DigitScorer: a step scores its first digit / 10.
HAND_MADE = [
    {"problem": "p1", "steps": ["9", "8", "1"], "label": 2, "subset": "x"},  # first below 0.5 at 2: hit
    {"problem": "p3", "steps": ["9", "3"], "label": 0, "subset": "x"},  # predicted 1: miss
    {"problem": "p1", "steps": ["7", "6"], "label": -1, "subset": "x"},  # none below: hit
    {"problem": "p2", "steps": ["7", "4"], "label": -1, "subset": "y"},  # predicted 1: miss
    {"problem": "p2", "steps": ["2", "9"], "label": 0, "subset": "y"},  # hit
    {"problem": "p2", "steps": ["9", "9"], "label": 1, "subset": "y"},  # predicted -1: miss
]


@pytest.fixture
def hand_made(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HAND_MADE))
    return path


def test_process_bench_figures_by_hand(hand_made):
    report, predictions = evaluate(DigitScorer(), read_rows(hand_made), aggregation="min", progress=False)
    x, y, average = report.subsets
    assert (x.subset, x.erroneous, x.correct, x.error_accuracy, x.correct_accuracy) == ("x", 2, 1, 0.5, 1.0)
    assert x.f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert (y.erroneous, y.correct, y.error_accuracy, y.correct_accuracy, y.f1) == (2, 1, 0.5, 0.0, 0.0)
    assert (average.subset, average.error_accuracy, average.correct_accuracy) == ("average", 0.5, 0.5)
    assert average.f1 == pytest.approx((2 / 3 + 0) / 2)
    assert [p["prediction"] for p in predictions] == [2, 1, -1, 1, 0, -1]
    # within-problem AUROC of the min score: p1 right 0.6 vs wrong 0.1 -> 1; p2 right 0.4 vs
    # wrong 0.2 and 0.9 -> 0.5; p3 has no right answer
    assert (report.within_problem_auroc, report.auroc_problems) == (0.75, 2)


def test_threshold_tuned_on_one_subset_applies_to_all(hand_made):
    """On x, F1 peaks for thresholds in (0.1, 0.6] (A and C right, B never): of the candidate
    midpoints 0.2 and 0.45, the one nearest 0.5."""
    report, _ = evaluate(DigitScorer(), read_rows(hand_made), aggregation="min", tune_on="x", progress=False)
    assert report.threshold == pytest.approx(0.45) and report.tuned_on == "x"
    assert report.subsets[0].f1 == pytest.approx(2 / 3)
    scorer = DigitScorer()
    with pytest.raises(ConfigError, match="no such subset; the file has x, y"):
        evaluate(scorer, read_rows(hand_made), tune_on="gsm8k", progress=False)
    assert scorer.calls == 0  # refused before any scoring


@pytest.mark.parametrize(
    "line, complaint",
    [
        ('{"problem": "p", "steps": ["1"]}', "2: not a labelled row.*'label'"),
        ('{"problem": "p", "steps": ["1"], "label": 3}', "2: label 3 is not -1 or a step index"),
        ('{"problem": "p", "steps": "one", "label": 0}', "2: 'steps' must be a non-empty list"),
        ("not json", "line 2 is not JSON"),
    ],
)
def test_bad_rows_name_their_line(tmp_path, line, complaint):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HAND_MADE[0]) + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=complaint):
        read_rows(path)


def test_field_names_map(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"question": "q", "process": ["1", "2"], "first_error": 0}) + "\n")
    (row,) = read_rows(path, {"problem": "question", "steps": "process", "label": "first_error"})
    assert (row.problem, row.steps, row.label, row.subset) == ("q", ["1", "2"], 0, "other")


def test_cli_on_the_demo_file_as_a_user_runs_it(tmp_path):
    """The demo PRM on the bundled file: JSON piped into a parser, predictions written, and
    the figures recomputed from those predictions."""
    out = tmp_path / "predictions.jsonl"
    done = subprocess.run(
        [RFPRM, "eval-prm", "demo", "--json", "--tune-on", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (demo,) = report["subsets"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    wrong = [r for r in rows if r["label"] != -1]
    right = [r for r in rows if r["label"] == -1]
    assert (demo["erroneous"], demo["correct"]) == (len(wrong), len(right)) and wrong and right
    assert demo["error_accuracy"] == pytest.approx(sum(r["match"] for r in wrong) / len(wrong))
    assert demo["correct_accuracy"] == pytest.approx(sum(r["match"] for r in right) / len(right))
    for r in rows:  # the prediction is the first step below the chosen threshold
        below = [i for i, s in enumerate(r["step_scores"]) if s < report["threshold"]]
        assert r["prediction"] == (below[0] if below else -1)
    assert demo["f1"] > 0.5  # the demo PRM finds the demo's errors far better than chance
    assert 0.5 < report["within_problem_auroc"] <= 1.0


def test_cli_errors_are_clear(tmp_path):
    done = subprocess.run(
        [RFPRM, "eval-prm", str(tmp_path / "missing.jsonl")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "does not exist" in done.stderr and "'demo'" in done.stderr
    done = subprocess.run(
        [RFPRM, "eval-prm", "demo", "--threshold", "0.3", "--tune-on", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "give one" in done.stderr


def test_the_bundled_demo_file_is_labelled_by_the_grader():
    from rfprm_tts.demo.arithmetic import grade, parse_question
    from rfprm_tts.demo.labelled import labelled_rows
    from rfprm_tts.offline.eval_prm import DEMO_FILE

    rows = [json.loads(line) for line in DEMO_FILE.read_text().splitlines()]
    assert len(rows) >= 100
    for row in rows:
        problem = parse_question(row["problem"])
        verdicts = grade(problem, row["steps"]).step_correct
        assert row["label"] == next((i for i, ok in enumerate(verdicts) if not ok), -1)
        (again,) = labelled_rows([problem], [["\n\n".join(row["steps"])]])
        assert again["label"] == row["label"] and again["steps"] == row["steps"]
