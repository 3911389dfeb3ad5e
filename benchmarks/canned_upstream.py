"""An OpenAI-compatible chat server that answers every request at once with the same demo-like
choices (n of them): an upstream that costs its caller nothing but HTTP, so a client's own CPU
per question can be read apart from a model server's (benchmarks/overhead.py --client-cpu).

    python -m uvicorn canned_upstream:app --port 8000     # from benchmarks/
"""

from __future__ import annotations

import json

ANSWER = "Step 1: 3 * 4 = 12\n\nStep 2: 12 + 5 = 17\n\nThe answer is \\boxed{17}"


def completion(n: int) -> bytes:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"} for i in range(n)
    ]
    usage = {"prompt_tokens": 30, "completion_tokens": 25 * n, "total_tokens": 30 + 25 * n}
    body = {"id": "canned", "object": "chat.completion", "created": 0, "model": "demo", "choices": choices}
    return json.dumps({**body, "usage": usage}).encode()


async def app(scope, receive, send) -> None:
    """A bare ASGI app: GET anything is healthy; POST returns `n` canned choices."""
    if scope["type"] != "http":
        return
    request = b""
    while True:
        message = await receive()
        request += message.get("body", b"")
        if not message.get("more_body"):
            break
    body = completion(int(json.loads(request).get("n") or 1)) if scope["method"] == "POST" else b"{}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
