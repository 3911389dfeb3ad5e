"""The ReasonFlux-PRM-1.5B format: a causal LM plus a `Linear(hidden, 1)` reward head stored
separately in `reward_head.pt`.

Input is the raw string question + completion (no chat template, no step tags); the reward is
sigmoid(head(hidden state of the last real token)), one scalar per trajectory. Through the
scorer protocol it comes back as a single final score: `[[r], [r], ...]`. The completion is the
steps joined by the step separator (`"\\n\\n"` unless given).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import nn

from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.base import BatchScorer, Forwarded
from rfprm_tts.text import DEFAULT_STEP_SEPARATOR
from rfprm_tts.torch_utils import length_batches, padding, right_pad, run_grouped

REWARD_HEAD_FILE = "reward_head.pt"


def load_reward_head(path: str, hidden_size: int) -> nn.Linear:
    """The head from `reward_head.pt`: a state dict (weight [1, h], bias [1]) or a saved Linear."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    head = nn.Linear(hidden_size, 1)
    try:
        head.load_state_dict({k.split(".")[-1]: v for k, v in state.items()})
    except (RuntimeError, AttributeError) as exc:
        raise PRMLoadError(
            f"{path} is not a Linear({hidden_size}, 1) reward head (ReasonFlux-PRM-1.5B format): {exc}"
        ) from exc
    return head


class ScalarHeadScorer(BatchScorer):
    one_score = True

    def __init__(
        self,
        body: nn.Module,
        head: nn.Linear,
        tokenizer,
        *,
        separator: str = DEFAULT_STEP_SEPARATOR,
        batch_size: int = 64,
        max_batch_tokens: int = 16384,
        max_length: int | None = None,
        overflow: str = "error",
    ):
        self.body, self.head, self.tokenizer = body, head, tokenizer
        self.separator = separator
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_length = max_length
        self.overflow = overflow
        self.device = next(body.parameters()).device
        self.head.to(self.device)
        self.num_parameters = sum(p.numel() for p in body.parameters()) + sum(p.numel() for p in head.parameters())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._lock = threading.Lock()

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        return self.tokenizer(question + self.separator.join(steps), add_special_tokens=False)["input_ids"]

    def forward_inputs(self, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        lengths = [len(ids) for ids in inputs]
        batches = length_batches(lengths, self.batch_size, self.max_batch_tokens)
        with self._lock:
            rewards = run_grouped(inputs, batches, self._forward)
        return Forwarded([[reward] for reward in rewards], lengths, padding(batches, lengths))

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[float]:
        input_ids, _ = right_pad(batch, self.pad_id, self.device)
        # right padding: causal attention keeps it out of every real token, no mask needed
        hidden = self.body(input_ids=input_ids, use_cache=False)[0]
        last = torch.stack([hidden[row, len(ids) - 1] for row, ids in enumerate(batch)])
        return torch.sigmoid(self.head(last.to(self.head.weight.dtype)).float()).squeeze(-1).tolist()
