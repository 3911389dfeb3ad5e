"""The bundled demo world: loads through the public loaders, errs like a model, and its PRM
separates correct steps from first errors. The figures and bars of its README
(rfprm_tts/demo/README.md) are tested against its report.json (the training script's evaluation
of the shipped weights: 200 held-out problems x 16 samples, seeded), whose greedy and PRM
figures are measured again here."""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.demo import WEIGHTS_DIR
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.demo.examples import prm_example
from rfprm_tts.demo.quality import grade_samples, sample_texts, slip_check
from rfprm_tts.demo.train import TrainConfig
from rfprm_tts.demo.train import main as train_main
from rfprm_tts.prm import load_prm
from rfprm_tts.runtime.model_names import resolve_model

# the demo world's own README (moved there from the front page)
README = (Path(__file__).resolve().parents[2] / "rfprm_tts" / "demo" / "README.md").read_text()
AGGREGATIONS = ("last", "min", "mean", "prod", "reasonflux")
SHIPPED = json.loads((WEIGHTS_DIR / "report.json").read_text())


@pytest.fixture(scope="module")
def prm():
    return load_prm("demo", device="cpu")


def test_the_weights_give_the_reports_greedy_and_prm_figures():
    """The shipped weights against report.json where that is cheap to re-measure exactly (about
    6 s on 2 cores; the whole report, 16 samples per problem, takes over a minute more, which
    the suite's budget does not have: `python -m rfprm_tts.demo.train --eval-only --out
    rfprm_tts/demo/weights` redoes it): greedy answers, and the PRM's slip-twin check."""
    cfg = TrainConfig()
    tokenizer = AutoTokenizer.from_pretrained(WEIGHTS_DIR / "generator")
    generator = AutoModelForCausalLM.from_pretrained(WEIGHTS_DIR / "generator", dtype=torch.float32).eval()
    problems = held_out_problems(cfg.eval_problems, difficulty=cfg.difficulty)
    greedy = sample_texts(generator, tokenizer, [p.question for p in problems], n=1, temperature=0.0)
    accuracy = sum(grade_samples(p, t).correct[0] for p, t in zip(problems, greedy)) / len(problems)
    assert accuracy == pytest.approx(SHIPPED["greedy_accuracy"], abs=0.011)  # two problems of 200
    scorer = load_prm(str(WEIGHTS_DIR / "prm"), device="cpu", dtype="float32", batch_size=64)
    assert slip_check(scorer, problems, seed=cfg.seed) == pytest.approx(SHIPPED["slip_below_twin"], abs=0.011)


def test_the_readme_quotes_the_report():
    table = README.split("## The demo world", 1)[1].split("**The demo PRM", 1)[0]
    assert f"| {SHIPPED['greedy_accuracy']:.3f} |" in table
    assert f"| {SHIPPED['pass@1']:.3f} / {SHIPPED['oracle_pass@16']:.3f} |" in table
    assert f"| {SHIPPED['first_error_step_auroc']:.3f} |" in table
    weighted = " / ".join(f"{SHIPPED[a]['weighted_best_of_n@16']:.3f}" for a in AGGREGATIONS)
    assert weighted in re.sub(r"\*\*", "", table)


def test_generator_meets_the_readme_bars():
    assert 0.25 <= SHIPPED["greedy_accuracy"] <= 0.75
    assert SHIPPED["oracle_pass@16"] >= 0.80
    assert SHIPPED["pass@1"] < SHIPPED["oracle_pass@16"] - 0.1


def test_prm_meets_the_readme_bars():
    assert SHIPPED["first_error_step_auroc"] >= 0.85
    assert SHIPPED["prod"]["within_problem_auroc"] >= 0.75 and SHIPPED["mean"]["within_problem_auroc"] >= 0.75
    assert SHIPPED["prod"]["weighted_best_of_n@16"] >= SHIPPED["majority@16"] + 0.03
    assert SHIPPED["slip_below_twin"] > 0.5  # "most pairs"


def test_prm_reads_token_level_and_keeps_the_step_tag_format(prm):
    assert prm.format.readout == "token_min"
    problem = held_out_problems()[0]
    steps = problem.solution().split("\n\n")
    scores = prm.score(problem.question, [steps])[0]
    assert len(scores) == len(steps) and all(0.0 <= s <= 1.0 for s in scores)


def test_solve_runs_the_demo_world_by_name():
    settings = Settings.load(n=4, generator=dict(model="demo", seed=0), prm=dict(model="demo"))
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 7 + 5 * 3 - 4.")
    assert result.best is not None and result.best.step_scores
    assert result.strategy_params["aggregation"] == "prod"  # the demo PRM's own choice
    assert all("=" in s.text or "answer" in s.text for s in result.best.trajectory.steps)
    assert result.usage.generated_tokens > 0 and result.usage.prm_tokens > 0


def test_training_script_smoke(tmp_path):
    train_main(["--smoke", "--out", str(tmp_path / "world")])
    assert (tmp_path / "world" / "generator" / "model.safetensors").exists()
    assert load_prm(str(tmp_path / "world" / "prm")).score("Compute 1 + 2.", [["1 + 2 = 3"]])[0]
    assert (tmp_path / "world" / "report.json").exists()


def test_digit_labels_judge_each_step_locally():
    from rfprm_tts.demo.arithmetic import digit_labels, parse_question

    problem = parse_question("Compute 7 + 5 * 3 - 4.")
    wrong = ["5 * 3 = 16", "7 + 16 = 23", "23 - 4 = 19", "The answer is \\boxed{19}."]
    labels = digit_labels(problem, wrong)
    assert len(labels) == sum(len(s) + 1 for s in wrong)
    # only the 6 of "16" is wrong (5 * 3 = 15); the later steps compute right from what is written
    assert [i for i, label in enumerate(labels) if label == 0] == [wrong[0].index("16") + 1]
    # 7 + 5 first breaks precedence: its operand digits are wrong; nothing after a bad step counts
    labels = digit_labels(problem, ["7 + 5 = 12", "12 * 3 = 36"])
    assert labels[0] == 0 and labels[4] == 0 and labels[8:10] == [1, 1] and set(labels[11:]) == {None}
    assert digit_labels(problem, ["5 * 3 = 15", "so"])[-1] == 0  # a malformed step fails at its tag


def test_prm_labels_line_up_with_tokens_whatever_the_generator_wrote():
    from rfprm_tts.demo.arithmetic import parse_question

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("demo", "generator"))
    problem = parse_question("Compute 7 + 5 * 3 - 4.")

    def wrong_text(steps, kind):
        ids, labels = prm_example(tokenizer, problem, steps, kind)
        assert len(ids) == len(labels)
        return tokenizer.decode([i for i, label in zip(ids, labels) if label == 0])

    assert wrong_text(["5 * 3 = 16", "7 + 16 = 23"], "digits") == "6"
    assert wrong_text(["5 * 3 = 16", "7 + 16 = 23"], "first_error") == "6"
    # a stray byte decodes to U+FFFD (3 tokens); "<think>" written out reads back as 1 token
    odd = ["5 * 3 = 15", "7 + 15 = 2\ufffd2<think>", "x"]
    assert wrong_text(odd, "first_error") == "\ufffd"  # all three of its tokens
    assert wrong_text(odd, "digits") == "<extra_0>"  # a malformed step fails at its tag


def test_bundled_weights_fit_the_size_budget():
    from rfprm_tts.demo import WEIGHTS_DIR

    files = list(WEIGHTS_DIR.rglob("*.safetensors"))
    assert len(files) == 2 and sum(f.stat().st_size for f in files) <= 10_000_000


def test_training_script_refuses_a_language_model_it_would_ignore(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--out", str(tmp_path), "--language-model", str(tmp_path)])
    assert "--language-model needs --generator" in capsys.readouterr().err
