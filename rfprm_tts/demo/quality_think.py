"""Measuring the demo-think world: the demo world's figures (rfprm_tts.demo.quality) on thinking
responses, and what the thinking does: its length, accuracy with the whole thinking against the
thinking cut after the first attempt, and what answer probes read from cut thinking.

A probe is what early exit does: the thinking cut at some character, thinking.PROBE appended,
and the model's greedy answer read. Probes go into one sampled response per problem (at the
world's temperature, where first attempts slip): cut after the first attempt, and cut at a
random character after the first computed line.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from rfprm_tts.chat import render, to_messages
from rfprm_tts.demo.arithmetic import Problem
from rfprm_tts.demo.quality import (
    ProblemSamples,
    _mean,
    eval_problems,
    format_report,
    sample_texts,
    slip_check,
    world_report,
)
from rfprm_tts.demo.thinking import (
    PROBE,
    THINK_CLOSE,
    first_attempt,
    first_attempt_value,
    grade_response,
    response_answer,
    response_text,
    step_verdicts,
    thinking_spans,
    thinking_steps,
    value_at,
)
from rfprm_tts.trajectory import Trajectory

PROBED = re.compile(r"\s*(-?\d+)\}")


def grade_think_samples(problem: Problem, texts: list[str], scorer=None) -> ProblemSamples:
    """Responses graded (the final answer; step verdicts from thinking.think_labels), their steps
    as Trajectory.from_response cuts them, and the PRM's step scores when a scorer is given."""
    ps = ProblemSamples(problem, texts)
    for text in texts:
        steps = Trajectory.from_response(problem.question, text).step_texts
        ps.steps.append(steps)
        ps.correct.append(grade_response(problem, text))
        ps.answers.append(response_answer(text))
        ps.step_correct.append(step_verdicts(problem, steps))
    if scorer is not None:
        ps.step_scores = scorer.score(problem.question, ps.steps)
    return ps


@torch.inference_mode()
def probe_answers(model, tokenizer, questions: Sequence[str], prefixes: Sequence[str], batch: int = 64) -> list:
    """The model's greedy answer after each response prefix + PROBE (None when it writes no
    number closed by "}")."""
    tokenizer.padding_side = "left"
    answers: list[str | None] = []
    for start in range(0, len(questions), batch):
        texts = [
            render(tokenizer, to_messages(q)) + prefix + PROBE
            for q, prefix in zip(questions[start : start + batch], prefixes[start : start + batch])
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=8,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            m = PROBED.match(tokenizer.decode(row, skip_special_tokens=True))
            answers.append(m[1] if m else None)
    return answers


def thinking_report(model, tokenizer, problems: Sequence[Problem], greedy, sampled, seed: int = 0) -> dict:
    """Length of thinking and answer, accuracy with the whole thinking against cut after the
    first attempt, and the probes (see the module's docstring)."""

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    texts = [t for ts in sampled for t in ts]
    parts = [t.split(THINK_CLOSE, 1) if THINK_CLOSE in t else [t, ""] for t in texts]
    report: dict = {
        "closed_thinking": _mean(THINK_CLOSE in t for t in texts),
        "thinking_tokens": _mean(
            tokens(thinking + THINK_CLOSE * (THINK_CLOSE in t)) for t, (thinking, _) in zip(texts, parts)
        ),
        "answer_tokens": _mean(tokens(answer.strip()) for _, answer in parts),
        "first_attempt_greedy_accuracy": _mean(
            first_attempt_value(ts[0]) == p.answer for p, ts in zip(problems, greedy)
        ),
        "first_attempt_pass@1": _mean(
            first_attempt_value(t) == p.answer for p, ts in zip(problems, sampled) for t in ts
        ),
    }
    # probes, into the first sample of every problem with a computed line in its thinking
    rng = random.Random(seed)
    rows = [(p, ts[0], first_attempt(ts[0])) for p, ts in zip(problems, sampled)]
    rows = [(p, text, lines) for p, text, lines in rows if lines]
    ends = [max(end for _, end in thinking_spans(text)) for _, text, _ in rows]
    cuts = [rng.randint(lines[0][1], end) for (_, _, lines), end in zip(rows, ends)]
    questions = [p.question for p, _, _ in rows]
    after_first = probe_answers(model, tokenizer, questions, [text[: lines[-1][1]] for _, text, lines in rows])
    at_random = probe_answers(model, tokenizer, questions, [text[:cut] for (_, text, _), cut in zip(rows, cuts)])
    report["probed_responses"] = len(rows)
    report["probed_full_thinking_accuracy"] = _mean(grade_response(p, text) for p, text, _ in rows)
    report["probe_after_first_attempt_accuracy"] = _mean(a == str(p.answer) for a, (p, _, _) in zip(after_first, rows))
    report["probe_settled"] = _mean(a == response_answer(text) for a, (_, text, _) in zip(at_random, rows))
    report["probe_follows_thinking"] = _mean(
        a == str(value_at(text, cut)) for a, (_, text, _), cut in zip(at_random, rows, cuts)
    )
    return report


def evaluate_think(cfg, out: Path, eval_set: str = "held_out") -> dict:
    """Reload both models from `out` through the public loaders and measure them on the held-out
    set (default) or the fresh set (arithmetic.fresh_problems with this world's training draws:
    never used for any choice)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rfprm_tts.prm import load_prm

    tokenizer = AutoTokenizer.from_pretrained(out / "generator")
    generator = AutoModelForCausalLM.from_pretrained(out / "generator", dtype=torch.float32).eval()
    scorer = load_prm(str(out / "prm"), device="cpu", dtype="float32", batch_size=32)
    problems = eval_problems(cfg, eval_set, (cfg.val_problems + cfg.lm_steps * cfg.lm_batch, cfg.prm_problems))
    questions = [p.question for p in problems]
    torch.manual_seed(cfg.seed + 3)
    greedy = sample_texts(generator, tokenizer, questions, 1, 0.0, cfg.max_new_tokens, 64)
    per_call = max(1, 128 // cfg.eval_n)  # 128 sequences a generate() call
    sampled = sample_texts(generator, tokenizer, questions, cfg.eval_n, cfg.temperature, cfg.max_new_tokens, per_call)
    graded_greedy = [grade_think_samples(p, t) for p, t in zip(problems, greedy)]
    graded = [grade_think_samples(p, t, scorer) for p, t in zip(problems, sampled)]
    report = world_report(graded_greedy, graded, cfg.eval_n)

    def right_steps(problem: Problem) -> list[str]:
        return Trajectory.from_response(problem.question, response_text(problem, thinking_steps(problem))).step_texts

    report["slip_below_twin"] = slip_check(scorer, problems, seed=cfg.seed, steps_of=right_steps)
    report.update(thinking_report(generator, tokenizer, problems, greedy, sampled, seed=cfg.seed))
    report["eval_set"] = eval_set
    report["mean_operations"] = _mean(len(p.ops) for p in problems)
    return report


def format_think_report(report: dict) -> str:
    lines = [
        format_report(report),
        f"thinking closed                {report['closed_thinking']:.3f}",
        f"mean thinking / answer tokens  {report['thinking_tokens']:.1f} / {report['answer_tokens']:.1f}",
        f"first attempt: greedy, pass@1  {report['first_attempt_greedy_accuracy']:.3f}, "
        f"{report['first_attempt_pass@1']:.3f} (whole thinking: {report['greedy_accuracy']:.3f}, "
        f"{report['pass@1']:.3f})",
        f"probed ({report['probed_responses']} samples): whole thinking {report['probed_full_thinking_accuracy']:.3f}, "
        f"probe after first attempt {report['probe_after_first_attempt_accuracy']:.3f}",
        f"probe at a random cut: = final answer {report['probe_settled']:.3f}, "
        f"= last completed value {report['probe_follows_thinking']:.3f}",
    ]
    return "\n".join(lines)
