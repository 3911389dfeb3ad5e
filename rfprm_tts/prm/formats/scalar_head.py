"""The ReasonFlux-PRM-1.5B format: a causal LM plus a `Linear(hidden, 1)` reward head stored
separately in `reward_head.pt`.

Input is the raw string question + completion (no chat template, no step tags); the reward is
sigmoid(head(hidden state of the last real token)), one scalar per trajectory. Through the
scorer protocol it comes back as a single final score: `[[r], [r], ...]`. The completion is the
steps joined by the step separator (`"\\n\\n"` unless given).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence

import torch
from torch import nn

from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.models.heads import ScalarHeadModel
from rfprm_tts.prm.protocol import RowKind, Rows
from rfprm_tts.prm.registry import FormatSpec, register_format
from rfprm_tts.text import DEFAULT_STEP_SEPARATOR

REWARD_HEAD_FILE = "reward_head.pt"


def load_reward_head(path: str, hidden_size: int) -> nn.Linear:
    """The head from `reward_head.pt`: a state dict (weight [1, h], bias [1]) or a saved Linear."""
    if not os.path.isfile(path):
        raise PRMLoadError(
            f"{path} is missing: the scalar_head format (ReasonFlux-PRM-1.5B) reads its reward head from it; copy "
            "the checkpoint's reward_head.pt there, or set prm.format to the checkpoint's format"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise PRMLoadError(f"{path} cannot be read ({exc}): truncated or corrupt; download it again") from None
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


class ScalarHeadFormat:
    """Raw question + completion in, one score out (the last token's)."""

    rows: RowKind = "last"
    tag_id = None
    one_score = True
    prefix_reuse = False
    partial_ok = True

    def __init__(self, tokenizer, separator: str = DEFAULT_STEP_SEPARATOR):
        self.tokenizer = tokenizer
        self.separator = separator

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        return self.tokenizer(question + self.separator.join(steps), add_special_tokens=False)["input_ids"]

    def answer_start(self, question: str) -> int:
        return 0

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]:
        return [float(rows[-1][0])]

    def cuts(self, ids: Sequence[int], start: int) -> list[int]:
        raise NotImplementedError("the scalar-head format reads one score per trajectory: no prefix reuse")


def _build(settings, path: str, config, tokenizer) -> ScalarHeadFormat:
    return ScalarHeadFormat(tokenizer)


def _load_model(settings, path: str, config, device, dtype, fmt) -> ScalarHeadModel:
    from transformers import AutoModel

    from rfprm_tts.runtime.torch_utils import load_checked

    body = (
        load_checked(  # the decoder alone: the reward head is read below, the language-model head is unused
            AutoModel.from_pretrained,
            path,
            "prm",
            unused=("lm_head.",),
            dtype=dtype,
            **settings.model_options(),
        )
        .to(device)
        .eval()
    )
    head = load_reward_head(os.path.join(path, REWARD_HEAD_FILE), config.hidden_size).to(dtype)
    return ScalarHeadModel(body, head).eval()


register_format(
    FormatSpec(
        "scalar_head",
        _build,
        _load_model,
        detect=lambda path, config: os.path.isfile(os.path.join(path, REWARD_HEAD_FILE)),
    )
)
