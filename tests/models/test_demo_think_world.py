"""The shipped demo-think world (rfprm_tts/demo/weights_think): its report is what the weights
measure, and the bars issue #31 set hold: it thinks 5-20x longer than it answers, checking helps,
an answer probe reads what the thinking holds, its PRM finds first errors, and it
answers the short questions a newcomer types first."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.demo.paths import WEIGHTS_THINK_DIR
from rfprm_tts.demo.quality import sample_texts, slip_check
from rfprm_tts.demo.thinking import first_attempt_value, grade_response, response_text, thinking_steps
from rfprm_tts.demo.train_think import ThinkConfig
from rfprm_tts.prm import load_prm
from rfprm_tts.trajectory import Trajectory

SHIPPED = json.loads((WEIGHTS_THINK_DIR / "report.json").read_text())
FRESH = json.loads((WEIGHTS_THINK_DIR / "report_fresh.json").read_text())  # problems never drawn in training


def test_the_weights_give_the_reports_greedy_and_prm_figures():
    """The shipped weights against report.json where that is cheap to re-measure exactly (20 s
    on 2 cores; the whole report takes five minutes, past the suite's budget: `python -m
    rfprm_tts.demo.train --world think --eval-only --out rfprm_tts/demo/weights_think` redoes
    it): greedy answers with and without the checks, and the PRM's slip-twin check."""
    cfg = ThinkConfig()
    tokenizer = AutoTokenizer.from_pretrained(WEIGHTS_THINK_DIR / "generator")
    generator = AutoModelForCausalLM.from_pretrained(WEIGHTS_THINK_DIR / "generator", dtype=torch.float32).eval()
    problems = held_out_problems(cfg.eval_problems, difficulty=cfg.difficulty)
    greedy = sample_texts(generator, tokenizer, [p.question for p in problems], 1, 0.0, cfg.max_new_tokens, 64)
    accuracy = sum(grade_response(p, t[0]) for p, t in zip(problems, greedy)) / len(problems)
    first = sum(first_attempt_value(t[0]) == p.answer for p, t in zip(problems, greedy)) / len(problems)
    assert accuracy == pytest.approx(SHIPPED["greedy_accuracy"], abs=0.011)  # two problems of 200
    assert first == pytest.approx(SHIPPED["first_attempt_greedy_accuracy"], abs=0.011)

    def right_steps(problem):
        return Trajectory.from_response(problem.question, response_text(problem, thinking_steps(problem))).step_texts

    scorer = load_prm(str(WEIGHTS_THINK_DIR / "prm"), device="cpu", dtype="float32", batch_size=32)
    slips = slip_check(scorer, problems, seed=cfg.seed, steps_of=right_steps)
    assert slips == pytest.approx(SHIPPED["slip_below_twin"], abs=0.011)


@pytest.mark.parametrize("report", [SHIPPED, FRESH], ids=["held_out", "fresh"])
def test_it_thinks_longer_than_it_answers_and_checking_helps(report):
    assert 5 <= report["thinking_tokens"] / report["answer_tokens"] <= 20
    assert report["pass@1"] >= report["first_attempt_pass@1"] + 0.05  # the checks fix slips
    assert report["probe_follows_thinking"] >= 0.5  # a probe reads the value the cut thinking holds
    assert report["greedy_accuracy"] <= 0.9  # it errs: room for search
    assert report["first_error_step_auroc"] >= 0.7


@pytest.mark.parametrize("question, answer", [("Compute 1 + 2.", "3"), ("Compute 7 + 5 * 3 - 4.", "18")])
def test_a_newcomers_first_questions(question, answer):
    settings = Settings(generator={"model": "demo-think", "temperature": 0.0}, prm={"model": "demo-think"})
    with ReasoningSolver(settings) as solver:
        result = solver.solve(question, n=1)
    assert result.answer == answer and result.best.trajectory.thinking


def test_the_defaults_run_the_demo_think_world():
    """The default world is demo-think (benchmarks/first_contact.py: it answers 0.71 of a
    newcomer's first questions against the demo world's 0.35)."""
    with ReasoningSolver(Settings.load(n=4, generator=dict(seed=0))) as solver:
        result = solver.solve("Compute 2 + 3.")
    assert result.best is not None and result.best.trajectory.thinking and result.best.step_scores
    assert result.strategy_params["aggregation"] == "reasonflux"  # the demo-think PRM's own choice
    assert any(s.text.startswith("Wait") for s in result.best.trajectory.steps)
    assert result.usage.generated_tokens > 0 and result.usage.prm_tokens > 0
