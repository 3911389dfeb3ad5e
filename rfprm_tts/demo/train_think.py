"""Train the demo-think world: the demo world's recipe (rfprm_tts.demo.train) on thinking traces.

    python -m rfprm_tts.demo.train --world think --out rfprm_tts/demo/weights_think
    python -m rfprm_tts.demo.train --world think --smoke --out /tmp/think     # a few steps, for CI

1. Language model. The demo world's run (train.train_lm, same model size) on the traces of
   rfprm_tts.demo.thinking: a first attempt that slips in `slip_rate` of them, check passes that
   are always right, a settling line, the answer. A share (`probe_share`) of the examples are
   probe examples instead: the thinking cut at a random character after its first computed line,
   closed ("</think>" after "\\n", "" or "\\n\\n"), and answered with the last value the cut
   thinking completed. Their loss is on the answer and EOS only, never on the forced close, so
   the model learns to answer when its thinking is cut, not to cut it. The generator is a
   snapshot that still errs, picked as the demo world picks it.
2. PRM data. The generator's samples, cut into steps as Trajectory.from_response cuts them (the
   thinking's paragraphs, then the answer), labelled per character by thinking.think_labels,
   each with a twin cut after a step whose result has one digit changed (`prm_slips`).
3. PRM. train.train_prm, the demo PRM's recipe, on those examples.
4. Report. rfprm_tts.demo.quality_think, on the held-out or the fresh set.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import partial

import torch

from rfprm_tts.chat import prompt_ids, to_messages
from rfprm_tts.demo.arithmetic import Difficulty, Problem, digit_slip, final_step
from rfprm_tts.demo.examples import labelled_example, pad
from rfprm_tts.demo.quality import sample_texts
from rfprm_tts.demo.quality_think import evaluate_think, format_think_report
from rfprm_tts.demo.thinking import (
    DIFFICULTY,
    THINK_CLOSE,
    grade_response,
    random_probe_cut,
    response_text,
    think_labels,
    thinking_steps,
)
from rfprm_tts.demo.train import TrainConfig, finish, language_models, save, train_prm, training_setup
from rfprm_tts.trajectory import Trajectory

JOINERS = ("\n", "", "\n\n")  # what a probe's close may follow: a line end, nothing, a step separator


@dataclass
class ThinkConfig(TrainConfig):
    """TrainConfig with the demo-think world's task and sizes (same model size as the demo's)."""

    difficulty: Difficulty = field(default_factory=lambda: DIFFICULTY)
    # share of training traces whose first attempt slips (the checks fix it): at half, copying the
    # first attempt into a check is right no more often than not, so checks learn to recompute
    slip_rate: float = 0.5
    probe_share: float = 0.2  # share of LM examples that are probe examples
    max_new_tokens: int = 384  # the longest response is about 300 tokens
    # From scratch, 1,500 steps left the model near 0.1 greedy: the arithmetic tokens are a small
    # share of a trace's loss. Starting from the demo world's generator (same tokenizer and shape),
    # it learns the format and the checks instead.
    lm_init: str = "demo"
    lm_lr: float = 1e-3
    lm_steps: int = 1500
    generator_max_greedy: float = 0.7
    prm_aggregation: str = "reasonflux"  # weighted voting on held-out: 0.645 (prod 0.535; report.json)
    snapshot_every: int = 250
    val_problems: int = 64
    prm_problems: int = 500
    prm_full_steps: int = 2000
    prm_batch: int = 16


THINK_SMOKE = dict(max_new_tokens=48)  # with train.SMOKE


def lm_example(tokenizer, problem: Problem, rng: random.Random, cfg: ThinkConfig) -> tuple[list[int], list[int]]:
    """Prompt + a whole trace + EOS (loss on the trace and EOS), or, in `probe_share` of the
    examples, prompt + thinking cut by thinking.random_probe_cut + a forced close + the answer
    the cut thinking gives + EOS (loss on the answer and EOS only)."""
    prompt = prompt_ids(tokenizer, to_messages(problem.question))
    steps = thinking_steps(problem, rng, cfg.slip_rate)
    if rng.random() < cfg.probe_share:
        cut, value = random_probe_cut(steps, rng)
        context, target = f"{cut}{rng.choice(JOINERS)}{THINK_CLOSE}\n\n", final_step(value)
    else:
        context, target = "", response_text(problem, steps)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + context_ids + target_ids, [-100] * (len(prompt) + len(context_ids)) + target_ids


def lm_batch(tokenizer, problems: list[Problem], rng: random.Random, cfg: ThinkConfig) -> dict[str, torch.Tensor]:
    rows = [lm_example(tokenizer, p, rng, cfg) for p in problems]
    input_ids, labels = pad([ids for ids, _ in rows], tokenizer.pad_token_id), pad([lab for _, lab in rows], -100)
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for i, (ids, _) in enumerate(rows):
        mask[i, : len(ids)] = True
    return dict(input_ids=input_ids, attention_mask=mask, labels=labels)


def greedy_accuracy(model, tokenizer, problems: list[Problem], max_new_tokens: int) -> float:
    texts = sample_texts(model.eval(), tokenizer, [p.question for p in problems], 1, 0.0, max_new_tokens, 64)
    model.train()
    return sum(grade_response(p, t[0]) for p, t in zip(problems, texts)) / len(problems)


def prm_examples(tokenizer, problems: list[Problem], texts: list[list[str]], cfg: ThinkConfig):
    """PRM examples (ids, token labels) from sampled responses and their digit-slip twins."""
    answers = [(p, Trajectory.from_response(p.question, t).step_texts) for p, ts in zip(problems, texts) for t in ts]
    rng = random.Random(cfg.seed + 4)
    slips = [(p, slip) for p, steps in answers if rng.random() < cfg.prm_slips and (slip := digit_slip(steps, rng))]
    examples = []
    for p, steps in answers + slips:
        labels = [-100 if label is None else label for label in think_labels(p, steps)]
        if steps and any(label != -100 for label in labels):
            examples.append(labelled_example(tokenizer, p.question, steps, labels))
    right = sum(grade_response(p, t) for p, ts in zip(problems, texts) for t in ts)
    print(
        f"PRM data: {len(answers)} sampled answers, {right / max(1, len(answers)):.1%} with a right answer, "
        f"{len(slips)} digit-slip twins"
    )
    return examples


def run(cfg: ThinkConfig, args) -> None:
    """What `python -m rfprm_tts.demo.train --world think` does (its options as for the demo)."""
    started = time.time()

    def elapsed(what: str) -> None:
        print(f"[{(time.time() - started) / 60:.1f} min] {what}", flush=True)

    if not args.eval_only:
        tokenizer, problems, prm_problems = training_setup(cfg)
        rng = random.Random(cfg.seed + 5)
        generator, language_model = language_models(
            cfg,
            args,
            tokenizer,
            problems,
            make_batch=lambda tok, ps: lm_batch(tok, ps, rng, cfg),
            accuracy=partial(greedy_accuracy, max_new_tokens=cfg.max_new_tokens),
            max_new_tokens=cfg.max_new_tokens,
        )
        elapsed("language model done")
        torch.manual_seed(cfg.seed + 1)
        questions = [p.question for p in prm_problems]
        texts = sample_texts(generator, tokenizer, questions, cfg.prm_samples, cfg.temperature, cfg.max_new_tokens)
        elapsed("PRM data sampled")
        examples = prm_examples(tokenizer, prm_problems, texts, cfg)
        prm = train_prm(cfg, tokenizer, generator if cfg.prm_body == "generator" else language_model, examples)
        save(prm, tokenizer, args.out / "prm")
        elapsed("PRM done")
    finish(evaluate_think(cfg, args.out, args.eval_set), cfg, args, started, format_think_report)
