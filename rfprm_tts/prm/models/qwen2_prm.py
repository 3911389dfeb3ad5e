"""Qwen2ForProcessRewardModel for transformers, so PRM checkpoints load without remote code.

The layout of Qwen2.5-Math-PRM and ReasonFlux-PRM-7B, with the weight names of their
checkpoints and of vLLM's class of the same name: a Qwen2 decoder (`model.*`) and a score
head `score = Sequential(Linear(h, h), ReLU, Linear(h, num_labels))` applied at every token.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(),
            # transformers types num_labels Optional (None without id2label), but a config always sets id2label
            nn.Linear(config.hidden_size, config.num_labels),  # type: ignore[arg-type]
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        logits = self.score(outputs.last_hidden_state)
        return TokenClassifierOutput(logits=logits, hidden_states=outputs.hidden_states)


@torch.inference_mode()
def check_two_label_head(model: nn.Module, path: str) -> None:
    """Fail clearly when the loaded head is not the 2-label PRM head (ReasonFlux-PRM issue #20:
    some loading paths return the language-model head, with one logit per vocabulary entry)."""
    device = next(model.parameters()).device
    output = model(input_ids=torch.tensor([[0]], device=device))
    logits = output[0] if isinstance(output, (tuple, list)) else getattr(output, "logits", None)
    if logits is None:
        logits = output[0]
    width = logits.shape[-1]
    if width != 2:
        from rfprm_tts.errors import PRMLoadError

        raise PRMLoadError(
            f"{path!r} loaded with a head of {width} outputs per token, expected the 2-label PRM "
            "head (P(incorrect), P(correct)). This is the wrong class for the checkpoint (e.g. "
            "the language-model head, ReasonFlux-PRM issue #20): load a checkpoint whose config "
            "names Qwen2ForProcessRewardModel with num_labels=2."
        )
