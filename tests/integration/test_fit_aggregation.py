"""`rfprm fit-aggregation` as a user runs it: on an rfprm score output with gold answers, its
--json report piped into a parser, and the model it writes used as prm.aggregation."""

import json
import random
import subprocess
import sys

import pytest

from rfprm_tts import Settings
from rfprm_tts.prm.aggregate import AGGREGATIONS, aggregate


def scored_rows(questions: int, seed: int) -> list[dict]:
    """Four answers a question, as rfprm score writes them; an answer is right when its weakest
    step scores over 0.4, and then its last step says nothing (drawn apart from it)."""
    rng = random.Random(seed)
    rows = []
    for q in range(questions):
        for k in range(4):
            steps = [rng.random() for _ in range(rng.randint(2, 5))]
            right = min(steps) > 0.4
            rows.append(
                {
                    "id": f"{q}-{k}",
                    "question": f"question {q}",
                    "response": f"Some steps.\n\nThe answer is \\boxed{{{q if right else q + 1}}}.",
                    "answer": str(q),
                    "rfprm": {"step_scores": steps, "scores": {m: aggregate(steps, m) for m in AGGREGATIONS}},
                }
            )
    return rows


def test_fit_then_use_the_model(tmp_path):
    scored = tmp_path / "scored.jsonl"
    rows = [*scored_rows(60, seed=0), {"question": "x", "response": "y", "answer": "1", "rfprm": {"error": "too long"}}]
    scored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", "fit-aggregation", str(scored), "-o", "model.json", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["rows"], report["used"], report["skipped"]) == (241, 240, 1)
    assert report["held_out_questions"] == 12 and report["held_out_answers"] == 48
    # right answers are the ones whose weakest step is sound: the model finds it, the last step cannot
    assert report["auroc"]["learned"] > 0.95 and report["auroc"]["last"] < 0.8
    settings = Settings.load(prm=dict(aggregation="learned:model.json"))
    assert aggregate([0.9, 0.8], settings.prm.aggregation) > 0.5 > aggregate([0.9, 0.1], settings.prm.aggregation)


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        ([{"question": "q", "response": "\\boxed{1}", "answer": "1", "rfprm": {"step_scores": [0.5]}}], "all correct"),
        ([{"question": "q", "response": "r", "rfprm": {"step_scores": ["high"]}}], "not a list of finite numbers"),
        ([{"question": "q", "response": "r", "rfprm": {"step_scores": [0.5]}}], "no gold field 'answer'"),
    ],
)
def test_what_cannot_be_fitted_is_one_line(tmp_path, rows, named):
    (tmp_path / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", "fit-aggregation", "scored.jsonl", "-o", "model.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and named in done.stderr
    assert not (tmp_path / "model.json").exists()
