"""The incremental runner's attention mask as a model's layers take it.

The runner packs siblings (new steps after the same cached prefix) into one row and masks them
apart with a tree-shaped boolean mask [rows, 1, queries, keys]. transformers uses a 4D mask as
given, so what it would add for whole inputs is added here: a layer's sliding window, and the
additive form eager attention needs.
"""

from __future__ import annotations

import torch

from rfprm_tts.prm.runners.batched import attention_of


def for_layers(
    model: torch.nn.Module, mask: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor
) -> torch.Tensor | dict[str, torch.Tensor]:
    """The tree mask [rows, 1, queries, keys] as the model's layers take it: a layer with a
    sliding window (Mistral's every layer; Qwen2's upper ones with use_sliding_window) reads
    only keys less than the window behind its query, as transformers masks whole inputs;
    additive under eager attention (sdpa takes it boolean)."""
    config = getattr(model, "config", None)
    window = getattr(config, "sliding_window", None)
    layer_types = set(getattr(config, "layer_types", None) or ["sliding_attention"])
    masks = {"full_attention": mask}
    if window is not None:
        near = query_positions[:, None, :, None] - key_positions[:, None, None, :] < window
        masks["sliding_attention"] = mask & near
    if attention_of(model) == "eager":
        dtype = next(model.parameters()).dtype
        for kind, m in masks.items():
            masks[kind] = torch.zeros(m.shape, dtype=dtype).masked_fill(~m, torch.finfo(dtype).min)
    device = next(model.parameters()).device
    masks = {kind: m.to(device) for kind, m in masks.items()}
    if window is None:
        return masks["full_attention"]
    return masks["sliding_attention"] if layer_types == {"sliding_attention"} else masks
