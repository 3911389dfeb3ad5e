"""The proxy's answers on the wire: the chat-completion body, and the server-sent events of a
stream (progress events, the answer's content chunks, the finish and usage chunks)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from rfprm_tts.search.progress import Progress
from rfprm_tts.serve.protocol import ChatRequest
from rfprm_tts.trajectory import SolveResult


def completion_body(result: SolveResult, chat: ChatRequest, model: str, request_id: str) -> dict[str, Any]:
    best = result.best
    usage = result.usage
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": best.trajectory.text if best else ""},
                "finish_reason": (best.finish_reason if best and best.finish_reason in ("stop", "length") else "stop"),
            }
        ],
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


def delta_chunk(head: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    return sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


def progress_chunk(head: dict[str, Any], progress: Progress) -> str:
    """A search progress event: no choices (clients that only read choices skip it)."""
    return sse({**head, "choices": [], "rfprm": {"event": "progress", **asdict(progress)}})


def answer_chunks(body: dict[str, Any], include_usage: bool, piece: int = 64) -> list[str]:
    """The chosen answer as content chunks, the finish chunk (with the `rfprm` object), and
    the usage chunk when asked for ([DONE] follows: the stream sends it)."""
    head = chunk_head(body["id"], body["created"], body["model"])
    text = body["choices"][0]["message"]["content"]
    events = [delta_chunk(head, {"content": text[i : i + piece]}) for i in range(0, len(text), piece)]
    events.append(delta_chunk(head, {}, body["choices"][0]["finish_reason"], rfprm=body["rfprm"]))
    if include_usage:
        events.append(sse({**head, "choices": [], "usage": body["usage"]}))
    return events
