"""Verifier models as the runners see them: a decoder body plus a small head, one module that
maps input ids (and the runners' cache arguments) to per-token logits.

    ScalarHeadModel   body + Linear(hidden, 1): ReasonFlux-PRM-1.5B's reward head, Skywork's
                      value head, an outcome reward model's score head (sigmoid -> [0, 1])
    TokenChoiceModel  a causal LM's head kept only at two tokens, e.g. "+" and "-" (softmax
                      over the two = the model card's logits[..., [good, bad]].softmax(-1))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class ScalarHeadModel(nn.Module):
    """The body and a one-logit head: per-token logits [batch, tokens, 1]."""

    def __init__(self, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.body, self.head = body, head.to(next(body.parameters()).device)
        self.config = body.config

    def forward(self, input_ids: torch.Tensor, **kwargs) -> tuple[torch.Tensor]:
        hidden = self.body(input_ids=input_ids, **kwargs)[0]
        return (self.head(hidden.to(self.head.weight.dtype)),)


class TokenChoiceModel(nn.Module):
    """A causal LM whose output head is cut to the rows of `token_ids`: per-token logits
    [batch, tokens, len(token_ids)], equal to the full logits at those tokens without
    computing (or keeping) the rest of the vocabulary."""

    def __init__(self, causal_lm: PreTrainedModel, token_ids: list[int]):
        super().__init__()
        self.body = causal_lm.get_decoder()
        self.config = causal_lm.config
        head = causal_lm.get_output_embeddings()
        self.weight = nn.Parameter(head.weight[token_ids].detach().clone(), requires_grad=False)
        bias = getattr(head, "bias", None)
        self.bias = None if bias is None else nn.Parameter(bias[token_ids].detach().clone(), requires_grad=False)

    def forward(self, input_ids: torch.Tensor, **kwargs) -> tuple[torch.Tensor]:
        hidden = self.body(input_ids=input_ids, **kwargs)[0]
        return (nn.functional.linear(hidden, self.weight, self.bias),)
