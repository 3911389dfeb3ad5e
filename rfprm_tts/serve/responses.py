"""The proxy's answers on the wire: the chat-completion body, and the server-sent events of a
stream (progress events, the answer's content chunks, the finish and usage chunks)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Hashable
from dataclasses import asdict
from typing import Any

from rfprm_tts.grading.equivalence import answer_groups
from rfprm_tts.search.json_answers import answer_json
from rfprm_tts.search.progress import Progress
from rfprm_tts.search.tool_calls import canonical_json, whole_calls
from rfprm_tts.serve.protocol import ChatRequest
from rfprm_tts.trajectory import Candidate, SolveResult


def completion_body(
    result: SolveResult, chat: ChatRequest, model: str, request_id: str, choices: list[Candidate] | None = None
) -> dict[str, Any]:
    """The chat completion: `choices` (default: the chosen candidate alone) as its choices,
    the usage of the whole search once, and the `rfprm` object."""
    best = result.best
    usage = result.usage
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice(i, c, bool(chat.logprobs)) for i, c in enumerate(choices or [best])],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.generated_tokens,
            "total_tokens": usage.prompt_tokens + usage.generated_tokens,
        },
        "rfprm": {
            "answer": result.answer,
            "score": best.score if best else None,
            "strategy": result.strategy,
            "strategy_params": result.strategy_params,
            "usage": usage.model_dump(),
        },
    }
    if chat.rfprm.return_candidates:
        body["rfprm"]["candidates"] = [
            {
                "text": c.trajectory.text,
                "answer": c.answer,
                "score": c.score,
                "step_scores": c.step_scores,
                "finish_reason": c.finish_reason,
                "tool_calls": c.tool_calls,
                "error": c.error,
                "prm_note": c.prm_note,
            }
            for c in result.candidates
        ]
    return body


DONE = "data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def chunk_head(request_id: str, created: int, model: str) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}


def choice(index: int, c: Candidate | None, logprobs: bool = False) -> dict[str, Any]:
    """One choice of a chat completion: the candidate's text, or its tool calls; with
    `logprobs`, its tokens' log-probabilities (null when the upstream gave none)."""
    tokens = c.token_logprobs if c is not None and logprobs else None
    answered = {"logprobs": {"content": tokens, "refusal": None} if tokens is not None else None}
    if c is not None and c.tool_calls:
        message = {"role": "assistant", "content": c.trajectory.text or None, "tool_calls": c.tool_calls}
        return {"index": index, "message": message, "finish_reason": "tool_calls", **answered}
    finish = c.finish_reason if c and c.finish_reason in ("stop", "length") else "stop"
    return {
        "index": index,
        "message": {"role": "assistant", "content": c.trajectory.text if c else ""},
        "finish_reason": finish,
        **answered,
    }


def delta_chunk(
    head: dict[str, Any],
    delta: dict[str, Any],
    finish: str | None = None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    answered = {"index": index, "delta": delta, "finish_reason": finish}
    return sse({**head, "choices": [answered | ({"logprobs": logprobs} if logprobs else {})], **extra})


def progress_chunk(head: dict[str, Any], progress: Progress) -> str:
    """A search progress event: no choices (clients that only read choices skip it)."""
    return sse({**head, "choices": [], "rfprm": {"event": "progress", **asdict(progress)}})


def answer_chunks(body: dict[str, Any], include_usage: bool, piece: int = 64) -> list[str]:
    """Each choice as content chunks and its finish chunk (the last one with the `rfprm`
    object), and the usage chunk when asked for ([DONE] follows: the stream sends it). The
    stream's opening role chunk is choice 0's; the others get theirs here. A choice's token
    log-probabilities, when asked for, come whole with its first chunk."""
    head = chunk_head(body["id"], body["created"], body["model"])
    events = []
    for index, answered in enumerate(body["choices"]):
        text = answered["message"]["content"] or ""
        if index:
            events.append(delta_chunk(head, {"role": "assistant", "content": ""}, index=index))
        logprobs = answered.get("logprobs")
        pieces = [{"content": text[i : i + piece]} for i in range(0, len(text), piece)]
        if calls := answered["message"].get("tool_calls"):
            pieces.append({"tool_calls": [{"index": k, **call} for k, call in enumerate(calls)]})
        for k, delta in enumerate(pieces):
            events.append(delta_chunk(head, delta, index=index, logprobs=logprobs if k == 0 else None))
        last = index == len(body["choices"]) - 1
        extra = {"rfprm": body["rfprm"]} if last else {}
        events.append(
            delta_chunk(head, {}, answered["finish_reason"], index, logprobs if not pieces else None, **extra)
        )
    if include_usage:
        events.append(sse({**head, "choices": [], "usage": body["usage"]}))
    return events


def top_choices(result: SolveResult, n: int, shaped: bool = False) -> list[Candidate]:
    """Up to n choices with distinct answers: the chosen candidate, then the best-scored
    candidate of each other group of equivalent answers, larger groups first, then higher
    scores. Fewer when the search found fewer distinct answers. `shaped`: the request gave
    tools or a JSON format, so answers are the same by `shaped_key`, not by their \\boxed{}."""
    if result.best is None:
        return []
    pool = [result.best, *(c for c in result.candidates if c.ok and c is not result.best)]
    if shaped:
        by_key: dict[Hashable, list[int]] = {}
        for i, c in enumerate(pool):
            by_key.setdefault(shaped_key(c), []).append(i)
        groups = list(by_key.values())
    else:
        groups, _ = answer_groups([c.answer for c in pool])
    others = sorted(
        (g for g in groups if 0 not in g),
        key=lambda g: (-len(g), -max(_score(pool[i]) for i in g)),
    )
    return [result.best, *(max((pool[i] for i in g), key=_score) for g in others)][:n]


def shaped_key(c: Candidate) -> Hashable:
    """What makes two samples of a tools or JSON request the same answer: the same calls
    (arguments as canonical JSON), else the same JSON answer, else the same text."""
    if c.tool_calls:
        return ("calls", *whole_calls(c))
    try:
        return ("json", canonical_json(json.loads(answer_json(c.trajectory.text))))
    except (ValueError, RecursionError):
        return ("text", c.trajectory.text.strip())


def _score(c: Candidate) -> float:
    return c.score if c.score is not None else -math.inf
