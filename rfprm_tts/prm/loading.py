"""`load_prm`: a checkpoint (path or short name) and the prm settings -> a PRMScorer.

The format comes from `prm.format` (or the first registered format that claims the checkpoint,
else step_tag); the runner from `prm.backend`: transformers (incremental when the format allows
prefix reuse and `prm.incremental`, else batched), vLLM pooling in-process, or a pooling server.
"""

from __future__ import annotations

import importlib
import os

from rfprm_tts.errors import ConfigError, PRMLoadError
from rfprm_tts.prm.protocol import InputFormat, Runner, Scorer
from rfprm_tts.prm.registry import FORMATS, VERIFIERS, FormatSpec
from rfprm_tts.prm.scorer import PRMScorer
from rfprm_tts.runtime.model_names import check_weights, checkpoint_path
from rfprm_tts.settings import PRMSettings

BUILT_IN_FORMATS = (
    "rfprm_tts.prm.formats.step_tag",
    "rfprm_tts.prm.formats.scalar_head",
    "rfprm_tts.prm.formats.math_shepherd",
    "rfprm_tts.prm.formats.rlhflow",
    "rfprm_tts.prm.formats.skywork",
    "rfprm_tts.prm.formats.outcome",
)
BUILT_IN_VERIFIERS = ("rfprm_tts.prm.verifiers.confidence", "rfprm_tts.prm.verifiers.generative")


def load_prm(path_or_name: str, **options) -> PRMScorer:
    """Load a PRM: step-tag (ReasonFlux-PRM-7B, Qwen2.5-Math-PRM-7B/72B, the demo PRM), the
    ReasonFlux-PRM-1.5B scalar-head format, or any registered format.

    `options` are PRMSettings fields: backend ('transformers', 'vllm', 'http'), format, device,
    dtype, batching, attention, overflow, incremental, step_tag, system_prompt, trust_remote_code,
    base_url, vllm={...}. The project's own Qwen2ForProcessRewardModel loads checkpoints that
    name that architecture; remote code runs only with `trust_remote_code=True`.
    """
    from transformers import AutoConfig, AutoTokenizer

    settings = PRMSettings(model=path_or_name, **options)
    path = checkpoint_path(settings.model, "prm")
    trust = settings.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise PRMLoadError(f"cannot load PRM config/tokenizer from {path!r}: {exc}") from exc
    spec = choose_format(settings, path, config)
    fmt = spec.build(settings, path, config, tokenizer)
    runner, context = build_runner(settings, path, spec, fmt, config)
    return PRMScorer(
        fmt,
        runner,
        max_length=settings.max_length or context,
        overflow=settings.overflow,
        window_overlap=settings.window_overlap,
        aggregation=getattr(config, "rfprm_aggregation", None),  # what "auto" uses
        format_name=spec.name,
    )


def choose_format(settings: PRMSettings, path: str, config) -> FormatSpec:
    for module in BUILT_IN_FORMATS:
        importlib.import_module(module)  # each registers its format
    if settings.format == "auto":
        return next((spec for spec in FORMATS.values() if spec.detect(path, config)), FORMATS["step_tag"])
    if settings.format not in FORMATS:
        for module in BUILT_IN_VERIFIERS:  # named in the error too
            importlib.import_module(module)
        raise ConfigError(
            f"unknown prm.format {settings.format!r}; registered formats: {', '.join(sorted(FORMATS))}, "
            f"verifiers: {', '.join(sorted(VERIFIERS))}, or 'auto'"
        )
    return FORMATS[settings.format]


def build_runner(
    settings: PRMSettings, path: str, spec: FormatSpec, fmt: InputFormat, config
) -> tuple[Runner, int | None]:
    """The runner for prm.backend, and the context length it knows (None: unchecked)."""
    if settings.backend != "transformers" and not spec.pooling:
        raise ConfigError(
            f"prm.format {spec.name!r} reads outputs that vLLM's pooling runner does not return; "
            f"set prm.backend to 'transformers' (it is {settings.backend!r})"
        )
    if settings.backend == "vllm":
        from rfprm_tts.prm.runners.vllm_pooling import VLLMPoolingRunner

        if os.path.isdir(path):
            check_weights(path, "prm")  # a missing or truncated file, named before the engine starts
        engine = VLLMPoolingRunner(settings, path, fmt.rows, reuse=fmt.prefix_reuse)
        return engine, engine.max_model_len
    if settings.backend == "http":
        from rfprm_tts.prm.runners.vllm_pooling import HTTPPoolingRunner

        return HTTPPoolingRunner(settings, path), None  # the server checks its own limit
    if spec.load_model is None:
        raise ConfigError(f"the {spec.name} format has no in-process model; use prm.backend 'vllm' or 'http'")
    from rfprm_tts.prm.runners.batched import TransformersRunner
    from rfprm_tts.prm.runners.incremental import IncrementalRunner
    from rfprm_tts.runtime.torch_utils import pick_device, pick_dtype

    device = pick_device(settings.device, "prm.device")
    incremental = settings.incremental and fmt.prefix_reuse
    if incremental and settings.attention in ("flex_attention", "flash_attention_2"):
        # they are for packed whole inputs; the KV-cached passes mask siblings sharing a row
        # with a tree-shaped mask that flash attention cannot take (and torch 2.13's CPU
        # FlexAttention kernel fails to compile), so they run sdpa
        settings = settings.model_copy(update={"attention": "sdpa"})
    model = spec.load_model(settings, path, config, device, pick_dtype(settings.dtype, device), fmt)
    pad_id = fmt.tokenizer.pad_token_id if fmt.tokenizer.pad_token_id is not None else 0
    runner: Runner
    if incremental:
        runner = IncrementalRunner(
            model,
            cache_max_tokens=settings.cache_max_tokens,
            batch_size=settings.batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            batching=settings.batching,
            pad_id=pad_id,
        )
    else:
        runner = TransformersRunner(
            model,
            batch_size=settings.batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            batching=settings.batching,
            pad_id=pad_id,
        )
    return runner, getattr(config, "max_position_embeddings", None)


def build_scorer(settings: PRMSettings) -> Scorer:
    """The PRM that `settings` describe (aggregation and alpha are read by the search, not
    the scorer): a registered verifier (confidence, generative), else a checkpoint's format."""
    for module in BUILT_IN_VERIFIERS:
        importlib.import_module(module)
    if settings.format in VERIFIERS:
        return VERIFIERS[settings.format](settings)
    return load_prm(settings.model, **settings.model_dump(exclude={"model", "aggregation", "alpha"}))
