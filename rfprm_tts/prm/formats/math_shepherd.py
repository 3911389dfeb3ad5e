"""The Math-Shepherd format (math-shepherd-mistral-7b-prm and PRMs trained in its style).

The model card's recipe: the question, a space, then the steps, each followed by " ки" and
joined by newlines, encoded as plain text (BOS included); the model is a causal LM and a
step's score is the softmax over its logits for "+" and "-" at the step's "ки", read as
P("+"). The tag and the two tokens are settings (prm.step_tag, prm.good_token,
prm.bad_token), so models in this style with other tokens load the same way. Causal: a
step's score depends only on what precedes it, so prefixes are reused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from rfprm_tts.prm.formats.tokens import card_token_id, steps_start
from rfprm_tts.prm.protocol import RowKind, Rows
from rfprm_tts.prm.registry import FormatSpec, register_format

STEP_TAG = "ки"


class MathShepherdFormat:
    rows: RowKind = "tags"
    one_score = False
    prefix_reuse = True
    partial_ok = True

    def __init__(self, tokenizer, step_tag: str = STEP_TAG, good: str = "+", bad: str = "-"):
        self.tokenizer = tokenizer
        self.step_tag = step_tag
        self.tag_id = card_token_id(tokenizer, step_tag, "prm.step_tag")
        self.choices = [
            card_token_id(tokenizer, good, "prm.good_token"),
            card_token_id(tokenizer, bad, "prm.bad_token"),
        ]
        self.answer_start = functools.lru_cache(maxsize=4096)(lambda question: steps_start(self.encode, question))

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        clean = [step.replace(self.step_tag, "").strip() for step in steps]  # a stray tag would add a step
        text = f"{question} " + "\n".join(f"{step} {self.step_tag}" for step in clean)
        return self.tokenizer(text)["input_ids"]

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]:
        return [float(p[0]) for p in rows]  # softmax over (good, bad): P(good)

    def cuts(self, ids: Sequence[int], start: int) -> list[int]:
        return [start] + [p + 1 for p in range(start, len(ids)) if ids[p] == self.tag_id]


def _build(settings, path: str, config, tokenizer) -> MathShepherdFormat:
    return MathShepherdFormat(tokenizer, settings.step_tag or STEP_TAG, settings.good_token, settings.bad_token)


def load_token_choice_model(settings, path: str, config, device, dtype, fmt):
    """A causal LM checkpoint as a TokenChoiceModel over the format's two tokens (good, bad)."""
    from transformers import AutoModelForCausalLM

    from rfprm_tts.prm.models.heads import TokenChoiceModel
    from rfprm_tts.runtime.torch_utils import load_checked

    lm = load_checked(
        AutoModelForCausalLM.from_pretrained,
        path,
        "prm",
        dtype=dtype,
        **settings.model_options(),
    )
    return TokenChoiceModel(lm, fmt.choices).to(device).eval()


register_format(FormatSpec("math_shepherd", _build, load_token_choice_model, pooling=False))
