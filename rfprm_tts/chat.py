"""Prompts the way chat APIs take them, and the one place a conversation becomes model input.

A prompt is a question string or a list of chat messages: an optional system message,
earlier turns, and the last user message (the question), or an agent's turn: the assistant's
tool calls and the tool results after them. The generator sees all of it. The PRM reads the
last user message as the question, inside its own template with its own optional system
message (`prm.system_prompt`): a PRM's recipe has no place for history.

Every generator backend and every PRM input is rendered by `render` here, so a system
prompt or a partial answer is placed the same way everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, TypeGuard

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.model_names import Role, load_error
from rfprm_tts.text import require_unicode

Message = dict[str, Any]  # role and content (text); an assistant's tool_calls; a tool result's tool_call_id
Prompt: TypeAlias = str | Sequence[Mapping[str, Any]]
ROLES = ("system", "user", "assistant", "tool")


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of content parts (text parts joined)."""
    if isinstance(content, str):
        return require_unicode(content, where)
    if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
        if any(p.get("type") != "text" for p in content):
            raise ConfigError(f"{where} has a non-text content part: only text parts are supported")
        return require_unicode("".join(str(p.get("text", "")) for p in content), where)
    raise ConfigError(f"{where} has no text content: give 'content' as a string (or a list of text parts)")


def _is_chat(prompt: object) -> TypeGuard[Sequence[Mapping[str, Any]]]:
    """A list (any sequence) of message mappings."""
    return isinstance(prompt, Sequence) and all(isinstance(m, Mapping) for m in prompt)


def to_messages(prompt: Prompt, system_prompt: str | None = None) -> list[Message]:
    """The conversation as plain {"role", "content"} messages (an assistant's tool calls and
    a tool result's call id kept), checked: a string becomes one user message; the last
    message must be the user's question or a tool result after it; `system_prompt` goes first
    unless the conversation has its own system message ("developer" counts as one)."""
    if prompt is None or (isinstance(prompt, Sequence) and not prompt):
        raise ConfigError("the prompt is empty: pass the question as a non-empty string or a list of chat messages")
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": require_unicode(prompt, "the question")}]
    elif _is_chat(prompt):
        messages = []
        for i, message in enumerate(prompt):
            role = "system" if message.get("role") == "developer" else message.get("role")
            if role not in ROLES:
                raise ConfigError(f"message {i} has role {message.get('role')!r}; use one of {', '.join(ROLES)}")
            messages.append(_message(role, message, f"message {i}"))
    else:
        raise ConfigError(
            "the prompt must be a question string or a list of chat messages "
            '(e.g. [{"role": "user", "content": "..."}]), got ' + type(prompt).__name__
        )
    asking = (
        messages[-1]
        if messages[-1]["role"] != "tool"
        else next((m for m in reversed(messages) if m["role"] == "user"), messages[-1])
    )
    if asking["role"] != "user" or not asking["content"].strip():
        raise ConfigError(
            "the prompt is empty: the last message must be the user's question (or a tool result after it), "
            "as a non-empty string"
        )
    if system_prompt and all(m["role"] != "system" for m in messages):
        system = require_unicode(system_prompt, "the system prompt (generator.system_prompt)")
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _message(role: str, message: Mapping[str, Any], where: str) -> Message:
    """One checked message: text content; an assistant's tool calls (content may then be
    empty) and a tool result's tool_call_id, in OpenAI's shape."""
    if role == "assistant" and message.get("tool_calls"):
        content = message.get("content")
        return {
            "role": role,
            "content": _text(content, where) if content else "",
            "tool_calls": _tool_calls(message, where),
        }
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise ConfigError(
            f"{where} has role 'tool' without a tool_call_id string (the id of the assistant's call it answers)"
        )
    checked = {"role": role, "content": _text(message.get("content"), where)}
    return checked | ({"tool_call_id": message["tool_call_id"]} if role == "tool" else {})


def _tool_calls(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    calls = message["tool_calls"]
    shape = "{'id': str, 'type': 'function', 'function': {'name': str, 'arguments': str}}"
    if not isinstance(calls, list):
        raise ConfigError(f"{where} has tool_calls that is not a list of {shape}")
    checked = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not (
            isinstance(function, Mapping)
            and isinstance(call.get("id"), str)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        ):
            raise ConfigError(f"{where}: tool call {j} is not {shape}")
        checked.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": function["arguments"]},
            }
        )
    return checked


def question_of(messages: Sequence[Message]) -> str:
    """The question a PRM scores: the last user message."""
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def require_chat_template(tokenizer, path: str, role: Role) -> None:
    """Refuse a tokenizer without a chat template where input is rendered with one (transformers
    would raise on the first prompt, deep inside a search)."""
    if not tokenizer.chat_template:
        raise load_error(role)(
            f"the tokenizer of the {role} checkpoint {path} has no chat template; add the model's "
            "chat_template.jinja (or the chat_template field of tokenizer_config.json) to the checkpoint"
        )


def render(
    tokenizer,
    messages: Sequence[Message],
    prefix: str = "",
    *,
    open_turn: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """The chat template over `messages` (and the `tools` offered, which the template writes
    where it takes them), opening the assistant's turn (unless `open_turn` is False: a PRM
    input ends with the answer's own turn), then the partial answer `prefix` to continue (no
    second generation prompt)."""
    extra = {"tools": tools} if tools else {}
    conversation = template_messages(messages)
    return (
        tokenizer.apply_chat_template(conversation, add_generation_prompt=open_turn, tokenize=False, **extra) + prefix
    )


def prompt_ids(
    tokenizer, messages: Sequence[Message], prefix: str = "", tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """`render`, as the token ids an in-process model is fed."""
    return tokenizer(render(tokenizer, messages, prefix, tools=tools), add_special_tokens=False)["input_ids"]


def template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as templates take it: each call's arguments as an object, not JSON text."""
    shaped: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = {**message, "tool_calls": [_with_object_arguments(call) for call in calls]}
        shaped.append(dict(message))
    return shaped


def _with_object_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    try:
        arguments = (
            json.loads(function["arguments"]) if isinstance(function["arguments"], str) else function["arguments"]
        )
    except (ValueError, RecursionError):  # RecursionError: nesting past Python's limit
        arguments = function["arguments"]  # as sent: the template writes what it can
    return {**call, "function": {**function, "arguments": arguments}}


def render_plain(messages: Sequence[Message], prefix: str = "") -> str:
    """For a completions API with no tokenizer to template with: the contents, one per
    paragraph, then the partial answer. A lone question is sent exactly as given."""
    return "\n\n".join(m["content"] for m in messages) + prefix


def prm_messages(question: str, system_prompt: str | None = None, answer: str | None = None) -> list[Message]:
    """A PRM's conversation: its optional system message, the question, and the answer
    (the steps joined by the step tag) when given."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages
