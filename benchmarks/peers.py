"""Side by side with optillm, the inference proxy a user would pick instead: the same vLLM
server (the demo generator), the same held-out demo problems, the same samples per question,
the same clients (the official openai SDK, `--clients` requests in flight).

optillm pins its own dependencies, so it lives in its own virtual environment and runs as its
own server process; it is installed and called, never imported here:

    python3 -m venv .peers/optillm && .peers/optillm/bin/pip install optillm==0.4.0
    python benchmarks/peers.py --optillm .peers/optillm/bin/optillm --problems 100 --n 5

Rows: vLLM directly (one sample; and one sample of the question as optillm rewrites it,
"User: <question>", to separate what its prompt rewriting costs from what its method does);
optillm's self_consistency (its sample count is fixed at 5) and bon (`--best-of-n`); `rfprm
serve` with majority_vote, weighted_best_of_n and best_of_n at the same n. Every request
carries the demo model's system prompt. Answers are graded like `rfprm bench` does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import openai
from servers import vllm_server

from rfprm_tts.bench.servers import free_port, server_process
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.grading.equivalence import compare
from rfprm_tts.text import extract_answer

SYSTEM_PROMPT = "Solve step by step."  # the demo world's (rfprm_tts/demo/train.py)


@dataclass
class Setup:
    name: str
    base_url: str
    model: str
    extra_body: dict | None = None
    n: int | None = None  # samples in one request, straight to vLLM
    rewrite: str = "{}"  # how the question is put in the user message


@dataclass
class Outcome:
    latency_s: float
    tokens: int
    correct: bool
    error: str | None = None


async def ask(client: openai.AsyncOpenAI, setup: Setup, question: str, gold: str, max_tokens: int) -> Outcome:
    started = time.perf_counter()
    try:
        response = await client.chat.completions.create(
            model=setup.model,
            n=setup.n or openai.NOT_GIVEN,
            extra_body=setup.extra_body,
            max_tokens=max_tokens,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": setup.rewrite.format(question)},
            ],
        )
    except openai.OpenAIError as exc:
        return Outcome(time.perf_counter() - started, 0, False, f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    answer = extract_answer(response.choices[0].message.content or "")
    verdict = answer is not None and await asyncio.to_thread(compare, answer, gold)
    return Outcome(latency, response.usage.completion_tokens if response.usage else 0, verdict is True)


async def run_setup(setup: Setup, problems, clients: int, max_tokens: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=setup.base_url, api_key="EMPTY", timeout=600, max_retries=0)
    limit = asyncio.Semaphore(clients)

    async def one(problem) -> Outcome:
        async with limit:
            return await ask(client, setup, problem.question, str(problem.answer), max_tokens)

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(p) for p in problems))
    wall = time.perf_counter() - started
    await client.close()
    ok = [o for o in outcomes if o.error is None]
    latencies = sorted(o.latency_s for o in ok) or [float("nan")]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    errors = [o.error for o in outcomes if o.error]
    row = (
        f"| {setup.name} | {len(problems) / wall:.2f} | {statistics.median(latencies):.2f} | {p99:.2f} | "
        f"{statistics.mean(o.tokens for o in ok) if ok else 0:.0f} | {sum(o.correct for o in outcomes) / len(problems):.2f} | "
        f"{len(errors)} |"
    )
    print(row + (f"  first error: {errors[0][:200]}" if errors else ""), flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optillm", required=True, help="the optillm command of its own virtual environment")
    parser.add_argument("--problems", type=int, default=100, help="held-out demo problems")
    parser.add_argument("--n", type=int, default=5, help="samples per question (optillm's self_consistency uses 5)")
    parser.add_argument("--clients", type=int, default=8, help="requests in flight")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=256,
        help="per answer, in every request (optillm's default, 4096, is more than the demo server's context)",
    )
    parser.add_argument("--logs", default=".", help="folder for the servers' logs")
    args = parser.parse_args()
    problems = held_out_problems(args.problems)
    logs = Path(args.logs)

    with ExitStack() as stack:
        vllm_port, optillm_port, rfprm_port = free_port(), free_port(), free_port()
        stack.enter_context(vllm_server(vllm_port, logs / "vllm.log"))
        upstream = f"http://127.0.0.1:{vllm_port}/v1"
        stack.enter_context(
            server_process(
                [
                    args.optillm,
                    "--base-url",
                    upstream,
                    "--port",
                    str(optillm_port),
                    "--best-of-n",
                    str(args.n),
                    "--log",
                    "warning",
                ],
                f"http://127.0.0.1:{optillm_port}/health",
                logs / "optillm.log",
                {"OPENAI_API_KEY": "EMPTY"},
            )
        )
        stack.enter_context(
            server_process(
                [
                    sys.executable,
                    "-m",
                    "rfprm_tts.cli",
                    "serve",
                    "--port",
                    str(rfprm_port),
                    "--backend",
                    "openai",
                    "--base-url",
                    upstream,
                    "--model",
                    "demo",
                ],
                f"http://127.0.0.1:{rfprm_port}/health",
                logs / "rfprm.log",
                {"RFPRM_GENERATOR__MAX_CONCURRENCY": "64", "RFPRM_SERVE__MAX_CONCURRENT_PER_KEY": str(args.clients)},
            )
        )
        optillm, ours = f"http://127.0.0.1:{optillm_port}/v1", f"http://127.0.0.1:{rfprm_port}/v1"
        setups = [
            Setup("vLLM, 1 sample", upstream, "demo", n=1),
            Setup("vLLM, 1 sample of 'User: <question>'", upstream, "demo", n=1, rewrite="User: {}"),
            Setup("optillm self_consistency (5 samples)", optillm, "self_consistency-demo"),
            Setup(f"optillm bon, n={args.n}", optillm, "bon-demo"),
            *(
                Setup(
                    f"rfprm serve {strategy}, n={args.n}", ours, "rfprm", {"rfprm": {"strategy": strategy, "n": args.n}}
                )
                for strategy in ("majority_vote", "weighted_best_of_n", "best_of_n")
            ),
        ]
        header = [
            "| setup | requests/s | p50 s | p99 s | generated tokens/request | accuracy | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        print("\n".join(header), flush=True)
        rows = [
            row for setup in setups for row in asyncio.run(run_setup(setup, problems, args.clients, args.max_tokens))
        ]

    print(
        f"\n{args.problems} held-out demo problems, {args.clients} requests in flight, n={args.n}, openai {openai.__version__}"
    )
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
