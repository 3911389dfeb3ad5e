"""Train demo-draft: a draft model for the demo world's generator (speculative reasoning, issue #33).

    python -m rfprm_tts.demo.train --world draft --out rfprm_tts/demo/weights_draft
    python -m rfprm_tts.demo.train --world draft --smoke --out /tmp/draft     # a few steps, for CI

The demo world's language-model recipe (train.train_lm on right solutions, the same tokenizer
and chat template) at under a quarter of the generator's parameters: hidden 64, 4 layers, head
size 32 (vLLM's CPU attention needs >= 32). The draft is the last snapshot whose validation
greedy accuracy is at most `generator_max_greedy` (0.45, under the generator's 0.6): trained on,
this small model passes the generator (0.82 at step 4,000), since the generator is an early
snapshot on purpose, and a draft better than its target would leave the target nothing to do.
Real pairs (a 1.5B draft for a 7B target) have the draft clearly weaker. No PRM is trained:
speculative strategies judge the draft's steps with the demo world's PRM, and the report says
how well that PRM finds the draft's errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts.demo.quality import eval_problems, format_report, grade_samples, sample_texts, world_report
from rfprm_tts.demo.train import TrainConfig, finish, language_models, training_setup
from rfprm_tts.prm import load_prm
from rfprm_tts.runtime.model_names import resolve_model


@dataclass
class DraftConfig(TrainConfig):
    """TrainConfig with the draft's size and a longer, faster run (the demo generator has 1.08M
    parameters; this shape has 0.23M)."""

    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 2
    intermediate_size: int = 192
    lm_steps: int = 6000  # the schedule's length; the run stops at the first snapshot past the cap
    lm_lr: float = 3e-3
    snapshot_every: int = 250
    generator_max_greedy: float = 0.45  # weaker than the generator (0.6), as a real draft is
    prm_body: str = "generator"  # no PRM is trained: train_lm stops once the draft is chosen
    judge: str = "demo"  # the PRM the report scores the draft's samples with


DRAFT_SMOKE = dict(lm_steps=4, snapshot_every=2, val_problems=2, eval_problems=4, eval_n=2, lm_batch=4)


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def evaluate_draft(cfg: DraftConfig, out: Path, eval_set: str = "held_out") -> dict:
    """The draft's figures beside its target's: greedy accuracy, pass@1, oracle pass@n and
    majority@n, and how the judge PRM scores the draft's steps (first-error AUROC: does it catch
    the draft's mistakes, which is what a speculative step needs)."""
    tokenizer = AutoTokenizer.from_pretrained(out / "generator")
    draft = AutoModelForCausalLM.from_pretrained(out / "generator", dtype=torch.float32).eval()
    target = AutoModelForCausalLM.from_pretrained(resolve_model("demo", "generator"), dtype=torch.float32)
    scorer = load_prm(cfg.judge, device="cpu", dtype="float32", batch_size=64)
    # the fresh set: disjoint from the demo generator's training draws and the draft's
    demo = TrainConfig()
    lm_draws = max(demo.val_problems + demo.lm_steps * demo.lm_batch, cfg.val_problems + cfg.lm_steps * cfg.lm_batch)
    problems = eval_problems(cfg, eval_set, (lm_draws, demo.prm_problems))
    questions = [p.question for p in problems]
    torch.manual_seed(cfg.seed + 3)
    greedy = sample_texts(draft, tokenizer, questions, n=1, temperature=0.0)
    sampled = sample_texts(draft, tokenizer, questions, n=cfg.eval_n, temperature=cfg.temperature)
    report = world_report(
        [grade_samples(p, t) for p, t in zip(problems, greedy)],
        [grade_samples(p, t, scorer) for p, t in zip(problems, sampled)],
        cfg.eval_n,
    )
    report["eval_set"] = eval_set
    report["parameters"] = parameters(draft)
    report["target_parameters"] = parameters(target)
    report["parameter_ratio"] = round(report["parameters"] / report["target_parameters"], 3)
    return report


def format_draft_report(report: dict) -> str:
    head = (
        f"draft parameters {report['parameters']:,} ({report['parameter_ratio']:.3f} of the "
        f"generator's {report['target_parameters']:,}); PRM rows: the judge PRM on the draft's samples"
    )
    lines = format_report({**report, "slip_below_twin": float("nan")}).splitlines()
    return "\n".join([head, *(line for line in lines if "slip" not in line)])  # the slip check is the PRM's


def run(cfg: DraftConfig, args) -> None:
    """What `python -m rfprm_tts.demo.train --world draft` does (--out, --eval-only, --eval-set,
    --report, --set as for the demo world)."""
    started = time.time()
    if not args.eval_only:
        tokenizer, problems, _ = training_setup(cfg)
        language_models(cfg, args, tokenizer, problems)
    finish(evaluate_draft(cfg, args.out, args.eval_set), cfg, args, started, format_draft_report)
