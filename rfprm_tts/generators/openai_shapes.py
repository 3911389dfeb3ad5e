"""The shapes the OpenAI API speaks, for the openai backend: checked chat messages as the SDK
types them, and what a response's choices hold (text, reasoning, log-probabilities, tool
calls, each choice's share of the token count), read from the JSON the server sent (a
response, or a stream's chunk). That JSON is untrusted: a member that is missing or of
another type reads as None (`member`), and the callers say what was wrong."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletionMessageParam

from rfprm_tts.chat import Message
from rfprm_tts.errors import MalformedResponseError
from rfprm_tts.generators.base import Completion
from rfprm_tts.trajectory import TokenLogprob, TopLogprob, top_logprob


def share_tokens(completions: list[Completion], total: int, tokenizer=None) -> None:
    """Each choice's generated tokens. A response reports one total for all its choices:
    exact for one choice, or from each choice's logprobs (one entry per token) when they add
    up to it; else the total is split in proportion to each choice's length (tokens when a
    tokenizer is set, else characters), the parts adding up to the total, and marked
    estimated."""
    if len(completions) == 1:
        completions[0].tokens = total
        return
    counted = [len(c.logprobs) for c in completions if c.logprobs is not None]
    if len(counted) == len(completions) and sum(counted) == total:
        for c, tokens in zip(completions, counted):
            c.tokens = tokens
        return
    lengths = [
        len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) if tokenizer else len(c.text) for c in completions
    ]
    weights = [length + 1 for length in lengths]  # + 1: a choice that ended at once still spent its EOS
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: shares[i] - exact[i])
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    for c, tokens in zip(completions, shares):
        c.tokens, c.tokens_estimated = tokens, True


def chat_message(message: Message) -> ChatCompletionMessageParam:
    """A checked message (rfprm_tts.chat: system, user, assistant, tool) as the SDK types it."""
    if message["role"] == "system":
        return {"role": "system", "content": message["content"]}
    if message["role"] == "assistant" and message.get("tool_calls"):
        return {"role": "assistant", "content": message["content"] or None, "tool_calls": message["tool_calls"]}
    if message["role"] == "assistant":
        return {"role": "assistant", "content": message["content"]}
    if message["role"] == "tool":
        return {"role": "tool", "content": message["content"], "tool_call_id": message["tool_call_id"]}
    return {"role": "user", "content": message["content"]}


def member(json: Any, name: str) -> Any:
    """`json[name]` where `json` is an object that has it, else None."""
    return json.get(name) if isinstance(json, dict) else None


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def choice_tool_calls(choice: Any) -> list[dict[str, Any]] | None:
    """A choice's tool calls in OpenAI's shape ({"id", "type", "function": {"name",
    "arguments"}}), or None; a call not in that shape makes the response malformed."""
    calls = member(member(choice, "message"), "tool_calls")
    if not calls:
        return None
    if not isinstance(calls, list):
        raise MalformedResponseError(f"tool_calls is not a list (got {str(calls)[:200]!r})")
    shaped = []
    for call in calls:
        function = member(call, "function")
        call_id, name, arguments = member(call, "id"), member(function, "name"), member(function, "arguments")
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise MalformedResponseError(
                f"a tool call is not id, function name and arguments (got {str(call)[:200]!r})"
            )
        shaped.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return shaped


def choice_stop_reason(choice: Any) -> str | None:
    """The stop string that ended a choice, where the server names it (vLLM's stop_reason,
    which is an int for a stop token)."""
    return text_or_none(member(choice, "stop_reason"))


def choice_text(choice: Any) -> Any:
    """A choice's text. Servers that split reasoning out (`reasoning_content`) get it put
    back inside <think>...</think>, so steps and answer are cut the same way everywhere.
    Anything but text or None is returned as sent, for the caller to refuse."""
    message = member(choice, "message")
    if message is None:
        return member(choice, "text")
    content = member(message, "content")
    if content is not None and not isinstance(content, str):
        return content  # not text: the caller says so
    reasoning = member(message, "reasoning_content") or member(message, "reasoning")
    if isinstance(reasoning, str) and reasoning:
        return f"<think>\n{reasoning}\n</think>\n\n{content or ''}"
    return content


def choice_token_logprobs(choice: Any) -> list[TokenLogprob] | None:
    """The sampled tokens with their log-probabilities in OpenAI's chat shape: chat's
    logprobs.content as sent, completions' parallel tokens / token_logprobs / top_logprobs
    lists put in that shape. An entry that is not a token and a number is malformed."""
    logprobs = member(choice, "logprobs")
    content = member(logprobs, "content")
    if isinstance(content, list):
        entries: list[TokenLogprob] = []
        for item in content:
            tops = member(item, "top_logprobs") or []
            if not isinstance(tops, list):
                raise MalformedResponseError(f"top_logprobs is not a list (got {str(item)[:200]!r})")
            entries.append({**chat_entry(item), "top_logprobs": [chat_entry(top) for top in tops]})
        return entries
    tokens, values = member(logprobs, "tokens"), member(logprobs, "token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return None
    tops = member(logprobs, "top_logprobs") or [None] * len(tokens)
    if not isinstance(tops, list) or not all(top is None or isinstance(top, dict) for top in tops):
        raise MalformedResponseError(f"top_logprobs is not a list of objects (got {str(logprobs)[:200]!r})")
    return [
        {**top_logprob(*checked(token, value, logprobs)), "top_logprobs": by_logprob(top or {})}
        for token, value, top in zip(tokens, values, tops)
    ]


def checked(token: Any, logprob: Any, sent: Any) -> tuple[str, float]:
    """A token and its log-probability, or MalformedResponseError naming what was `sent`."""
    if not (isinstance(token, str) and isinstance(logprob, (int, float))):
        raise MalformedResponseError(f"a log-probability entry is not a token and a number (got {str(sent)[:200]!r})")
    return token, logprob


def chat_entry(item: Any) -> TopLogprob:
    """A chat {token, logprob, bytes} entry, checked."""
    token, logprob = checked(member(item, "token"), member(item, "logprob"), item)
    sent = member(item, "bytes")
    return {"token": token, "logprob": logprob, "bytes": sent if isinstance(sent, list) else None}


def by_logprob(top: dict[str, Any]) -> list[TopLogprob]:
    """A completions-API position's {token: logprob}, most likely first."""
    pairs = [checked(token, value, top) for token, value in top.items()]
    return [top_logprob(token, value) for token, value in sorted(pairs, key=lambda pair: -pair[1])]


def choice_logprobs(choice: Any) -> list[float] | None:
    """Sampled-token log-probabilities: chat's logprobs.content, completions' token_logprobs."""
    logprobs = member(choice, "logprobs")
    content = member(logprobs, "content")
    values = [member(item, "logprob") for item in content] if isinstance(content, list) else None
    if values is None:
        values = member(logprobs, "token_logprobs")
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise MalformedResponseError(f"log-probabilities that are not numbers (got {str(logprobs)[:200]!r})")
    return values
