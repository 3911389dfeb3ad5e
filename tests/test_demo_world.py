"""The bundled demo world: loads through the public loaders, errs like a model, and its PRM
separates correct steps from first errors. Figures here are floors on a small fixed sample,
below what the full report (rfprm_tts/demo/weights/report.json) measured on 200 problems."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.model_names import resolve_model
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.demo.quality import grade_samples, sample_texts, slip_check, world_report
from rfprm_tts.demo.train import main as train_main
from rfprm_tts.demo.train import prm_example
from rfprm_tts.prm import load_prm


@pytest.fixture(scope="module")
def prm():
    return load_prm("demo", device="cpu")


@pytest.fixture(scope="module")
def measured(prm):
    """Greedy and 8 sampled answers to 48 held-out problems, graded and PRM-scored."""
    path = resolve_model("demo", "generator")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    problems = held_out_problems()[:48]
    questions = [p.question for p in problems]
    torch.manual_seed(0)
    greedy = sample_texts(model, tokenizer, questions, n=1, temperature=0.0)
    sampled = sample_texts(model, tokenizer, questions, n=8, temperature=1.0)
    return world_report(
        [grade_samples(p, t) for p, t in zip(problems, greedy)],
        [grade_samples(p, t, prm) for p, t in zip(problems, sampled)],
        n=8,
    )


def test_generator_errs_but_can_solve(measured):
    # measured on this sample: greedy 0.688, pass@1 0.523, oracle pass@8 0.750
    assert 0.5 <= measured["greedy_accuracy"] <= 0.85
    assert measured["oracle_pass@8"] >= 0.7
    assert measured["pass@1"] < measured["oracle_pass@8"] - 0.1


def test_prm_floors(measured):
    # measured on this sample: first-error step AUROC 0.940; within-problem AUROC 0.790
    # (reasonflux aggregation); weighted_best_of_n@8 0.667 (prod) vs majority@8 0.625
    assert measured["first_error_step_auroc"] >= 0.85
    assert measured["reasonflux"]["within_problem_auroc"] >= 0.7
    assert measured["prod"]["weighted_best_of_n@8"] >= measured["majority@8"]


def test_prm_reads_token_level_and_keeps_the_step_tag_format(prm):
    assert prm.readout == "token_min"
    problem = held_out_problems()[0]
    steps = problem.solution().split("\n\n")
    scores = prm.score(problem.question, [steps])[0]
    assert len(scores) == len(steps) and all(0.0 <= s <= 1.0 for s in scores)


def test_default_solve_runs_the_demo_world():
    with ReasoningSolver(Settings.load(n=4, generator=dict(seed=0))) as solver:
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


def test_prm_catches_a_one_digit_slip_against_its_right_twin(prm):
    # measured on these 64 pairs: 0.844 (0.840 on all 200 held-out problems)
    assert slip_check(prm, held_out_problems()[:64], seed=0) >= 0.75


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
