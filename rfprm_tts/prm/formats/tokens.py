"""Token facts a verifier format derives from its tokenizer, the way model cards do."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rfprm_tts.errors import PRMLoadError


def card_token_id(tokenizer, text: str, setting: str) -> int:
    """The id model cards read for `text`: `tokenizer.encode(text)[-1]` (the last token, after
    any BOS; with a SentencePiece tokenizer the word-initial form, as in running text).
    `setting` names the option to change when the text is not one token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise PRMLoadError(
            f"{text!r} is {len(ids)} tokens for this tokenizer, not one; set {setting} to a token the PRM was trained with"
        )
    return tokenizer.encode(text)[-1]


def steps_start(encode: Callable[[str, Sequence[str]], list[int]], question: str) -> int:
    """Tokens before the first step: where two trajectories of the question part ways (the
    question's template and text, shared by every trajectory; a prefix cache keeps it once)."""
    a, b = encode(question, ["0"]), encode(question, ["1"])
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
