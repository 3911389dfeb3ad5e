"""demo-draft, the bundled draft for the demo world's generator (issue #33): under a quarter of
its size, loadable by name as a generator and as a draft, its report what the weights measure,
and a speculative solve on the bundled models lets it write steps the demo PRM accepts."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.demo.paths import WEIGHTS_DRAFT_DIR
from rfprm_tts.demo.quality import grade_samples, sample_texts
from rfprm_tts.demo.train import main as train_main
from rfprm_tts.demo.train_draft import DraftConfig
from rfprm_tts.errors import ConfigError
from rfprm_tts.prm import load_prm
from rfprm_tts.runtime.model_names import resolve_model

SHIPPED = json.loads((WEIGHTS_DRAFT_DIR / "report.json").read_text())
README = (Path(__file__).resolve().parents[2] / "rfprm_tts" / "demo" / "README.md").read_text()


def load(name: str):
    return AutoModelForCausalLM.from_pretrained(resolve_model(name, "generator"), dtype=torch.float32).eval()


def test_the_draft_is_a_quarter_of_the_generator_or_less():
    def size(model) -> int:
        return sum(p.numel() for p in model.parameters())

    assert size(load("demo-draft")) <= size(load("demo")) / 4
    assert AutoTokenizer.from_pretrained(resolve_model("demo-draft", "generator")).get_vocab() == (
        AutoTokenizer.from_pretrained(resolve_model("demo", "generator")).get_vocab()
    )


def test_the_weights_give_the_reports_greedy_accuracy_and_it_is_below_the_generators():
    """Greedy answers re-measured on the report's 200 held-out problems (a few seconds)."""
    cfg = DraftConfig()
    problems = held_out_problems(cfg.eval_problems, difficulty=cfg.difficulty)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("demo-draft", "generator"))
    greedy = sample_texts(load("demo-draft"), tokenizer, [p.question for p in problems], n=1, temperature=0.0)
    accuracy = sum(grade_samples(p, t).correct[0] for p, t in zip(problems, greedy)) / len(problems)
    assert accuracy == pytest.approx(SHIPPED["greedy_accuracy"], abs=0.011)  # two problems of 200
    target = json.loads((WEIGHTS_DRAFT_DIR.parent / "weights" / "report.json").read_text())
    assert 0.2 <= accuracy < target["greedy_accuracy"]  # useful, and cheaper for a reason


def test_the_demo_readme_quotes_the_drafts_report():
    section = README.split("## demo-draft", 1)[1]
    assert f"{SHIPPED['greedy_accuracy']:.3f}" in section and f"{SHIPPED['pass@1']:.3f}" in section
    assert f"{SHIPPED['parameters']:,}" in section and f"{SHIPPED['first_error_step_auroc']:.3f}" in section


def test_a_speculative_solve_on_the_bundled_models_takes_draft_steps():
    settings = Settings(
        n=1,
        strategy="speculative_steps",
        strategy_params={"threshold": 0.5},
        generator={"model": "demo", "temperature": 0.0},
        draft={"model": "demo-draft", "temperature": 0.0},
        prm={"model": "demo"},
    )
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 7 + 5 * 3 - 4.")
    assert "draft" in result.best.step_models and result.details["accepted"] >= 1
    usage = result.usage
    assert usage.draft_generated_tokens > 0 and usage.draft_flops is not None and usage.generator_flops is not None
    # FLOPs per token read or written follow each model's size: the draft's are under a quarter
    per_draft_token = usage.draft_flops / (usage.draft_prompt_tokens + usage.draft_generated_tokens)
    assert per_draft_token <= usage.generator_flops / (usage.prompt_tokens + usage.generated_tokens) / 4


def test_demo_draft_is_no_prm():
    with pytest.raises(ConfigError, match="demo-draft is a draft generator and has no PRM; judge its steps with"):
        load_prm("demo-draft")


def test_training_script_smoke(tmp_path):
    train_main(["--world", "draft", "--smoke", "--out", str(tmp_path / "draft")])
    report = json.loads((tmp_path / "draft" / "report.json").read_text())
    assert (tmp_path / "draft" / "generator" / "model.safetensors").exists()
    assert not (tmp_path / "draft" / "prm").exists()  # the demo world's PRM judges the draft
    assert 0 < report["parameter_ratio"] <= 0.25 and report["train_config"]["hidden_size"] == 64


def test_measuring_a_folder_with_no_models_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_main(["--world", "draft", "--eval-only", "--out", str(tmp_path / "nothing")])
    assert stopped.value.code == 2 and "holds none; give the folder a run wrote" in capsys.readouterr().err
