"""The Skywork-o1-Open-PRM format (Qwen2.5-Math body + value head, architecture
"Qwen2ForPrmModel").

The recipe of Skywork's inference code: BOS + question + "\\n", then each step's tokens
followed by the step token ("\\n"), every piece encoded on its own; a step's score is the
sigmoid of the value head at its step token. Skywork splits a response at every step token,
so one of our steps is one line: a step's own line breaks become spaces (its score is read
once, at its end). The loader reads the checkpoint's weight names itself: the decoder under
`model.*`, the head at `v_head.summary.{weight,bias}` (the language-model head is unused).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence

import torch

from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.protocol import RowKind, Rows
from rfprm_tts.prm.registry import FormatSpec, register_format

ARCHITECTURE = "Qwen2ForPrmModel"
HEAD_KEYS = ("v_head.summary.weight", "v_head.summary.bias")


class SkyworkFormat:
    rows: RowKind = "tags"
    one_score = False
    prefix_reuse = True
    partial_ok = True

    def __init__(self, tokenizer, step_token: str = "\n"):
        self.tokenizer = tokenizer
        self.step_token = step_token
        self.tag_id = tokenizer.encode(step_token)[-1]
        # every scorer call asks for each question's prompt: encode it once
        self._prompt = functools.lru_cache(maxsize=4096)(self._prompt_ids)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _prompt_ids(self, question: str) -> tuple[int, ...]:
        return tuple(self._encode((self.tokenizer.bos_token or "") + question + "\n"))

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        ids = list(self._prompt(question))
        for step in steps:
            ids += [*self._encode(step.replace(self.step_token, " ")), self.tag_id]  # one line per step
        return ids

    def answer_start(self, question: str) -> int:
        return len(self._prompt(question))

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]:
        return [float(p[0]) for p in rows]  # sigmoid of the value head

    def cuts(self, ids: Sequence[int], start: int) -> list[int]:
        return [start] + [p + 1 for p in range(start, len(ids)) if ids[p] == self.tag_id]


def load_value_head(path: str, hidden_size: int) -> torch.nn.Linear:
    """`v_head.summary` from the checkpoint's safetensors (one file or an index of shards)."""
    from safetensors import safe_open

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as index_file:
            weight_map = json.load(index_file)["weight_map"]
        files = {key: os.path.join(path, weight_map[key]) for key in HEAD_KEYS if key in weight_map}
    else:
        files = {key: os.path.join(path, "model.safetensors") for key in HEAD_KEYS}
    tensors = {}
    for key, file in files.items():
        if os.path.isfile(file):
            with safe_open(file, framework="pt") as f:
                if key in f.keys():  # noqa: SIM118 (safe_open is no mapping: it has keys() but no `in`)
                    tensors[key] = f.get_tensor(key)
    if set(tensors) != set(HEAD_KEYS):
        raise PRMLoadError(
            f"{path!r} has no value head ({', '.join(HEAD_KEYS)} in its safetensors): not a Skywork-o1-Open-PRM "
            "checkpoint; set prm.format to the checkpoint's format"
        )
    head = torch.nn.Linear(hidden_size, 1)
    head.load_state_dict(
        {"weight": tensors[HEAD_KEYS[0]].reshape(1, hidden_size), "bias": tensors[HEAD_KEYS[1]].reshape(1)}
    )
    return head


def _build(settings, path: str, config, tokenizer) -> SkyworkFormat:
    return SkyworkFormat(tokenizer, settings.step_tag or "\n")


def _load_model(settings, path: str, config, device, dtype, fmt):
    from transformers import AutoModel

    from rfprm_tts.prm.models.heads import ScalarHeadModel
    from rfprm_tts.runtime.torch_utils import load_checked

    body = (
        load_checked(  # the decoder alone: the value head is read below, the language-model head is unused
            AutoModel.from_pretrained,
            path,
            "prm",
            unused=("v_head.", "lm_head."),
            dtype=dtype,
            **settings.model_options(),
        )
        .to(device)
        .eval()
    )
    head = load_value_head(path, config.hidden_size).to(dtype)
    return ScalarHeadModel(body, head).eval()


register_format(
    FormatSpec(
        "skywork",
        _build,
        _load_model,
        pooling=False,
        detect=lambda path, config: ARCHITECTURE in (getattr(config, "architectures", None) or []),
    )
)
