"""Measuring the demo world: batched sampling, grading, and the metrics a search depends on.

The PRM is judged where a search uses it: within one problem (does it rank that problem's
right answers above its wrong ones?) and on steps up to the first error. A pooled step AUROC
is not reported: it rewards a PRM that only learned "later steps fail more".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from rfprm_tts.chat import render, to_messages
from rfprm_tts.demo.arithmetic import Problem, digit_slip, fresh_problems, grade, held_out_problems
from rfprm_tts.grading.equivalence import vote
from rfprm_tts.prm.aggregate import AGGREGATIONS, aggregate
from rfprm_tts.prm.evaluation import auroc
from rfprm_tts.text import extract_answer, split_steps


@torch.inference_mode()
def sample_texts(
    model,
    tokenizer,
    questions: Sequence[str],
    n: int,
    temperature: float,
    max_new_tokens: int = 160,
    prompts_per_batch: int = 16,
) -> list[list[str]]:
    """n sampled answers per question (greedy when temperature is 0), many questions per
    generate() call with left padding."""
    tokenizer.padding_side = "left"
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    texts: list[list[str]] = []
    for start in range(0, len(questions), prompts_per_batch):
        chunk = questions[start : start + prompts_per_batch]
        prompts = [render(tokenizer, to_messages(q)) for q in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        sample = temperature > 0
        out = model.generate(
            **enc,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=None,
            top_k=None,
            num_return_sequences=n,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
        )
        rows = out[:, enc["input_ids"].shape[1] :].tolist()
        for i in range(len(chunk)):
            answers = []
            for row in rows[i * n : (i + 1) * n]:
                end = next((j for j, t in enumerate(row) if t in (eos, pad)), len(row))
                answers.append(tokenizer.decode(row[:end], skip_special_tokens=True))
            texts.append(answers)
    return texts


@dataclass
class ProblemSamples:
    problem: Problem
    texts: list[str]
    steps: list[list[str]] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    step_correct: list[list[bool]] = field(default_factory=list)
    step_scores: list[list[float]] = field(default_factory=list)


def grade_samples(problem: Problem, texts: list[str], scorer=None) -> ProblemSamples:
    ps = ProblemSamples(problem, texts)
    for text in texts:
        steps = split_steps(text)
        g = grade(problem, steps)
        ps.steps.append(steps)
        ps.correct.append(g.answer_correct)
        ps.answers.append(extract_answer("\n\n".join(steps)))
        ps.step_correct.append(g.step_correct)
    if scorer is not None:
        ps.step_scores = scorer.score(problem.question, ps.steps)
    return ps


def world_report(greedy: Sequence[ProblemSamples], sampled: Sequence[ProblemSamples], n: int) -> dict:
    """Every quality figure of the demo world, from graded and PRM-scored samples."""
    truth = [str(ps.problem.answer) for ps in sampled]
    report: dict = {
        "problems": len(sampled),
        "n": n,
        "greedy_accuracy": _mean(ps.correct[0] for ps in greedy),
        "pass@1": _mean(c for ps in sampled for c in ps.correct),
        f"oracle_pass@{n}": _mean(any(ps.correct) for ps in sampled),
        f"majority@{n}": _mean(vote(ps.answers)[0] == t for ps, t in zip(sampled, truth)),
    }
    positives: list[float] = []
    negatives: list[float] = []
    for ps in sampled:
        for ok_steps, step_scores in zip(ps.step_correct, ps.step_scores):
            for ok, score in zip(ok_steps, step_scores):
                (positives if ok else negatives).append(score)
                if not ok:
                    break  # steps after the first error are not counted
    report["first_error_step_auroc"] = _mean([auroc(positives, negatives)] if positives and negatives else [])
    for method in AGGREGATIONS:
        within, best, weighted = [], [], []
        for ps, t in zip(sampled, truth):
            scores = [aggregate(s, method) for s in ps.step_scores]
            ranked = [float("-inf") if s is None else s for s in scores]
            value = auroc(
                [s for s, c in zip(ranked, ps.correct) if c], [s for s, c in zip(ranked, ps.correct) if not c]
            )
            if value is not None:
                within.append(value)
            top = max(range(len(ranked)), key=ranked.__getitem__)
            best.append(ps.answers[top] == t)
            weights = [max(s, 0.0) if s is not None else 0.0 for s in scores]
            weighted.append(vote(ps.answers, weights)[0] == t)
        report[method] = {
            "within_problem_auroc": _mean(within),
            f"best_of_n@{n}": _mean(best),
            f"weighted_best_of_n@{n}": _mean(weighted),
        }
    return report


# Scores this close are a tie: float32 rounding differs between batchings (a slipped twin scored
# in the same forward row as its right step, or in a row of its own) by about this much.
ROUNDING = 1e-6


def slip_check(
    scorer, problems: Sequence[Problem], seed: int = 0, steps_of: Callable[[Problem], list[str]] | None = None
) -> float:
    """How often the PRM scores a correct step with one result digit changed below the same
    step written right (same problem, same steps before it): does it check the arithmetic?
    `steps_of`: a problem's right steps (default: the demo world's solution)."""
    rng, lower = random.Random(seed), []
    for problem in problems:
        steps = steps_of(problem) if steps_of else split_steps(problem.solution())
        slipped = digit_slip(steps, rng)
        assert slipped is not None, "a problem's solution computes at least one step"
        k = len(slipped) - 1
        right, wrong = (scores[k] for scores in scorer.score(problem.question, [steps[: k + 1], slipped]))
        lower.append(wrong < right - ROUNDING)
    return _mean(lower)


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else float("nan")


def format_report(report: dict) -> str:
    n = report["n"]
    lines = [
        f"{report.get('eval_set', 'held_out').replace('_', '-')} problems: {report['problems']}, samples per problem: {n}",
        f"generator greedy accuracy      {report['greedy_accuracy']:.3f}",
        f"generator pass@1               {report['pass@1']:.3f}",
        f"oracle pass@{n:<3}                {report[f'oracle_pass@{n}']:.3f}",
        f"majority@{n:<3}                   {report[f'majority@{n}']:.3f}",
        f"PRM first-error step AUROC     {report['first_error_step_auroc']:.3f}",
        f"PRM: one-digit slip below twin {report['slip_below_twin']:.3f}",
        f"{'aggregation':<12} {'within-problem AUROC':>21} {'best_of_n':>10} {'weighted_bon':>13}",
    ]
    for method in AGGREGATIONS:
        r = report[method]
        lines.append(
            f"{method:<12} {r['within_problem_auroc']:>21.3f} {r[f'best_of_n@{n}']:>10.3f} "
            f"{r[f'weighted_best_of_n@{n}']:>13.3f}"
        )
    return "\n".join(lines)


def eval_problems(cfg, eval_set: str, training_draws: tuple[int, int] | None = None) -> list[Problem]:
    """A world's test set: the held-out problems, or the fresh ones (`eval_set` "fresh"),
    disjoint from `training_draws` of its training streams (default: the demo world's)."""
    if eval_set != "fresh":
        return held_out_problems(cfg.eval_problems, difficulty=cfg.difficulty)
    problems = partial(fresh_problems, cfg.eval_problems, difficulty=cfg.difficulty, train_seed=cfg.seed)
    return problems() if training_draws is None else problems(training_draws=training_draws)


def evaluate_world(cfg, out: Path, eval_set: str = "held_out") -> dict:
    """Reload both models from disk through the public loaders and measure them on the
    held-out set (what the recipes were chosen on) or the fresh set (never used for a choice)."""
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rfprm_tts.prm import load_prm

    tokenizer = AutoTokenizer.from_pretrained(out / "generator")
    generator = AutoModelForCausalLM.from_pretrained(out / "generator", dtype=torch.float32).eval()
    scorer = load_prm(str(out / "prm"), device="cpu", dtype="float32", batch_size=64)
    problems = eval_problems(cfg, eval_set)
    questions = [p.question for p in problems]
    torch.manual_seed(cfg.seed + 3)
    greedy = sample_texts(generator, tokenizer, questions, n=1, temperature=0.0)
    sampled = sample_texts(generator, tokenizer, questions, n=cfg.eval_n, temperature=cfg.temperature)
    graded_greedy = [grade_samples(p, t) for p, t in zip(problems, greedy)]
    graded = [grade_samples(p, t, scorer) for p, t in tqdm(list(zip(problems, sampled)), desc="PRM scoring")]
    report = world_report(graded_greedy, graded, cfg.eval_n)
    report["slip_below_twin"] = slip_check(scorer, problems, seed=cfg.seed)
    report["eval_set"] = eval_set
    return report
