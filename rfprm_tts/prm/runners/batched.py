"""The transformers runner: a model's outputs for many inputs, batched.

Inputs are batched by length with a token budget (`batching="bucket"`: sorted, right-padded;
the padding is reported), or packed end to end into one row with position ids restarting per
input (`batching="pack"`: no padding; transformers masks attention per input, which is fast
with flash-attention's variable-length kernels or FlexAttention's block-sparse mask, and slow
with sdpa, which gets a dense mask). "auto" packs when the model runs flash or flex attention.
The model is any module mapping input ids to per-token logits (a 2-label PRM head: softmax; a
1-logit reward head: sigmoid).
"""

from __future__ import annotations

import threading

import torch

from rfprm_tts.errors import RfprmError
from rfprm_tts.prm.protocol import Forwarded, InputFormat, Rows, positions
from rfprm_tts.runtime.torch_utils import length_batches, packed_rows, padding, right_pad, run_grouped


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-token outputs as probabilities: softmax over labels, or sigmoid of a single logit."""
    logits = logits.float()
    return logits.sigmoid() if logits.shape[-1] == 1 else logits.softmax(dim=-1)


def attention_of(model: torch.nn.Module) -> str:
    """The transformers attention implementation a model runs ("" for a module without a config)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", "") or ""


class TransformersRunner:
    def __init__(
        self,
        model: torch.nn.Module,
        *,
        batch_size: int = 64,
        max_batch_tokens: int = 16384,
        batching: str = "auto",
        pad_id: int = 0,
    ):
        self.model: torch.nn.Module | None = model  # None once closed
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        if batching == "auto":
            attention = attention_of(model)
            batching = "pack" if attention.startswith("flash") or attention == "flex_attention" else "bucket"
        self.batching = batching
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self._lock = threading.Lock()  # one forward pass at a time: it already uses every core

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        starts = {q: fmt.answer_start(q) for q in set(questions)}
        wanted = [positions(fmt, ids, starts[q]) for q, ids in zip(questions, inputs)]
        jobs = list(zip(inputs, wanted))
        lengths = [len(ids) for ids in inputs]
        if self.batching == "pack":
            groups, forward = packed_rows(lengths, self.max_batch_tokens), self._forward_packed
        else:
            groups, forward = length_batches(lengths, self.batch_size, self.max_batch_tokens), self._forward_padded
        with self._lock:
            rows = run_grouped(jobs, groups, forward)
        return Forwarded(rows, lengths, 0 if self.batching == "pack" else padding(groups, lengths))

    def _loaded_model(self) -> torch.nn.Module:
        if self.model is None:
            raise RfprmError("this PRM runner is closed")
        return self.model

    @torch.inference_mode()
    def _forward_padded(self, jobs: list[tuple[list[int], list[int]]]) -> list[Rows]:
        input_ids, _ = right_pad([ids for ids, _ in jobs], self.pad_id, self.device)
        # No attention mask: padding sits right of every real token, so causal attention
        # already keeps it out of what is read, and the unmasked causal kernels are faster.
        probs = probabilities(self._loaded_model()(input_ids=input_ids, use_cache=False)[0])
        return [probs[row, list(wanted)].tolist() for row, (_, wanted) in enumerate(jobs)]

    @torch.inference_mode()
    def _forward_packed(self, jobs: list[tuple[list[int], list[int]]]) -> list[Rows]:
        input_ids = torch.tensor([[t for ids, _ in jobs for t in ids]], device=self.device)
        position_ids = torch.tensor([[p for ids, _ in jobs for p in range(len(ids))]], device=self.device)
        # no attention mask and no cache: transformers reads the restarting position ids as
        # packed inputs and masks attention per input
        model = self._loaded_model()
        probs = probabilities(model(input_ids=input_ids, position_ids=position_ids, use_cache=False)[0][0])
        rows, offset = [], 0
        for ids, wanted in jobs:
            rows.append(probs[[offset + p for p in wanted]].tolist())
            offset += len(ids)
        return rows

    def close(self) -> None:
        """Free the model's memory (the solver closes what it built)."""
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
