"""Input formats and verifiers by name (`prm.format`), each registered by the file that defines it.

A format file builds its InputFormat from a checkpoint and, for the in-process runners, loads
the model as a module with per-token logits. Adding a verifier format is one such file: define
the format, then `register_format(FormatSpec(...))`; `prm.format = NAME` (or auto-detection)
picks it, and every runner, strategy, `rfprm bench` and `rfprm serve` work with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfprm_tts.prm.protocol import InputFormat, Scorer

if TYPE_CHECKING:
    from rfprm_tts.settings import PRMSettings


@dataclass(frozen=True)
class FormatSpec:
    """`build(settings, path, config, tokenizer)` makes the format; `load_model(settings, path,
    config, device, dtype, fmt)` the model the transformers runners run (None: no in-process
    model); `detect(path, config)` claims a checkpoint when prm.format is "auto"; `pooling`:
    vLLM's pooling runner returns what the format reads (a 2-label score head at step tags,
    as Qwen2ForProcessRewardModel has), so prm.backend 'vllm' and 'http' can run it."""

    name: str
    build: Callable[[Any, str, Any, Any], InputFormat]
    load_model: Callable[..., Any] | None = None
    detect: Callable[[str, Any], bool] = lambda path, config: False
    pooling: bool = True


FORMATS: dict[str, FormatSpec] = {}


def register_format(spec: FormatSpec) -> FormatSpec:
    FORMATS[spec.name] = spec
    return spec


# Verifiers that are not a reward-model checkpoint (verifiers/: the generator's confidence, a
# chat model as judge): `prm.format` names one, and its builder makes the Scorer from the prm
# settings, with no model loaded here.
VERIFIERS: dict[str, Callable[[PRMSettings], Scorer]] = {}


def register_verifier(name: str, build: Callable[[PRMSettings], Scorer]) -> None:
    VERIFIERS[name] = build
