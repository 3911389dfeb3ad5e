"""The demo world's training examples: problems outside the held-out set, padded language-model
batches, and PRM examples labelled step by step."""

from __future__ import annotations

import random

import torch

from rfprm_tts.chat import prompt_ids, to_messages
from rfprm_tts.demo.arithmetic import (
    Difficulty,
    Problem,
    digit_labels,
    grade,
    sample_problem,
)


def training_problems(rng: random.Random, difficulty: Difficulty, held_out: set[str]):
    while True:
        p = sample_problem(rng, difficulty)
        if p.question not in held_out:
            yield p


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def lm_batch(tokenizer, problems: list[Problem]) -> dict[str, torch.Tensor]:
    """Prompt + solution + EOS; the loss covers the solution and EOS only."""
    ids, labels = [], []
    for p in problems:
        prompt = prompt_ids(tokenizer, to_messages(p.question))
        answer = tokenizer(p.solution(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    input_ids = pad(ids, tokenizer.pad_token_id)
    return dict(
        input_ids=input_ids,
        attention_mask=(pad(labels, -100) != -100) | (input_ids != tokenizer.pad_token_id),
        labels=pad(labels, -100),
    )


def prm_example(tokenizer, problem: Problem, steps: list[str], kind: str = "digits") -> tuple[list[int], list[int]]:
    """PRM input ids (the ReasonFlux format) and a label per token (-100: none). "digits":
    every digit right or wrong (arithmetic.digit_labels); "first_error": 1 up to the first
    error, 0 at it, nothing after it."""
    if kind == "digits":
        labels = [-100 if label is None else label for label in digit_labels(problem, steps)]
    else:
        g = grade(problem, steps)
        n = sum(len(step) + 1 for step in steps)
        error = g.first_error_char if g.first_error_char is not None else n
        labels = [1 if i < error else 0 if i == error else -100 for i in range(n)]
    return labelled_example(tokenizer, problem.question, steps, labels)


def labelled_example(tokenizer, question: str, steps: list[str], labels: list[int]) -> tuple[list[int], list[int]]:
    """PRM input ids and a label per token from a label per character of the steps joined with
    one character between steps (the step tag's label; -100: none)."""
    tag = "<extra_0>"
    # Labels count one character per step tag; spread each tag's label over its characters, then
    # give every token the label of its first character (a token is usually one character, but a
    # stray byte decodes to a 3-byte character and "<think>" written out reads back as one token).
    by_char, at = [], 0
    for step in steps:
        by_char += labels[at : at + len(step)] + [labels[at + len(step)]] * len(tag)
        at += len(step) + 1
    content = tokenizer(tag.join(steps) + tag, add_special_tokens=False, return_offsets_mapping=True)
    token_labels = [by_char[start] for start, _ in content["offset_mapping"]]
    prompt = prompt_ids(tokenizer, to_messages(question))
    suffix = tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    return prompt + content["input_ids"] + suffix, [-100] * len(prompt) + token_labels + [-100] * len(suffix)
