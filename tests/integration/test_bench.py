"""The benchmark harness: grading, datasets, sample reuse, resume after a kill, reports."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers.bench import bench_command, demo_settings
from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.bench import RunStore, load_problems, run_bench, summarize, write_report
from rfprm_tts.bench.datasets import Problem, gold_answer
from rfprm_tts.bench.report import bootstrap_ci
from rfprm_tts.bench.rows import Grader
from rfprm_tts.errors import ConfigError

# Gold answers of real MATH problems, with equivalent and non-equivalent spellings of them.
# The verdicts are mathematical facts, worked out by hand.
GRADING_CASES = [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "\\dfrac12", True),
    ("\\frac{3}{4}", "0.75", True),
    ("(-\\infty, 3]", "(-\\infty,3]", True),
    ("[2, 5)", "(2, 5]", False),
    ("90^\\circ", "90", True),
    ("\\text{Evelyn}", "Evelyn", True),
    ("\\text{(C)}", "C", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", True),
    ("10\\sqrt{2}", "\\sqrt{200}", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\pi", "3.14", False),
    ("2", "3", False),
]


@pytest.mark.parametrize("gold, prediction, verdict", GRADING_CASES)
def test_grading_real_math_answers(gold, prediction, verdict):
    assert Grader()(Problem("p", "q", gold), prediction) is verdict


def test_gold_answer_formats():
    assert gold_answer("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 1,234") == "1234"  # GSM8K
    assert gold_answer(27.0) == "27"  # AMC 2023 stores floats
    assert gold_answer("\\frac{14}{3}") == "\\frac{14}{3}"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_jsonl_with_a_field_mapping_slicing_and_shuffle(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", [{"qid": i, "prompt": f"q{i}", "final": f"#### {i}"} for i in range(10)])
    problems = load_problems(str(path), fields={"question": "prompt", "answer": "final", "id": "qid"}, start=2, end=6)
    assert [(p.id, p.question, p.answer) for p in problems] == [(str(i), f"q{i}", str(i)) for i in range(2, 6)]
    once = load_problems(str(path), fields={"question": "prompt", "answer": "final"}, shuffle_seed=7, limit=5)
    again = load_problems(str(path), fields={"question": "prompt", "answer": "final"}, shuffle_seed=7, limit=5)
    assert once == again and [p.question for p in once] != [f"q{i}" for i in range(5)]
    with pytest.raises(ConfigError, match="no field 'question'.*--field question=NAME"):
        load_problems(str(path))


def test_named_datasets_offline(tmp_path):
    write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "2 + 2?", "answer": "4 = 2 + 2\n#### 4", "idx": 0}])
    [problem] = load_problems("gsm8k", data_dir=tmp_path)
    assert (problem.id, problem.answer) == ("0", "4")
    with pytest.raises(ConfigError, match="math500.jsonl"):
        load_problems("math500", data_dir=tmp_path)
    assert len(load_problems("demo", limit=3)) == 3
    assert load_problems("demo")[0].question.startswith("Compute ")


def test_bootstrap_interval():
    low, high = bootstrap_ci([True] * 30 + [False] * 70)
    assert low < 0.3 < high and low > 0.15 and high < 0.45
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)


TEXTS = ["1 + 1 = 2\n\n\\boxed{2}", "9 + 9 = 18\n\n\\boxed{18}", "5 + 5 = 10\n\n\\boxed{10}", "2 + 7 = 9\n\n\\boxed{9}"]


def test_sample_reuse_equals_runs_at_each_budget(tmp_path):
    """best_of_n at N=2 from a pool of 4 picks what a run at n=2 picks, at the same cost."""
    problems = [Problem("a", "Compute 9 + 9.", "18"), Problem("b", "Compute 1 + 1.", "2")]
    settings = Settings()
    solver = ReasoningSolver(settings, generator=ListGenerator(TEXTS), scorer=DigitScorer())
    store = asyncio.run(
        run_bench(
            problems,
            ["best_of_n", "majority_vote"],
            [1, 2, 4],
            settings,
            tmp_path / "run",
            solver=solver,
            progress=False,
        )
    )
    rows = {(r["problem_id"], r["strategy"], r["n"]): r for r in store.rows()}
    assert len(rows) == 2 * 2 * 3
    for n in (1, 2, 4):
        direct = ReasoningSolver(settings, generator=ListGenerator(TEXTS), scorer=DigitScorer()).solve(
            "Compute 9 + 9.", n=n
        )
        row = rows[("a", "best_of_n", n)]
        assert row["answer"] == direct.answer
        assert row["generated_tokens"] == direct.usage.generated_tokens
        assert row["prm_tokens"] == direct.usage.prm_tokens
        assert row["reused"] is (n < 4)
    # DigitScorer ranks the "9 + 9" sample (first digit 9) first: right for a, wrong for b
    assert rows[("a", "best_of_n", 2)]["correct"] and not rows[("b", "best_of_n", 2)]["correct"]
    assert rows[("b", "best_of_n", 1)]["correct"] and rows[("b", "best_of_n", 1)]["pass_at_n"]
    assert rows[("b", "best_of_n", 2)]["pass_at_n"]  # the right sample is among the first two


def resumable_bench(out, *extra):
    """Beam search runs N in multiples of its width: width 1 runs it at budgets 1 and 2."""
    return bench_command(
        out,
        "--concurrency",
        "1",
        "--param",
        "beam_width=1",
        *extra,
        limit=6,
        strategies=["majority_vote", "beam_search"],
    )


def test_resume_after_a_kill_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        resumable_bench(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    rows_file = out / "rows.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not rows_file.exists() or len(rows_file.read_text().splitlines()) < 3):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = rows_file.read_text().splitlines()
    assert 3 <= len(before) < 6 * 4, "the kill should land mid-run"
    with open(rows_file, "a") as f:
        f.write('{"problem_id": "demo-9", "strat')  # a torn line, as a kill mid-write leaves

    subprocess.run(resumable_bench(out), check=True, capture_output=True, timeout=600)
    after = [json.loads(line) for line in rows_file.read_text().splitlines()]
    keys = [(r["problem_id"], r["strategy"], r["n"]) for r in after]
    assert len(keys) == len(set(keys)) == 6 * 2 * 2
    assert [json.loads(line) for line in before] == after[: len(before)]  # finished rows kept as they were

    live = (out / "summary.md").read_text()
    (out / "summary.md").unlink()
    subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", "bench", "report", str(out)], check=True, capture_output=True
    )
    assert (out / "summary.md").read_text() == live
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 0 and (out / "accuracy_vs_n.png").stat().st_size > 0

    points = {(p.strategy, p.n): p for p in summarize(after)}
    for (strategy, n), point in points.items():
        group = [r for r in after if (r["strategy"], r["n"]) == (strategy, n)]
        assert point.accuracy == sum(r["correct"] for r in group) / 6
        assert f"| {strategy}{' *' if point.reused else ''} | {n} | 6 | {point.accuracy:.3f} |" in live


def test_a_resumed_run_must_keep_its_settings(tmp_path):
    RunStore(tmp_path, {"dataset": "demo", "settings": {"n": 1}, "budgets": [1], "strategies": ["a"]})
    RunStore(tmp_path, {"dataset": "demo", "settings": {"n": 1}, "budgets": [2], "strategies": ["b"]})  # may grow
    assert json.loads((tmp_path / "run.json").read_text())["budgets"] == [1, 2]
    with pytest.raises(ConfigError, match='dataset: "demo" then, "math500" now'):
        RunStore(tmp_path, {"dataset": "math500", "settings": {"n": 1}, "budgets": [1], "strategies": ["a"]})
    with pytest.raises(ConfigError, match="settings.n: 1 then, 2 now"):  # the nested setting is named
        RunStore(tmp_path, {"dataset": "demo", "settings": {"n": 2}, "budgets": [1], "strategies": ["a"]})
    with pytest.raises(ConfigError, match="not a benchmark run directory"):
        write_report(tmp_path / "missing")


def test_run_json_records_what_auto_resolved_to(tmp_path):
    """The demo PRM's config names its aggregation and read-out; "auto" settings must be
    recorded as what they became, not as "auto"."""
    problems = load_problems("demo", limit=1)
    settings = demo_settings()
    assert settings.prm.aggregation == "auto" and settings.prm.readout == "auto"
    store = asyncio.run(run_bench(problems, ["majority_vote"], [1], settings, tmp_path / "run", progress=False))
    config = store.config()
    assert config["resolved"]["aggregation"] == "prod" and config["resolved"]["readout"] == "token_min"
    assert config["resolved"]["format"] == "step_tag"
    assert config["settings"]["prm"]["aggregation"] == "auto"


def test_shards_merged_equal_an_unsharded_run(tmp_path):
    """K = 2 shards of a demo run, merged: the same rows (answers, tokens, verdicts) and
    summary figures as one unsharded run of the same settings; bad merges are refused."""
    from rfprm_tts.bench import summarize

    def bench(out, *extra):
        command = bench_command(out, "--concurrency", "1", *extra, limit=5, strategies=["majority_vote", "best_of_n"])
        return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)

    def merge(out, *shards):
        return subprocess.run(
            [sys.executable, "-m", "rfprm_tts.cli", "bench", "merge", str(out), *map(str, shards)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )

    assert bench(tmp_path / "whole").returncode == 0
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        done = bench(shard, "--num-shards", "2", "--shard-index", str(i))
        assert done.returncode == 0, done.stderr[-2000:]
    sizes = [len(json.loads((s / "run.json").read_text())["problem_ids"]) for s in shards]
    assert sizes == [3, 2]  # problems 0 2 4 | 1 3
    merged = merge(tmp_path / "merged", *reversed(shards))  # any order
    assert merged.returncode == 0, merged.stderr
    timeless = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    whole, joined = RunStore(tmp_path / "whole"), RunStore(tmp_path / "merged")
    key = lambda r: (r["problem_id"], r["strategy"], r["n"])  # noqa: E731
    assert timeless(sorted(joined.rows(), key=key)) == timeless(sorted(whole.rows(), key=key))
    points = lambda store: [{k: v for k, v in vars(p).items() if k != "wall_s"} for p in summarize(store.rows())]  # noqa: E731
    assert points(joined) == points(whole) and (tmp_path / "merged" / "summary.md").is_file()
    assert joined.config()["problem_ids"] == whole.config()["problem_ids"]

    missing = merge(tmp_path / "m2", shards[0])
    assert missing.returncode == 2 and "shards [1] of 2 are missing" in missing.stderr
    twice = merge(tmp_path / "m3", shards[0], shards[0], shards[1])
    assert twice.returncode == 2 and "shard 0 of 2 is given twice" in twice.stderr
    other = tmp_path / "other"  # shard 1 as another run's would be: other budgets in its run.json
    shutil.copytree(shards[1], other)
    config = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**config, "budgets": [1, 4]}))
    mismatch = merge(tmp_path / "m4", shards[0], other)
    assert (
        mismatch.returncode == 2
        and "budgets" in mismatch.stderr
        and "every shard must be the same run" in mismatch.stderr
    )
    bad = bench(tmp_path / "bad", "--num-shards", "2", "--shard-index", "2")
    assert bad.returncode == 2 and "the index must be 0..1" in bad.stderr


def test_gpqa_diamond_offline_choices_shuffled_by_seed_and_graded_by_letter(tmp_path):
    rows = [
        {
            "Record ID": f"rec{i}",
            "Question": f"Which value is right for case {i}?",
            "Correct Answer": f"right {i}",
            "Incorrect Answer 1": f"wrong a{i}",
            "Incorrect Answer 2": f"wrong b{i}",
            "Incorrect Answer 3": f"wrong c{i}",
        }
        for i in range(8)
    ]
    (tmp_path / "gpqa_diamond.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = load_problems("gpqa_diamond", data_dir=tmp_path)
    assert [p.id for p in problems] == [f"rec{i}" for i in range(8)]
    for i, p in enumerate(problems):
        lines = p.question.splitlines()
        lettered = [line for line in lines if line[:3] in ("A) ", "B) ", "C) ", "D) ")]
        assert [line[0] for line in lettered] == list("ABCD")
        assert sorted(line[3:] for line in lettered) == sorted(
            [f"right {i}", f"wrong a{i}", f"wrong b{i}", f"wrong c{i}"]
        )
        assert f"{p.answer}) right {i}" in lettered  # the gold letter names the correct choice
        assert p.choices[ord(p.answer) - ord("A")] == f"right {i}"
    assert load_problems("gpqa_diamond", data_dir=tmp_path) == problems  # the same seed, the same order
    other = load_problems("gpqa_diamond", data_dir=tmp_path, choice_seed=1)
    assert [p.choices for p in other] != [p.choices for p in problems]
    assert len({p.answer for p in problems}) > 1  # the right answer is not always in one place

    grade, p = Grader(), problems[0]
    wrong = next(letter for letter in "ABCD" if letter != p.answer)
    for spelled in (p.answer, f"({p.answer})", f"{p.answer}) right 0", f"\\text{{{p.answer}}}"):
        assert grade(p, spelled)
    assert not grade(p, wrong) and not grade(p, "right 0") and not grade(p, None)


def test_gpqa_rows_missing_fields_are_named(tmp_path):
    (tmp_path / "gpqa_diamond.jsonl").write_text(json.dumps({"Question": "q", "Correct Answer": "a"}) + "\n")
    with pytest.raises(ConfigError, match="no field 'Incorrect Answer 1'"):
        load_problems("gpqa_diamond", data_dir=tmp_path)


def test_report_overlays_runs(tmp_path):
    """Two runs (the same problems, two verifiers that rank samples oppositely) on one report:
    a line per run and strategy, each point the run's own; several runs need --out."""
    problems = [Problem("a", "Compute 9 + 9.", "18"), Problem("b", "Compute 1 + 1.", "2")]

    class LowDigitScorer(DigitScorer):  # prefers the other sample: a second verifier
        def score_batch(self, question, trajectories):
            batch = super().score_batch(question, trajectories)
            batch.step_scores = [[1 - s for s in row] for row in batch.step_scores]
            return batch

    for name, scorer in (("digit", DigitScorer()), ("low_digit", LowDigitScorer())):
        solver = ReasoningSolver(Settings(), generator=ListGenerator(TEXTS), scorer=scorer)
        asyncio.run(
            run_bench(problems, ["best_of_n"], [1, 2], Settings(), tmp_path / name, solver=solver, progress=False)
        )
    rfprm = [sys.executable, "-m", "rfprm_tts.cli", "bench", "report"]
    done = subprocess.run(
        [*rfprm, str(tmp_path / "digit"), str(tmp_path / "low_digit"), "--out", str(tmp_path / "both")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "both" / "summary.md").read_text()
    for name in ("digit", "low_digit"):
        own = {(p.strategy, p.n): p for p in summarize(RunStore(tmp_path / name).rows())}
        for n in (1, 2):
            line = next(
                line
                for line in summary.splitlines()
                if line.startswith(f"| {name}: best_of_n") and f" | {n} | " in line
            )
            assert f"| {own[('best_of_n', n)].accuracy:.3f} |" in line
    assert summary.count("| digit: best_of_n") == 2 and summary.count("| low_digit: best_of_n") == 2
    assert (tmp_path / "both" / "accuracy_vs_tokens.png").stat().st_size > 0
    refused = subprocess.run(
        [*rfprm, str(tmp_path / "digit"), str(tmp_path / "low_digit")], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "--out" in refused.stderr


def test_a_beam_search_skips_the_budgets_it_cannot_run_instead_of_mislabelling_them():
    """dvts at n = 1, 2, 4, 6 once ran the same search four times under four N labels."""
    from rfprm_tts.bench.datasets import Problem
    from rfprm_tts.bench.jobs import WorkSpec, plan_jobs

    spec = WorkSpec(Settings(strategy_params={"beam_width": 4}), ("dvts", "best_of_n"), (1, 2, 4, 6, 8))
    assert spec.runs == {"dvts": (4, 8), "best_of_n": (1, 2, 4, 6, 8)}
    jobs = plan_jobs([Problem("p", "q", "1")], spec, set())
    assert sorted(j.n for j in jobs if j.strategy == "dvts") == [4, 8]
    with pytest.raises(ConfigError, match="n=2 is not a multiple of beam_width=4"):
        WorkSpec(Settings(), ("beam_search",), (1, 2)).built()


def test_strategies_with_the_thinking_controlled_run_each_budget_on_their_own():
    """A pool's first N whole samples are not what early exit would have sampled: such a
    strategy is searched at every N, the others still share one pool."""
    from rfprm_tts.bench.datasets import Problem
    from rfprm_tts.bench.jobs import WorkSpec, plan_jobs

    plain = WorkSpec(Settings(), ("majority_vote", "best_of_n"), (1, 4))
    assert plain.pooled == ("majority_vote", "best_of_n")
    probed = WorkSpec(Settings(strategy_params={"early_exit": "probe"}), ("majority_vote", "best_of_n"), (1, 4))
    assert probed.pooled == ()
    jobs = plan_jobs([Problem("p", "q", "1")], probed, set())
    assert sorted((j.strategy, j.n) for j in jobs) == [
        ("best_of_n", 1),
        ("best_of_n", 4),
        ("majority_vote", 1),
        ("majority_vote", 4),
    ]


def test_a_generator_that_cannot_load_stops_the_run_before_any_row(tmp_path):
    """A broken generator used to fail each problem in turn: a run of error rows, accuracy 0.
    It now stops the run at its start with one line, and leaves nothing to resume from."""
    import shutil

    from rfprm_tts.demo.paths import WEIGHTS_DIR

    broken = tmp_path / "generator"
    shutil.copytree(WEIGHTS_DIR / "generator", broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "hidden_size": config["hidden_size"] + 2}))
    command = bench_command(tmp_path / "run", limit=3, strategies=["majority_vote"], budgets=[1])
    command[command.index("--model") + 1] = str(broken)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "does not match its config.json" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "rows.jsonl").exists()


def test_a_draft_models_work_is_summed_apart_and_plotted_against_the_targets_flops(tmp_path):
    """Rows from a speculative run carry the draft's tokens and FLOPs: a point's FLOPs are all
    three models', its target FLOPs the generator's alone, and the plots add the axes that
    speculation trades (rows from before drafts were counted still summarize)."""
    from rfprm_tts.bench.report import plot

    base = {"n": 1, "correct": True, "pass_at_n": True, "generated_tokens": 10, "prm_tokens": 5, "wall_s": 1.0}
    rows = [
        {
            **base,
            "strategy": "speculative_steps",
            "generator_flops": 100.0,
            "prm_flops": 10.0,
            "draft_flops": 40.0,
            "draft_generated_tokens": 30,
        },
        {
            **base,
            "strategy": "speculative_steps",
            "generator_flops": 300.0,
            "prm_flops": 10.0,
            "draft_flops": 0.0,
            "draft_generated_tokens": 0,
            "correct": False,
        },
        {**base, "strategy": "best_of_n", "generator_flops": 400.0, "prm_flops": 20.0},  # an older row
    ]
    points = {p.strategy: p for p in summarize(rows)}
    spec, plain = points["speculative_steps"], points["best_of_n"]
    assert (spec.flops, spec.target_flops, spec.draft_tokens, spec.accuracy) == (230.0, 200.0, 15.0, 0.5)
    assert (plain.flops, plain.target_flops, plain.draft_tokens) == (420.0, 400.0, 0.0)
    drawn = {path.name for path in plot(list(points.values()), tmp_path)}
    assert {"accuracy_vs_target_flops.png", "accuracy_vs_total_flops.png", "accuracy_vs_wall_s.png"} <= drawn
    assert {path.name for path in plot([plain], tmp_path)} == {"accuracy_vs_tokens.png", "accuracy_vs_n.png"}
