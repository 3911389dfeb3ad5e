"""Text rules shared by generation and scoring: one step separator, one answer extractor.

Keeping these in one module is the point: a PRM that splits steps differently from the
generator scores steps that never existed.
"""

from __future__ import annotations

import re

from rfprm_tts.errors import ConfigError

DEFAULT_STEP_SEPARATOR = "\n\n"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def require_unicode(text: str, where: str) -> str:
    """`text`, refused when it holds a lone surrogate (half of a UTF-16 pair, as a badly
    decoded JSON string leaves): that is not Unicode text, and tokenizers raise a TypeError on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{where} holds a lone surrogate {text[exc.start]!r} at character {exc.start}, which is not valid "
            "Unicode; remove it, or decode the text with errors='replace'"
        ) from None
    return text


def split_steps(text: str, separator: str = DEFAULT_STEP_SEPARATOR) -> list[str]:
    """Split a response into steps on `separator`, dropping steps that are only whitespace."""
    if not separator:
        raise ValueError("step separator must be a non-empty string, e.g. '\\n\\n'")
    return [step.strip() for step in text.split(separator) if step.strip()]


def split_thinking(text: str) -> tuple[str | None, str]:
    """Separate `<think>...</think>` reasoning from the final answer.

    Returns (thinking, answer). Without a closing tag there is no thinking part; a response
    that opens `<think>` but never closes it is all thinking and no answer (cut off mid-thought).
    Reasoning models often omit the opening tag (it is part of their chat template), so only
    the closing tag is required.
    """
    if THINK_CLOSE in text:
        thinking, answer = text.split(THINK_CLOSE, 1)
        return thinking.replace(THINK_OPEN, "", 1).strip(), answer.strip()
    if text.lstrip().startswith(THINK_OPEN):
        return text.replace(THINK_OPEN, "", 1).strip(), ""
    return None, text.strip()


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces balanced."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start : i - 1].strip()
    return None


_FALLBACK_PATTERNS = [
    re.compile(r"####\s*(.+)"),
    re.compile(r"final answer\s*(?:is)?\s*[:：]?\s*(.+)", re.IGNORECASE),
    re.compile(r"the answer is\s*[:：]?\s*(.+)", re.IGNORECASE),
]


def extract_answer(text: str) -> str | None:
    """The final answer of a response: the last `\\boxed{}`, else "#### X", "Final answer: X",
    "The answer is X" (the last match of the first pattern that matches). None when absent."""
    _, answer_part = split_thinking(text)
    for source in (answer_part, text):
        boxed = last_boxed(source)
        if boxed is not None:
            return boxed
    for pattern in _FALLBACK_PATTERNS:
        matches = pattern.findall(answer_part or text)
        if matches:
            answer = matches[-1].strip().splitlines()[0].strip()
            answer = answer.rstrip(".").strip().strip("$").strip()
            if answer:
                return answer
    return None
