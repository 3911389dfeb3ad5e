"""Tools for in-process models (transformers, vLLM): offered through the model's own chat
template, and the calls read back from the text the model writes.

The template gets the tools as `apply_chat_template(tools=...)` gives them (OpenAI's
`{"type": "function", "function": {...}}` shape, which Hugging Face templates take) and the
history's calls with their arguments as objects (chat.render). Calls are
read in the Hermes format that Qwen2.5, Qwen3 and Hermes models are trained on:
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from rfprm_tts.generators.base import Completion

TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the chat template writes the tools it is given (a template that does not
    reference them would drop them without a word)."""
    template = tokenizer.chat_template
    return isinstance(template, str) and "tools" in template


def read_tool_calls(text: str) -> tuple[str, list[dict[str, Any]] | None]:
    """The text before the first call, and the calls in OpenAI's shape (arguments as JSON
    text), or None when the model called nothing. A block that is not a JSON object with a
    name becomes a call with no name and the block as its arguments, which the vote fails
    (rfprm_tts.search.tool_calls); a last block the model did not close is read as written."""
    blocks = TOOL_CALL.findall(text)
    if not blocks:
        return text, None
    calls = []
    for block in blocks:
        try:
            value = json.loads(block)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            given = value.get("arguments", {})  # an object, or (some models) its JSON text
            name, arguments = value["name"], given if isinstance(given, str) else json.dumps(given, ensure_ascii=False)
        else:
            name, arguments = "", block.strip()
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return text[: text.index("<tool_call>")].rstrip(), calls


def read_calls_into(completions: list[Completion]) -> None:
    """Each completion that called tools: its text before the calls, its calls, finish "tool_calls"."""
    for completion in completions:
        if completion.error is not None:
            continue
        text, calls = read_tool_calls(completion.text)
        if calls is not None:
            completion.text, completion.tool_calls, completion.finish_reason = text, calls, "tool_calls"
