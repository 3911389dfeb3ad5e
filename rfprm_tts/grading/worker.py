"""The math-verify worker program that rfprm_tts.grading.equivalence talks to over a pipe.

Reads one JSON object a line, {"a": ..., "b": ...}, and answers one a line: {"equal": bool},
or {"error": "..."} when math-verify raised. It runs as its own program (`python -m
rfprm_tts.grading.worker`), so math-verify's SIGALRM timeouts have a main thread and the
caller's main module is never imported here.
"""

from __future__ import annotations

import json
import sys


def verify(a: str, b: str) -> bool:
    from math_verify import parse, verify

    def read(text: str):
        return parse(text if "$" in text or "\\boxed" in text else f"${text}$")

    return bool(verify(read(a), read(b))) or bool(verify(read(b), read(a)))


def main() -> None:
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply: dict[str, bool | str] = {"equal": verify(request["a"], request["b"])}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
