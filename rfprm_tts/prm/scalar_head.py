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
from rfprm_tts.prm.base import BatchScorer, ScoredBatch
from rfprm_tts.text import DEFAULT_STEP_SEPARATOR
from rfprm_tts.torch_utils import by_length, right_pad

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
    def __init__(
        self,
        body: nn.Module,
        head: nn.Linear,
        tokenizer,
        *,
        separator: str = DEFAULT_STEP_SEPARATOR,
        batch_size: int = 8,
        max_length: int | None = None,
    ):
        self.body, self.head, self.tokenizer = body, head, tokenizer
        self.separator = separator
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = next(body.parameters()).device
        self.head.to(self.device)
        self.num_parameters = sum(p.numel() for p in body.parameters()) + sum(p.numel() for p in head.parameters())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._lock = threading.Lock()

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        text = question + self.separator.join(steps)
        return self.fits(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        encoded = [self.encode(question, steps) if steps else [] for steps in trajectories]
        todo = [i for i, ids in enumerate(encoded) if ids]
        with self._lock:
            rewards = by_length([encoded[i] for i in todo], self.batch_size, self._forward) if todo else []
        scores: list[list[float]] = [[] for _ in trajectories]
        for i, reward in zip(todo, rewards):
            scores[i] = [reward]
        return ScoredBatch(step_scores=scores, tokens=sum(len(ids) for ids in encoded))

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[float]:
        input_ids, attention_mask = right_pad(batch, self.pad_id, self.device)
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask)[0]
        last = torch.stack([hidden[row, len(ids) - 1] for row, ids in enumerate(batch)])
        return torch.sigmoid(self.head(last.to(self.head.weight.dtype)).float()).squeeze(-1).tolist()
