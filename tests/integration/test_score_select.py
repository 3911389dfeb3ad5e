"""`rfprm score` and `rfprm select` as a user runs them: the CLI on JSONL files, the demo PRM
for scoring, hand-made scored files for selection (kept sets worked out by hand)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.processes import rfprm
from rfprm_tts.offline.select import Rule, select

RIGHT = "5 * 3 = 15\n\n7 + 15 = 22\n\n22 - 4 = 18\n\nThe answer is \\boxed{18}."
WRONG = "7 + 5 = 12\n\n12 * 3 = 36\n\n36 - 4 = 32\n\nThe answer is \\boxed{32}."
QUESTION = "Compute 7 + 5 * 3 - 4."


def write(path, rows, extra=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_writes_every_row_with_its_scores_and_reports_bad_rows(tmp_path):
    rows = [
        {"id": 0, "question": QUESTION, "response": RIGHT},
        {"id": 1, "problem": QUESTION, "completion": WRONG},
        {"id": 2, "question": QUESTION},
        {"id": 3, "q": "x", "steps": ["a", "b"]},
        {
            "id": 4,
            "question": QUESTION,
            "response": "<think>5 * 3 = 15\n\n7 + 15 = 22</think>The answer is \\boxed{18}.",
        },
    ]
    write(tmp_path / "in.jsonl", rows, "{not json\n")
    out = rfprm("score", "in.jsonl", "-o", "out.jsonl", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rows"] == 6 and summary["errors"] == 3 and summary["scored"] == 3
    scored = read(tmp_path / "out.jsonl")
    assert [r.get("id") for r in scored] == [0, 1, 2, 3, 4, None]  # input order, every row
    assert {k: v for k, v in scored[0].items() if k != "rfprm"} == rows[0]  # the input row, as given
    first = scored[0]["rfprm"]
    assert len(first["step_scores"]) == first["steps"] == 4 and first["prm_tokens"] > 0
    s = first["step_scores"]
    assert first["scores"]["min"] == min(s) and first["scores"]["last"] == s[-1]
    assert first["scores"]["mean"] == pytest.approx(sum(s) / 4)
    assert "no response" in scored[2]["rfprm"]["error"] and "--response-field" in scored[2]["rfprm"]["error"]
    assert "no question" in scored[3]["rfprm"]["error"]
    assert "line 6 is not JSON" in scored[5]["rfprm"]["error"]
    assert scored[4]["rfprm"]["steps"] == 3  # two thinking steps and the final answer
    assert sum(r["rfprm"].get("prm_tokens", 0) for r in scored) == summary["prm_tokens"]
    # a list of steps instead of a response
    write(tmp_path / "steps.jsonl", [{"question": QUESTION, "steps": RIGHT.split("\n\n")}])
    assert (
        rfprm("score", "steps.jsonl", "-o", "steps_out.jsonl", "--steps-field", "steps", cwd=tmp_path).returncode == 0
    )
    assert read(tmp_path / "steps_out.jsonl")[0]["rfprm"]["step_scores"] == pytest.approx(s, abs=1e-5)


def test_score_resumes_after_a_kill_without_duplicates_and_refuses_other_settings(tmp_path):
    rows = [
        {"id": i, "question": f"Compute {i} + 5 * 3 - 4.", "response": RIGHT if i % 2 else WRONG} for i in range(600)
    ]
    write(tmp_path / "in.jsonl", rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    job = subprocess.Popen(
        [sys.executable, "-m", "rfprm_tts.cli", "score", "in.jsonl", "-o", "out.jsonl", "--chunk-rows", "16"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    out = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 48):
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    done = out.read_bytes().count(b"\n")
    assert 48 <= done < 600, "killed too late to test a resume"
    with open(out, "a") as f:
        f.write('{"id": 99999, "question": "torn')  # as a kill mid-write leaves it
    # other scoring settings: refused, the file untouched
    refused = rfprm("score", "in.jsonl", "-o", "out.jsonl", "--alpha", "0.5", cwd=tmp_path)
    assert refused.returncode == 2 and "alpha" in refused.stderr and "--restart" in refused.stderr
    resumed = rfprm("score", "in.jsonl", "-o", "out.jsonl", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_after"] == done
    scored = read(out)
    assert [r["id"] for r in scored] == list(range(600))  # no duplicate, no gap, the torn line gone
    # the rows scored before and after the kill agree with a run from scratch
    write(tmp_path / "few.jsonl", [rows[0], rows[done]])
    assert rfprm("score", "few.jsonl", "-o", "few_out.jsonl", cwd=tmp_path).returncode == 0
    fresh = read(tmp_path / "few_out.jsonl")
    for got, want in zip([scored[0], scored[done]], fresh):
        assert got["rfprm"]["step_scores"] == pytest.approx(want["rfprm"]["step_scores"], abs=1e-5)
    # another input under the same output: the ids do not line up, refused
    write(tmp_path / "other.jsonl", [dict(r, id=r["id"] + 5000) for r in rows])
    other = rfprm("score", "other.jsonl", "-o", "out.jsonl", cwd=tmp_path)
    assert other.returncode == 2 and "is not the one this output was scored from" in other.stderr
    # an output with no settings file beside it is not resumed
    (tmp_path / "out.jsonl.settings.json").unlink()
    again = rfprm("score", "in.jsonl", "-o", "out.jsonl", cwd=tmp_path)
    assert again.returncode == 2 and "cannot be resumed safely" in again.stderr


def scored_row(i, question, score, response=RIGHT, answer="18"):
    return {
        "id": i,
        "question": question,
        "response": response,
        "answer": answer,
        "rfprm": {"scores": {"reasonflux": score, "min": score / 2, "last": 1 - score, "mean": score, "prod": score}},
    }


ROWS = [
    scored_row(0, "a", 0.5),
    scored_row(1, "a", 0.9, WRONG),
    scored_row(2, "a", 0.7),
    scored_row(3, "b", 0.2),
    scored_row(4, "b", 0.2),
    {"id": 5, "question": "b", "rfprm": {"error": "x"}},
    scored_row(6, "c", 0.6, WRONG),
]


@pytest.mark.parametrize(
    "rule, kept",
    [
        (Rule(top_k=1), [1, 3, 6]),  # the best of each question; b's tie keeps the first row
        (Rule(top_k=2), [1, 2, 3, 4, 6]),
        (Rule(top_k=2, per="global"), [1, 2]),
        (Rule(top_frac=0.5), [1, 2, 3, 6]),  # ceil(0.5 x 3) = 2 of a, 1 of b, 1 of c
        (Rule(min_score=0.55), [1, 2, 6]),
        (Rule(by="last", top_k=1), [0, 3, 6]),  # last = 1 - score here
        (Rule(require_correct=True, top_k=1), [2, 3]),  # 1 and 6 answer 32, the gold is 18
        (Rule(), [0, 1, 2, 3, 4, 6]),  # no rule: every scored row
    ],
)
def test_select_keeps_the_rows_worked_out_by_hand(rule, kept):
    got, summary = select(ROWS, rule)
    assert got == kept and summary.kept == len(kept) and summary.unscored == 1


def test_select_cli_writes_the_kept_rows_and_a_summary(tmp_path):
    write(tmp_path / "scored.jsonl", ROWS)
    out = rfprm(
        "select", "scored.jsonl", "-o", "kept.jsonl", "--top-k", "1", "--require-correct", "--json", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in read(tmp_path / "kept.jsonl")] == [2, 3]
    summary = json.loads(out.stdout)
    assert summary["incorrect"] == 2 and summary["unscored"] == 1 and summary["dropped_by_rank"] == 2
    assert summary["mean_kept"] == pytest.approx((0.7 + 0.2) / 2)
    for args, message in [
        (["--top-k", "1", "--top-frac", "0.5"], "not allowed with argument"),
        (["--by", "median"], "--by 'median'"),
        (["--top-frac", "2"], "--top-frac must be in (0, 1]"),
    ]:
        bad = rfprm("select", "scored.jsonl", "-o", "k.jsonl", *args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    write(tmp_path / "raw.jsonl", [{"question": "q", "response": RIGHT}])
    bad = rfprm("select", "raw.jsonl", "-o", "k.jsonl", cwd=tmp_path)
    assert bad.returncode == 2 and "run rfprm score on it first" in bad.stderr
