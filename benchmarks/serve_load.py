"""Load on `rfprm serve`, on loopback: many concurrent clients (the official openai SDK) for a
fixed number of requests, with faults injected into a share of the upstream calls. Prints
one table: requests/s, latency percentiles, the PRM batch sizes the proxy achieved, errors
and lost requests.

    python benchmarks/serve_load.py --clients 64 --requests 512 --fault-rate 0.05
    python benchmarks/serve_load.py --answers long      # answers of ~300 tokens in 4-5 steps

The upstream is a local OpenAI-compatible stand-in that answers demo-world questions after a
random delay and answers a `--fault-rate` share of calls with HTTP 500; the PRM is the real
demo PRM, in the proxy's process. `--answers short` sends one-line answers (the PRM's work is
then negligible); `--answers long` sends worked solutions of a few hundred tokens in several
steps (each step a sentence and its arithmetic, with a one-digit slip in 40% of answers), so
the PRM scores what a real answer costs. The proxy retries failed upstream calls (5 retries,
backoff 0.05-0.5 s); the clients never retry (max_retries=0), so every error is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import select
import socket
import statistics
import struct
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai

from rfprm_tts.demo.arithmetic import digit_slip, held_out_problems
from rfprm_tts.serve import serving
from rfprm_tts.settings import Settings

LEAD_INS = [
    "First, following the order of operations, we work out",
    "Next, we take the result so far and compute",
    "Then we carry on with the next operation,",
    "Now the remaining operation gives",
]


def worked_solution(problem, rng: random.Random, slip: bool) -> str:
    """A long answer: every step of the problem's solution after a sentence (about 300
    tokens in all for the character-level demo tokenizer), a one-digit slip when `slip`."""
    steps = problem.solution().split("\n\n")
    if slip:
        steps = digit_slip(steps, rng) or steps
    body = [
        f"{LEAD_INS[min(i, 3)]} the expression step by step and write it out in full: {step}"
        for i, step in enumerate(steps[:-1])
    ]
    return "\n\n".join([*body, steps[-1]])


FAULTS = ("500", "timeout", "reset", "truncated", "null-choices")
TAG = re.compile(r" \[request (\d+)\]$")  # what a benchmark client appends to its question


def tagged(question: str, tag: int) -> str:
    return f"{question} [request {tag}]"


def closed_by_peer(connection: socket.socket) -> bool:
    """The proxy closed this connection (it gave up on the call): readable, with nothing to read."""
    readable, _, _ = select.select([connection], [], [], 0)
    return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""


def start_upstream(
    fault_rate: float,
    delay_s: tuple[float, float],
    seed: int,
    long_answers: bool,
    faults: Sequence[str] = ("500",),
    hang_s: float = 5.0,
) -> tuple[ThreadingHTTPServer, dict]:
    """A chat-completions stand-in: n samples per call, each a correct or subtly wrong
    solution of the demo question it is asked (a question it does not know gets answers only
    math-verify can compare); a `fault_rate` share of calls fail, each in one of `faults`:
    HTTP 500, no answer for `hang_s`, a reset connection, truncated JSON, `choices: null`.
    `counts` has the calls, the faults, and per tagged question (see `tagged`) when each of
    its calls finished answering; a call whose connection the proxy closed meanwhile is
    counted as abandoned and not answered."""
    rng, lock = random.Random(seed), threading.Lock()
    counts: dict = {"calls": 0, "faults": 0, "abandoned": 0, "finished": {}}
    solutions = {p.question: p for p in held_out_problems()}

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            except ValueError:  # the proxy dropped the call mid-body (its client cancelled): nobody to answer
                with lock:
                    counts["abandoned"] += 1
                return
            with lock:
                counts["calls"] += 1
                fault = rng.choice(faults) if rng.random() < fault_rate else None
                counts["faults"] += fault is not None
                wait, draws = rng.uniform(*delay_s), [rng.random() for _ in range(body.get("n", 1))]
            if not self.wait(hang_s if fault == "timeout" else wait):
                return
            if fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            if fault == "500":
                self.reply(500, {"error": {"message": "injected fault"}})
                return
            content = body["messages"][-1]["content"]
            tag = TAG.search(content)
            problem = solutions.get(TAG.sub("", content))
            if problem is None:
                texts = [f"The answer is \\boxed{{9^{{9^{{9^{{{i + 1}}}}}}}}}." for i in range(len(draws))]
            elif long_answers:
                with lock:
                    texts = [worked_solution(problem, rng, slip=d >= 0.6) for d in draws]
            else:
                texts = [f"The answer is \\boxed{{{problem.answer + (0 if d < 0.6 else 1)}}}." for d in draws]
            completion = sum(len(t) for t in texts)  # one token a character, as the demo tokenizer
            choices = [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": 30, "completion_tokens": completion, "total_tokens": 30 + completion}
            payload = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "up",
                "choices": None if fault == "null-choices" else choices,
                "usage": usage,
            }
            self.reply(200, payload, truncated=fault == "truncated")
            if tag:
                with lock:
                    counts["finished"].setdefault(int(tag.group(1)), []).append(time.monotonic())

        def wait(self, seconds: float) -> bool:
            """Sleep, watching the connection: False (and counted) when the proxy gave up."""
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.02))
                if closed_by_peer(self.connection):
                    with lock:
                        counts["abandoned"] += 1
                    return False
            return True

        def reply(self, status: int, payload: dict, truncated: bool = False) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data) // 2 if truncated else len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if truncated else data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counts


async def clients(url: str, questions: list[str], concurrency: int, n: int) -> tuple[list[float], list[str], int, list]:
    """Every question once, `concurrency` at a time; latencies, errors, answered count, and
    the usage of each answer."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="load", max_retries=0, timeout=600)
    todo = list(enumerate(questions))
    latencies, errors, answered, usages = [], [], set(), []

    async def worker() -> None:
        while todo:
            i, question = todo.pop()
            start = time.perf_counter()
            try:
                response = await client.chat.completions.create(
                    model="rfprm", messages=[{"role": "user", "content": question}], extra_body={"rfprm": {"n": n}}
                )
                if response.choices[0].message.content:
                    answered.add(i)
                latencies.append(time.perf_counter() - start)
                usages.append(response.model_extra["rfprm"]["usage"])
            except openai.APIError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()
    return latencies, errors, len(answered), usages


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics").read().decode()
    return {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--n", type=int, default=4, help="sample budget per request (best_of_n)")
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--answers",
        choices=["short", "long"],
        default="short",
        help="one-line answers, or worked solutions of a few hundred tokens in several steps",
    )
    args = parser.parse_args()

    upstream, counts = start_upstream(args.fault_rate, (0.02, 0.08), args.seed, args.answers == "long")
    settings = Settings(
        n=args.n,
        generator={
            "backend": "openai",
            "base_url": f"http://127.0.0.1:{upstream.server_address[1]}/v1",
            "model": "up",
            "max_retries": 5,
            "backoff_s": 0.05,
            "backoff_max_s": 0.5,
            "max_concurrency": 256,
        },
        serve={"port": 0, "max_concurrent_per_key": args.clients, "batch_window_ms": args.batch_window_ms},
    )
    problems = held_out_problems()
    questions = [problems[i % len(problems)].question for i in range(args.requests)]
    with serving(settings) as url:
        started = time.perf_counter()
        latencies, errors, answered, usages = asyncio.run(clients(url, questions, args.clients, args.n))
        seconds = time.perf_counter() - started
        metrics = scrape(url)
    upstream.shutdown()

    batches = metrics.get("rfprm_prm_batch_requests_count", 0)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    per_request = lambda key: statistics.mean(u[key] for u in usages) if usages else float("nan")  # noqa: E731
    rows = [
        ("answers", f"{args.answers}: {per_request('generated_tokens') / args.n:.0f} tokens per sample"),
        ("requests (clients)", f"{args.requests} ({args.clients} concurrent, n={args.n})"),
        ("requests/s", f"{args.requests / seconds:.1f}"),
        ("latency p50 / p99", f"{quantiles[49]:.3f} s / {quantiles[98]:.3f} s"),
        ("PRM tokens per request (mean)", f"{per_request('prm_tokens'):.0f}"),
        ("PRM calls", f"{batches:.0f}"),
        ("requests per PRM call (mean)", f"{metrics.get('rfprm_prm_batch_requests_sum', 0) / max(batches, 1):.1f}"),
        (
            "trajectories per PRM call (mean)",
            f"{metrics.get('rfprm_prm_batch_trajectories_sum', 0) / max(batches, 1):.1f}",
        ),
        (
            "upstream calls / injected faults",
            f"{counts['calls']} / {counts['faults']} ({counts['faults'] / max(counts['calls'], 1):.1%})",
        ),
        ("errors returned to clients", str(len(errors))),
        ("lost requests (no answer, no error)", str(args.requests - answered - len(errors))),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for error in errors[:5]:
        print("error:", error)


if __name__ == "__main__":
    main()
