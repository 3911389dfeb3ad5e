"""The step-tag input format: ReasonFlux-PRM-7B, Qwen2.5-Math-PRM-7B/72B (and the demo PRM).

The recipe of those checkpoints: the question as the user turn, the steps joined and ended by
the step tag (`<extra_0>`) as the assistant turn, the chat template's default system prompt
(or `prm.system_prompt`, as Qwen2.5-Math-PRM's card passes one), no generation prompt; a
step's reward is P(class 1) = softmax(logits)[1] at its tag. Tag positions are indexed
directly (the upstream helper's mask-and-drop-zeros breaks when a probability underflows to
0). The decoder is causal, so a step's score depends only on what precedes it: prefixes can
be reused.

A token-level PRM (readout "token_min", e.g. the demo PRM) is read on the same input: a
step's score is the min of P(class 1) over the step's tokens and its tag.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from rfprm_tts.chat import prm_messages, prompt_ids, render, require_chat_template
from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.protocol import RowKind, Rows
from rfprm_tts.prm.registry import FormatSpec, register_format


def step_tag_input(
    tokenizer, question: str, steps: Sequence[str], step_tag: str = "<extra_0>", system_prompt: str | None = None
) -> str:
    """The exact text a step-tag PRM reads for one trajectory (every scorer backend uses it)."""
    clean = [step.replace(step_tag, "") for step in steps]  # a stray tag would add a step
    answer = step_tag.join(clean) + step_tag
    return render(tokenizer, prm_messages(question, system_prompt, answer), open_turn=False)


def answer_start(tokenizer, question: str, system_prompt: str | None = None) -> int:
    """Tokens before the assistant's answer (the templated question and generation prompt)."""
    return len(prompt_ids(tokenizer, prm_messages(question, system_prompt)))


def checkpoint_readout(readout: str, config) -> str:
    """The read-out to use: the setting, or with "auto" the checkpoint's `rfprm_readout`
    (a token-level PRM such as the demo's says "token_min"), else ReasonFlux's "step_tag"."""
    return readout if readout != "auto" else getattr(config, "rfprm_readout", "step_tag")


def token_min_scores(p_correct: Sequence[float], ids: Sequence[int], tag_id: int, start: int) -> list[float]:
    """Token-level read-out: each step's score is the min of P(correct) over its tokens and
    its closing tag; the first step starts at `start`, the first token of the answer."""
    scores, begin = [], start
    for position, token in enumerate(ids):
        if token == tag_id and position >= start:
            scores.append(min(p_correct[begin : position + 1]))
            begin = position + 1
    return scores


class StepTagFormat:
    """The step-tag input and its two read-outs: at each step's tag ("step_tag"), or the min
    over each step's tokens and tag ("token_min")."""

    one_score = False
    prefix_reuse = True
    partial_ok = True

    def __init__(
        self, tokenizer, *, step_tag: str = "<extra_0>", readout: str = "step_tag", system_prompt: str | None = None
    ):
        self.tokenizer = tokenizer
        self.step_tag = step_tag
        self.tag_id = tokenizer.convert_tokens_to_ids(step_tag)
        self.readout = readout
        self.system_prompt = system_prompt
        self.rows: RowKind = "tags" if readout == "step_tag" else "all"
        # the scorer and the runner both ask, for every call: template each question once
        self.answer_start = functools.lru_cache(maxsize=4096)(self._answer_start)

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        text = step_tag_input(self.tokenizer, question, steps, self.step_tag, self.system_prompt)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _answer_start(self, question: str) -> int:
        return answer_start(self.tokenizer, question, self.system_prompt)

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]:
        p_correct = [float(p[1]) for p in rows]
        if self.readout == "token_min":
            return token_min_scores(p_correct, ids, self.tag_id, start)
        return p_correct

    def cuts(self, ids: Sequence[int], start: int) -> list[int]:
        """Where a cached prefix may end: the start of the answer and just after every step
        tag (tokens after the last tag, the template's end, are never needed for a score)."""
        return [start] + [p + 1 for p in range(start, len(ids)) if ids[p] == self.tag_id]


def _build(settings, path: str, config, tokenizer) -> StepTagFormat:
    require_chat_template(tokenizer, path, "prm")
    step_tag = settings.step_tag or "<extra_0>"
    tag_id = tokenizer.convert_tokens_to_ids(step_tag)
    if tag_id is None or tag_id == tokenizer.unk_token_id:
        raise PRMLoadError(
            f"the tokenizer of {path!r} has no {step_tag!r} token; set prm.step_tag to the PRM's step "
            "separator token, or prm.format to the checkpoint's format (math_shepherd, rlhflow, ...)"
        )
    readout = checkpoint_readout(settings.readout, config)
    return StepTagFormat(tokenizer, step_tag=step_tag, readout=readout, system_prompt=settings.system_prompt)


def _load_model(settings, path: str, config, device, dtype, fmt):
    """The project's own Qwen2ForProcessRewardModel for checkpoints that name it; the
    checkpoint's own code only with trust_remote_code. The head must have 2 labels."""
    from transformers import AutoModel

    from rfprm_tts.prm.models.qwen2_prm import Qwen2ForProcessRewardModel, check_two_label_head
    from rfprm_tts.runtime.torch_utils import load_checked

    architectures = list(getattr(config, "architectures", None) or [])
    unused = ("lm_head.",)  # a language-model head some PRM checkpoints keep (vLLM's class skips it too)
    options = {"dtype": dtype, **settings.model_options()}  # trust_remote_code matters to AutoModel only
    if "Qwen2ForProcessRewardModel" in architectures:
        model = load_checked(Qwen2ForProcessRewardModel.from_pretrained, path, "prm", unused=unused, **options)
    elif settings.trust_remote_code:
        model = load_checked(AutoModel.from_pretrained, path, "prm", unused=unused, **options)
    else:
        raise PRMLoadError(
            f"{path!r} declares architectures {architectures}, not a step-tag process reward model "
            "(Qwen2ForProcessRewardModel). A causal LM that answers '+'/'-' is prm.format "
            "'math_shepherd' or 'rlhflow'; a checkpoint with its own modeling code needs "
            "trust_remote_code=True (RFPRM_PRM__TRUST_REMOTE_CODE=true)."
        )
    model = model.to(device).eval()
    check_two_label_head(model, path)
    return model


register_format(FormatSpec("step_tag", _build, _load_model))
