"""Build tiny Qwen2 checkpoints in the exact formats of the real ones.

A character-level tokenizer with the Qwen special tokens and a ChatML template, a Qwen2
causal LM, and a Qwen2 process reward model (decoder + 2-label score head, the layout of
Qwen2.5-Math-PRM / ReasonFlux-PRM-7B). Tests build them (and the demo world's training starts from them); every loader
(transformers, vLLM) then runs on them exactly as on a 7B checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from rfprm_tts.prm.models.qwen2_prm import Qwen2ForProcessRewardModel

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
PLAIN_ADDED_TOKENS = ["<think>", "</think>"]  # kept in decoded text, like Qwen3's

Model = TypeVar("Model", bound=PreTrainedModel)

DEFAULT_SYSTEM_PROMPT = "Please reason step by step."  # no backslashes: Jinja would unescape them


def chatml_template(system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """ChatML, as Qwen models use it; `system_prompt` when no system message is given."""
    return (
        "{%- if messages[0]['role'] == 'system' %}"
        "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
        "{%- set loop_messages = messages[1:] %}"
        "{%- else %}"
        "{{- '<|im_start|>system\\n" + system_prompt + "<|im_end|>\\n' }}"
        "{%- set loop_messages = messages %}"
        "{%- endif %}"
        "{%- for message in loop_messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


# Qwen2's pre-tokenization; with the byte-level BPE below and no merges, one token per byte.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_tokenizer(
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    *,
    special: Sequence[str] = (),
    plain: Sequence[str] = (),
    bos_token: str | None = None,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """A Qwen2-style byte-level BPE tokenizer with no merges (one token per byte), the special
    tokens of the real formats and a ChatML template. Its pipeline is the one transformers'
    Qwen2Tokenizer rebuilds from vocab and merges, so every loader tokenizes alike.

    Other formats' tokenizers: `special` and `plain` tokens added (a PRM's step tag such as
    Math-Shepherd's "ки"), `bos_token` put before every encoded text (as Llama and Mistral
    tokenizers do), another `chat_template`."""
    special_tokens, plain_tokens = [*SPECIAL_TOKENS, *special], [*PLAIN_ADDED_TOKENS, *plain]
    vocab: dict[str, int] = {}
    for token in [*special_tokens, *plain_tokens, *sorted(pre_tokenizers.ByteLevel.alphabet())]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], continuing_subword_prefix="", end_of_word_suffix=""))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special_tokens)
    tok.add_tokens(plain_tokens)
    if bos_token is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A $B", special_tokens=[(bos_token, vocab[bos_token])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=bos_token
    )
    tokenizer.chat_template = chat_template or chatml_template(system_prompt)
    return tokenizer


def tiny_config(
    vocab_size: int,
    architecture: str,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int | None = None,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    num_labels: int = 2,
    eos_token_id: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Qwen2Config:
    """A Qwen2 config with head size hidden/heads (vLLM's CPU attention needs >= 32);
    `num_kv_heads` below `num_heads` for grouped-query attention, as in Qwen2.5-7B."""
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        architectures=[architecture],
        # an extra setting PreTrainedConfig's __init__ takes as **kwargs; its dataclass typing lists fields only
        num_labels=num_labels,  # type: ignore[call-arg]
        eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
        dtype=str(dtype).removeprefix("torch."),
    )


def build_tiny_generator(directory: str | Path, seed: int = 0, device: str = "cpu", **config) -> Path:
    """Save a random-weight Qwen2ForCausalLM and its tokenizer to `directory` (weights made
    on `device`, in `dtype` when the config names one)."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    cfg = tiny_config(len(tokenizer), "Qwen2ForCausalLM", eos_token_id=tokenizer.eos_token_id, **config)
    return _save(_random_model(Qwen2ForCausalLM, cfg, device), tokenizer, directory)


def build_tiny_prm(
    directory: str | Path,
    seed: int = 0,
    num_labels: int = 2,
    head_gain: tuple[float, float] = (20.0, 40.0),
    device: str = "cpu",
    **config,
) -> Path:
    """Save a random-weight Qwen2ForProcessRewardModel and its tokenizer to `directory`.

    `head_gain` scales the score head's two layers: at the usual init its logits are so small
    that every score is 0.5 +- 0.002, and comparisons of scoring paths could not tell a
    broken path from rounding. Scaled, scores spread over (0, 1) like a trained PRM's."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    cfg = tiny_config(
        len(tokenizer),
        "Qwen2ForProcessRewardModel",
        num_labels=num_labels,
        eos_token_id=tokenizer.eos_token_id,
        **config,
    )
    model = _random_model(Qwen2ForProcessRewardModel, cfg, device)
    with torch.no_grad():
        model.score[0].get_parameter("weight").mul_(head_gain[0])
        model.score[2].get_parameter("weight").mul_(head_gain[1])
    return _save(model, tokenizer, directory)


def _random_model(cls: type[Model], cfg: Qwen2Config, device: str) -> Model:
    """Random weights made where they will be saved from, in the config's dtype: a 7B shape
    is made on a GPU in seconds (on a CPU, in float32, it would take minutes)."""
    default, dtype = torch.get_default_dtype(), cfg.dtype
    assert dtype is not None, "tiny_config names a dtype"
    torch.set_default_dtype(dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype))
    try:
        with torch.device(device):
            return cls(cfg)
    finally:
        torch.set_default_dtype(default)


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
