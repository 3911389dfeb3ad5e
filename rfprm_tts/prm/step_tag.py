"""Scoring with a step-tag PRM on transformers: ReasonFlux-PRM-7B, Qwen2.5-Math-PRM-7B/72B.

The recipe of those checkpoints: the question as the user turn, the steps joined and ended by
the step tag (`<extra_0>`) as the assistant turn, the chat template's default system prompt,
no generation prompt; a step's reward is P(class 1) = softmax(logits)[1] at its tag. Tag
positions are indexed directly (the upstream helper's mask-and-drop-zeros breaks when a
probability underflows to 0). The decoder is causal, so a step's score depends only on what
precedes it.

A token-level PRM (readout "token_min", e.g. the demo PRM) is read on the same input: a
step's score is the min of P(class 1) over the step's tokens and its tag.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

from rfprm_tts.errors import RfprmError
from rfprm_tts.prm.base import BatchScorer, ScoredBatch
from rfprm_tts.torch_utils import by_length, right_pad


def step_tag_input(tokenizer, question: str, steps: Sequence[str], step_tag: str = "<extra_0>") -> str:
    """The exact text a step-tag PRM reads for one trajectory (every scorer backend uses it)."""
    clean = [step.replace(step_tag, "") for step in steps]  # a stray tag would add a step
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": step_tag.join(clean) + step_tag},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def answer_start(tokenizer, question: str) -> int:
    """Tokens before the assistant's answer (the templated question and generation prompt)."""
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_min_scores(p_correct: Sequence[float], ids: Sequence[int], tag_id: int, start: int) -> list[float]:
    """Token-level read-out: each step's score is the min of P(correct) over its tokens and
    its closing tag; the first step starts at `start`, the first token of the answer."""
    scores, begin = [], start
    for position, token in enumerate(ids):
        if token == tag_id and position >= start:
            scores.append(min(p_correct[begin : position + 1]))
            begin = position + 1
    return scores


class StepTagInputs(BatchScorer):
    """What every step-tag scorer shares: building and tokenizing the PRM input, and turning
    the model's [P(incorrect), P(correct)] rows into step scores for either read-out.
    Subclasses provide `_rows`: one row per step tag ("step_tag") or per token ("token_min")."""

    tokenizer: Any
    step_tag: str
    step_tag_id: int
    readout: str
    max_length: int | None

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        text = step_tag_input(self.tokenizer, question, steps, self.step_tag)
        return self.fits(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        encoded = [self.encode(question, steps) if steps else [] for steps in trajectories]
        todo = [i for i, ids in enumerate(encoded) if ids]
        rows = self._rows([encoded[i] for i in todo]) if todo else []
        start = answer_start(self.tokenizer, question) if self.readout == "token_min" else 0
        scores: list[list[float]] = [[] for _ in trajectories]
        for i, probabilities in zip(todo, rows):
            p_correct = [float(p[1]) for p in probabilities]
            if self.readout == "token_min":
                p_correct = token_min_scores(p_correct, encoded[i], self.step_tag_id, start)
            if len(p_correct) != len(trajectories[i]):
                raise RfprmError(
                    f"the PRM gave {len(p_correct)} step scores for {len(trajectories[i])} steps: "
                    f"{self.step_tag!r} must be one token (and, on a vLLM server, its step_tag_id)"
                )
            scores[i] = p_correct
        return ScoredBatch(step_scores=scores, tokens=sum(len(ids) for ids in encoded))

    def _rows(self, batch: list[list[int]]) -> list[list[list[float]]]:
        raise NotImplementedError


class StepTagScorer(StepTagInputs):
    """The transformers implementation: batches of similar length (sorted, little padding)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        step_tag_id: int,
        step_tag: str = "<extra_0>",
        batch_size: int = 8,
        max_length: int | None = None,
        readout: str = "step_tag",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.step_tag = step_tag
        self.step_tag_id = step_tag_id
        self.batch_size = batch_size
        self.max_length = max_length
        self.readout = readout
        self.device = next(model.parameters()).device
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._lock = threading.Lock()

    def _rows(self, batch: list[list[int]]) -> list[list[list[float]]]:
        with self._lock:
            return by_length(batch, self.batch_size, self._forward)

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[list[list[float]]]:
        input_ids, attention_mask = right_pad(batch, self.pad_id, self.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
        probs = logits.float().softmax(dim=-1)
        keep = (input_ids == self.step_tag_id) if self.readout == "step_tag" else torch.ones_like(input_ids, dtype=torch.bool)
        keep &= attention_mask.bool()
        return [probs[row][keep[row]].tolist() for row in range(len(batch))]
