"""The RLHFlow format (Llama3.1-8B-PRM-Deepseek-Data, Llama3.1-8B-PRM-Mistral-Data).

The recipe of RLHFlow's evaluation code: a chat in the model's template where each step is a
user turn (the first one "question step") answered by an assistant turn "+"; a step's score
is the softmax over the logits of "+" and "-" at the position that predicts its "+", read as
P("+"). The reference scores step k on the chat up to step k and reads position -3 (Llama
3.1 ends a turn with one token after the "+"); the decoder is causal, so one pass over the
whole chat gives every step's score, and prefixes are reused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from rfprm_tts.chat import prompt_ids, render, require_chat_template
from rfprm_tts.errors import PRMLoadError
from rfprm_tts.prm.formats.math_shepherd import load_token_choice_model
from rfprm_tts.prm.formats.tokens import card_token_id, steps_start
from rfprm_tts.prm.protocol import RowKind, Rows
from rfprm_tts.prm.registry import FormatSpec, register_format


class RLHFlowFormat:
    rows: RowKind = "marks"
    tag_id = None
    one_score = False
    prefix_reuse = True
    partial_ok = True

    def __init__(self, tokenizer, good: str = "+", bad: str = "-"):
        self.tokenizer = tokenizer
        self.good = good
        self.choices = [
            card_token_id(tokenizer, good, "prm.good_token"),
            card_token_id(tokenizer, bad, "prm.bad_token"),
        ]
        self.header, self.turn_end = self._verdict_slot()
        self.answer_start = functools.lru_cache(maxsize=4096)(lambda question: steps_start(self.encode, question))

    def _verdict_slot(self) -> tuple[list[int], int]:
        """What surrounds an assistant turn's "+" in this template: the assistant header before
        it and the token that ends the turn after it (Llama 3.1: <|eot_id|>). Only a "+"
        between those two is a verdict slot; a "+" in a step's text, or a step that is just
        "+", is not."""
        user = [{"role": "user", "content": "1"}]
        closed, opened = self._ids(user), prompt_ids(self.tokenizer, user)
        if opened[: len(closed)] != closed or len(opened) == len(closed):
            raise PRMLoadError("the chat template's generation prompt does not follow a closed user turn")
        ids = self._ids([*user, {"role": "assistant", "content": self.good}])
        at = len(opened)
        if ids[:at] != opened or at + 1 >= len(ids) or ids[at] != self.choices[0]:
            raise PRMLoadError(f"the chat template does not put {self.good!r} alone after the assistant header")
        return opened[len(closed) :], ids[at + 1]

    def _ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenizer(render(self.tokenizer, messages, open_turn=False), add_special_tokens=False)["input_ids"]

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        messages = []
        for k, step in enumerate(steps):
            text = f"{question} {step.strip()}" if k == 0 else step.strip()
            messages += [{"role": "user", "content": text}, {"role": "assistant", "content": self.good}]
        return self._ids(messages)

    def marks(self, ids: Sequence[int], start: int) -> list[int]:
        """The positions that predict each verdict slot's "+"."""
        good, end, header, h = self.choices[0], self.turn_end, self.header, len(self.header)
        return [
            q - 1
            for q in range(max(start, h), len(ids) - 1)
            if ids[q] == good and ids[q + 1] == end and list(ids[q - h : q]) == header
        ]

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]:
        return [float(p[0]) for p in rows]  # softmax over (good, bad): P(good)

    def cuts(self, ids: Sequence[int], start: int) -> list[int]:
        """The start of the steps, and after each verdict slot's turn end."""
        return [start] + [p + 3 for p in self.marks(ids, start)]


def _build(settings, path: str, config, tokenizer) -> RLHFlowFormat:
    require_chat_template(tokenizer, path, "prm")
    return RLHFlowFormat(tokenizer, settings.good_token, settings.bad_token)


register_format(FormatSpec("rlhflow", _build, load_token_choice_model, pooling=False))
