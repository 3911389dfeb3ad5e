"""Process reward models. `load_prm(path_or_name)` returns a Scorer for a checkpoint."""

from __future__ import annotations

import logging
import os

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from rfprm_tts.model_names import resolve_model
from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.aggregate import AGGREGATIONS, aggregate
from rfprm_tts.prm.base import ScoredBatch, Scorer
from rfprm_tts.prm.incremental import IncrementalStepTagScorer
from rfprm_tts.prm.qwen2_prm import Qwen2ForProcessRewardModel
from rfprm_tts.prm.scalar_head import REWARD_HEAD_FILE, ScalarHeadScorer, load_reward_head
from rfprm_tts.prm.step_tag import StepTagScorer, checkpoint_aggregation, checkpoint_readout
from rfprm_tts.settings import PRMSettings
from rfprm_tts.torch_utils import pick_device, pick_dtype

log = logging.getLogger(__name__)

STEP_TAG_ARCHITECTURES = {"Qwen2ForProcessRewardModel": Qwen2ForProcessRewardModel}


def load_prm(path_or_name: str, **options) -> Scorer:
    """Load a PRM: step-tag (ReasonFlux-PRM-7B, Qwen2.5-Math-PRM-7B/72B, the demo PRM), or the
    ReasonFlux-PRM-1.5B format (a causal LM + reward_head.pt), told apart by the checkpoint.

    `options` are PRMSettings fields: backend ('transformers', 'vllm', 'http'), device,
    dtype, batching, overflow, incremental, step_tag, system_prompt, trust_remote_code,
    base_url, vllm={...}.
    The project's own Qwen2ForProcessRewardModel loads checkpoints that name that
    architecture; remote code runs only with `trust_remote_code=True`.
    """
    settings = PRMSettings(model=path_or_name, **options)
    path = resolve_model(settings.model, "prm")
    if settings.backend == "vllm":
        from rfprm_tts.prm.vllm_pooling import VLLMPoolingScorer

        return VLLMPoolingScorer(settings, path)
    if settings.backend == "http":
        from rfprm_tts.prm.vllm_pooling import HTTPPoolingScorer

        return HTTPPoolingScorer(settings, path)
    trust = settings.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise PRMLoadError(f"cannot load PRM config/tokenizer from {path!r}: {exc}") from exc

    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    head_file = os.path.join(path, REWARD_HEAD_FILE)
    max_length = settings.max_length or getattr(config, "max_position_embeddings", None)
    batching = dict(batch_size=settings.batch_size, max_batch_tokens=settings.max_batch_tokens)
    if settings.format == "scalar_head" or (settings.format == "auto" and os.path.isfile(head_file)):
        body = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust).to(device).eval()
        head = load_reward_head(head_file, config.hidden_size).to(dtype)
        return ScalarHeadScorer(
            body, head, tokenizer, max_length=max_length, overflow=settings.overflow, **batching
        )
    architectures = list(getattr(config, "architectures", None) or [])
    known = [STEP_TAG_ARCHITECTURES[a] for a in architectures if a in STEP_TAG_ARCHITECTURES]
    if known:
        model = known[0].from_pretrained(path, dtype=dtype)
    elif trust:
        model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=True)
    else:
        raise PRMLoadError(
            f"{path!r} declares architectures {architectures}, not a process reward model this "
            f"loader knows ({', '.join(STEP_TAG_ARCHITECTURES)}). If the checkpoint ships its "
            "own modeling code, opt in with trust_remote_code=True "
            "(RFPRM_PRM__TRUST_REMOTE_CODE=true)."
        )
    model = model.to(device).eval()

    step_tag_id = tokenizer.convert_tokens_to_ids(settings.step_tag)
    if step_tag_id is None or step_tag_id == tokenizer.unk_token_id:
        raise PRMLoadError(
            f"the tokenizer of {path!r} has no {settings.step_tag!r} token; set prm.step_tag "
            "to the PRM's step separator token"
        )
    check_two_label_head(model, step_tag_id, path)
    readout = checkpoint_readout(settings.readout, config)
    scorer_class, extra = StepTagScorer, {}
    if settings.incremental:
        scorer_class, extra = IncrementalStepTagScorer, {"cache_max_tokens": settings.cache_max_tokens}
    return scorer_class(
        model,
        tokenizer,
        step_tag_id=step_tag_id,
        step_tag=settings.step_tag,
        batching=settings.batching,
        max_length=max_length,
        readout=readout,
        aggregation=checkpoint_aggregation(config),
        overflow=settings.overflow,
        window_overlap=settings.window_overlap,
        system_prompt=settings.system_prompt,
        **batching,
        **extra,
    )


def build_scorer(settings: PRMSettings) -> Scorer:
    """The PRM that `settings` describe (aggregation and alpha are read by the search, not
    the scorer)."""
    return load_prm(settings.model, **settings.model_dump(exclude={"model", "aggregation", "alpha"}))


@torch.inference_mode()
def check_two_label_head(model: torch.nn.Module, token_id: int, path: str) -> None:
    """Fail clearly when the loaded head is not the 2-label PRM head (ReasonFlux-PRM issue #20:
    some loading paths return the language-model head, with one logit per vocabulary entry)."""
    device = next(model.parameters()).device
    output = model(input_ids=torch.tensor([[token_id]], device=device))
    logits = output[0] if isinstance(output, (tuple, list)) else getattr(output, "logits", None)
    if logits is None:
        logits = output[0]
    width = logits.shape[-1]
    if width != 2:
        raise PRMLoadError(
            f"{path!r} loaded with a head of {width} outputs per token, expected the 2-label PRM "
            "head (P(incorrect), P(correct)). This is the wrong class for the checkpoint (e.g. "
            "the language-model head, ReasonFlux-PRM issue #20): load a checkpoint whose config "
            "names Qwen2ForProcessRewardModel with num_labels=2."
        )


__all__ = [
    "AGGREGATIONS",
    "IncrementalStepTagScorer",
    "ScoredBatch",
    "Scorer",
    "StepTagScorer",
    "aggregate",
    "build_scorer",
    "load_prm",
]
