"""Outcome reward models: a `*ForSequenceClassification` checkpoint with one label (Skywork-
Reward and the like) scores a complete answer, not its steps.

The input is the chat template over the question (user) and the answer (assistant, the
steps joined by a blank line), as those models' cards format a pair; the score is the
sigmoid of the head's logit at the last token (where the model's own pooling reads),
so it is in (0, 1) like a PRM's and ranks answers as the raw reward does. One score per
trajectory; a partial answer is refused (`partial_ok` False): step-level searches say so.
"""

from __future__ import annotations

from collections.abc import Sequence

from rfprm_tts.chat import prm_messages, render, require_chat_template
from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.protocol import RowKind, Rows
from rfprm_tts.prm.registry import FormatSpec, register_format
from rfprm_tts.text import DEFAULT_STEP_SEPARATOR


class OutcomeFormat:
    rows: RowKind = "last"
    tag_id = None
    one_score = True
    prefix_reuse = False
    partial_ok = False

    def __init__(self, tokenizer, separator: str = DEFAULT_STEP_SEPARATOR, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.separator = separator
        self.system_prompt = system_prompt

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        messages = prm_messages(question, self.system_prompt, self.separator.join(steps))
        return self.tokenizer(render(self.tokenizer, messages, open_turn=False), add_special_tokens=False)["input_ids"]

    def answer_start(self, question: str) -> int:
        return 0

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]:
        return [float(rows[-1][0])]

    def cuts(self, ids: Sequence[int], start: int) -> list[int]:
        raise NotImplementedError("an outcome reward model reads one score per answer: no prefix reuse")


def is_outcome_model(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in architectures) and getattr(config, "num_labels", 2) == 1


def _build(settings, path: str, config, tokenizer) -> OutcomeFormat:
    require_chat_template(tokenizer, path, "prm")
    return OutcomeFormat(tokenizer, system_prompt=settings.system_prompt)


def _load_model(settings, path: str, config, device, dtype, fmt):
    """The checkpoint's body and its one-logit score head, as per-token logits."""
    from transformers import AutoModelForSequenceClassification

    from rfprm_tts.prm.models.heads import ScalarHeadModel
    from rfprm_tts.runtime.torch_utils import load_checked

    if getattr(config, "num_labels", None) != 1:
        raise PRMLoadError(
            f"{path!r} has {getattr(config, 'num_labels', None)} labels; an outcome reward model has one "
            "(a reward logit). Set prm.format to the checkpoint's format."
        )
    model = load_checked(
        AutoModelForSequenceClassification.from_pretrained,
        path,
        "prm",
        dtype=dtype,
        **settings.model_options(),
    )
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if head is None or not hasattr(head, "weight") or head.weight.shape[0] != 1:
        raise PRMLoadError(f"{path!r}: no one-logit Linear head (score or classifier) on {type(model).__name__}")
    return ScalarHeadModel(model.base_model, head).to(device).eval()


register_format(
    FormatSpec("outcome", _build, _load_model, pooling=False, detect=lambda path, config: is_outcome_model(config))
)
