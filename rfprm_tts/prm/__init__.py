"""Process reward models: `load_prm(path_or_name)` returns a Scorer for a checkpoint.

A scorer is an input format composed with a runner (scorer.py):

    input format (formats/: how a trajectory is read)   x   runner (runners/: how the model is run)
    ------------------------------------------------        ---------------------------------------
    step_tag.py     ReasonFlux-PRM-7B, Qwen PRMs            batched.py       transformers, length
                    (tag read-out), token-level                              buckets or packing
                    PRMs (token_min read-out)               incremental.py   transformers, prefix KV cache
    scalar_head.py  ReasonFlux-PRM-1.5B (one                vllm_pooling.py  vLLM pooling in-process,
                    sigmoid score per trajectory)                            or a pooling server (HTTP)
    math_shepherd.py, rlhflow.py, skywork.py, outcome.py
    (your format)   registry.register_format

    PRMScorer = format + runner + the overflow policy (overflow.py), per-trajectory errors,
    token accounting and the runner's prefix cache, behind the Scorer protocol (protocol.py).

Verifiers that are not a reward model (verifiers/: the generator's confidence, a chat model as
judge) are Scorers too. models/ holds the transformers model classes the runners load.

A new verifier format is one file: an InputFormat (encode, answer_start, read, and which
positions' outputs it reads) and a FormatSpec registered under its name; every runner that can
produce those outputs then runs it. aggregate.py (step scores -> one score) and protocol.py
import without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# eager, and pure: the function must shadow its module's name on the package
from rfprm_tts.prm.aggregate import AGGREGATIONS, aggregate
from rfprm_tts.runtime.lazy import lazy_exports

_PUBLIC = {
    "ScoredBatch": "rfprm_tts.prm.protocol",
    "Scorer": "rfprm_tts.prm.protocol",
    "ScorerDefaults": "rfprm_tts.prm.protocol",
    "PrefixCache": "rfprm_tts.prm.protocol",
    "InputFormat": "rfprm_tts.prm.protocol",
    "Runner": "rfprm_tts.prm.protocol",
    "LogprobScorer": "rfprm_tts.prm.protocol",
    "PRMScorer": "rfprm_tts.prm.scorer",
    "FormatSpec": "rfprm_tts.prm.registry",
    "register_format": "rfprm_tts.prm.registry",
    "register_verifier": "rfprm_tts.prm.registry",
    "load_prm": "rfprm_tts.prm.loading",
    "build_scorer": "rfprm_tts.prm.loading",
}
__all__ = [
    "AGGREGATIONS",
    "FormatSpec",
    "InputFormat",
    "LogprobScorer",
    "PRMScorer",
    "PrefixCache",
    "Runner",
    "ScoredBatch",
    "Scorer",
    "ScorerDefaults",
    "aggregate",
    "build_scorer",
    "load_prm",
    "register_format",
    "register_verifier",
]

if TYPE_CHECKING:
    from rfprm_tts.prm.loading import build_scorer, load_prm
    from rfprm_tts.prm.protocol import (
        InputFormat,
        LogprobScorer,
        PrefixCache,
        Runner,
        ScoredBatch,
        Scorer,
        ScorerDefaults,
    )
    from rfprm_tts.prm.registry import FormatSpec, register_format, register_verifier
    from rfprm_tts.prm.scorer import PRMScorer


__getattr__ = lazy_exports(__name__, _PUBLIC, globals())
