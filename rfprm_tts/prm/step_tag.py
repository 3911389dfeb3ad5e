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

import torch

from rfprm_tts.chat import prm_messages, prompt_ids, render
from rfprm_tts.prm.base import BatchScorer, Forwarded
from rfprm_tts.torch_utils import length_batches, packed_rows, padding, right_pad, run_grouped


def step_tag_input(
    tokenizer, question: str, steps: Sequence[str], step_tag: str = "<extra_0>", system_prompt: str | None = None
) -> str:
    """The exact text a step-tag PRM reads for one trajectory (every scorer backend uses it)."""
    clean = [step.replace(step_tag, "") for step in steps]  # a stray tag would add a step
    answer = step_tag.join(clean) + step_tag
    return render(tokenizer, prm_messages(question, system_prompt, answer), open_turn=False)


def answer_start(tokenizer, question: str, system_prompt: str | None = None) -> int:
    """Tokens before the assistant's answer (the templated question and generation prompt)."""
    return len(prompt_ids(tokenizer, prm_messages(question, system_prompt)))


def checkpoint_readout(readout: str, config) -> str:
    """The read-out to use: the setting, or with "auto" the checkpoint's `rfprm_readout`
    (a token-level PRM such as the demo's says "token_min"), else ReasonFlux's "step_tag"."""
    return readout if readout != "auto" else getattr(config, "rfprm_readout", "step_tag")


def checkpoint_aggregation(config) -> str | None:
    """The aggregation the checkpoint was measured best with (`rfprm_aggregation`), if it
    names one: what prm.aggregation "auto" uses."""
    return getattr(config, "rfprm_aggregation", None)


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
    Subclasses provide `_rows`: one row per step tag ("step_tag") or per token ("token_min"),
    and the padding they ran."""

    step_tag: str
    step_tag_id: int
    readout: str
    system_prompt: str | None = None  # of the PRM input (prm.system_prompt)

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        text = step_tag_input(self.tokenizer, question, steps, self.step_tag, self.system_prompt)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def answer_start(self, question: str) -> int:
        return answer_start(self.tokenizer, question, self.system_prompt)

    def forward_inputs(self, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        rows, padded = self._rows(inputs)
        starts = {q: self.answer_start(q) if self.readout == "token_min" else 0 for q in set(questions)}
        scores = [self.read(rows_i, ids, starts[q]) for rows_i, ids, q in zip(rows, inputs, questions)]
        return Forwarded(scores, [len(ids) for ids in inputs], padded)

    def read(self, probabilities: Sequence[Sequence[float]], ids: Sequence[int], start: int) -> list[float]:
        """Step scores from one input's rows (tag rows, or every token's row for token_min)."""
        p_correct = [float(p[1]) for p in probabilities]
        if self.readout == "token_min":
            return token_min_scores(p_correct, ids, self.step_tag_id, start)
        return p_correct

    def _rows(self, batch: list[list[int]]) -> tuple[list[list[list[float]]], int]:
        raise NotImplementedError


class StepTagScorer(StepTagInputs):
    """The transformers implementation. Inputs are batched by length with a token budget
    (`batching="bucket"`: sorted, right-padded; the padding is reported), or packed end to
    end into one row with position ids restarting per input (`batching="pack"`: no padding;
    transformers masks attention per input, which is fast only with flash-attention's
    variable-length kernels). "auto" packs when the model runs flash-attention."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        step_tag_id: int,
        step_tag: str = "<extra_0>",
        batch_size: int = 64,
        max_batch_tokens: int = 16384,
        batching: str = "auto",
        max_length: int | None = None,
        readout: str = "step_tag",
        aggregation: str | None = None,
        overflow: str = "error",
        window_overlap: int = 2,
        system_prompt: str | None = None,
    ):
        self.model = model
        self.system_prompt = system_prompt
        self.tokenizer = tokenizer
        self.step_tag = step_tag
        self.step_tag_id = step_tag_id
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        if batching == "auto":
            attention = getattr(model.config, "_attn_implementation", "") or ""
            batching = "pack" if attention.startswith("flash") else "bucket"
        self.batching = batching
        self.max_length = max_length
        self.readout = readout
        self.aggregation = aggregation
        self.overflow = overflow
        self.window_overlap = window_overlap
        self.device = next(model.parameters()).device
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._lock = threading.Lock()

    def _rows(self, batch: list[list[int]]) -> tuple[list[list[list[float]]], int]:
        lengths = [len(ids) for ids in batch]
        if self.batching == "pack":
            groups, forward = packed_rows(lengths, self.max_batch_tokens), self._forward_packed
        else:
            groups, forward = length_batches(lengths, self.batch_size, self.max_batch_tokens), self._forward_padded
        with self._lock:
            rows = run_grouped(batch, groups, forward)
        return rows, 0 if self.batching == "pack" else padding(groups, lengths)

    def _keep(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Which positions' rows the read-out needs."""
        if self.readout == "step_tag":
            return input_ids == self.step_tag_id
        return torch.ones_like(input_ids, dtype=torch.bool)

    @torch.inference_mode()
    def _forward_padded(self, batch: list[list[int]]) -> list[list[list[float]]]:
        input_ids, attention_mask = right_pad(batch, self.pad_id, self.device)
        # No attention mask: padding sits right of every real token, so causal attention
        # already keeps it out of what is read, and the unmasked causal kernels are faster.
        probs = self.model(input_ids=input_ids, use_cache=False)[0].float().softmax(dim=-1)
        keep = self._keep(input_ids) & attention_mask.bool()
        return [probs[row][keep[row]].tolist() for row in range(len(batch))]

    @torch.inference_mode()
    def _forward_packed(self, batch: list[list[int]]) -> list[list[list[float]]]:
        input_ids = torch.tensor([[t for ids in batch for t in ids]], device=self.device)
        positions = torch.tensor([[p for ids in batch for p in range(len(ids))]], device=self.device)
        # no attention mask and no cache: transformers reads the restarting position ids as
        # packed inputs and masks attention per input
        probs = self.model(input_ids=input_ids, position_ids=positions, use_cache=False)[0][0].float().softmax(dim=-1)
        keep = self._keep(input_ids)[0]
        rows, offset = [], 0
        for ids in batch:
            span = slice(offset, offset + len(ids))
            rows.append(probs[span][keep[span]].tolist())
            offset += len(ids)
        return rows
