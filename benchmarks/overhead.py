"""What the wrapper costs: `solve()` through the OpenAI backend against the raw openai SDK
making the same sample requests to the same vLLM server, and `rfprm serve` against a client
doing the same work itself.

    python benchmarks/overhead.py                          # starts `vllm serve` on the demo generator
    python benchmarks/overhead.py --base-url http://127.0.0.1:8000/v1 --model demo

For each concurrency C (questions in flight): rounds alternate raw and wrapped (each round's
order flipped), C distinct demo questions each, majority_vote with n samples in one request
per question, as a user's own script would send. Reported: wall time per generated token and
the ratio wrapped / raw (median over rounds), plus the first wrapped round of the process on its
own line (what a one-shot script pays). The proxy part (`--proxy`) starts `rfprm serve` as
its own process: majority_vote through the proxy vs the raw SDK to vLLM, and best_of_n through
the proxy vs in-process `asolve` with the same PRM (the proxy's HTTP and JSON only).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import openai
from servers import free_port, process, vllm_server

from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver

Run = Callable[[list[str]], Awaitable[int]]  # questions -> generated tokens


def raw_sdk(client: openai.AsyncOpenAI, settings: Settings, n: int) -> Run:
    """What a user writes without us: one chat request with n samples per question."""
    g, sampling = settings.generator, settings.generator.sampling()

    async def run(questions: list[str]) -> int:
        async def one(question: str) -> int:
            messages = ([{"role": "system", "content": g.system_prompt}] if g.system_prompt else []) + [
                {"role": "user", "content": question}]
            response = await client.chat.completions.create(
                model=g.model, messages=messages, n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                max_completion_tokens=sampling.max_tokens,
            )
            return response.usage.completion_tokens

        return sum(await asyncio.gather(*(one(q) for q in questions)))

    return run


def wrapped(solver: ReasoningSolver, strategy: str, n: int) -> Run:
    async def run(questions: list[str]) -> int:
        results = await asyncio.gather(*(solver.asolve(q, strategy=strategy, n=n) for q in questions))
        return sum(r.usage.generated_tokens for r in results)

    return run


def via_proxy(client: openai.AsyncOpenAI, strategy: str, n: int) -> Run:
    async def run(questions: list[str]) -> int:
        async def one(question: str) -> int:
            response = await client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": question}],
                extra_body={"rfprm": {"strategy": strategy, "n": n}},
            )
            return response.model_extra["rfprm"]["usage"]["generated_tokens"]

        return sum(await asyncio.gather(*(one(q) for q in questions)))

    return run


async def timed(run: Run, questions: list[str]) -> float:
    """Seconds per generated token of one round."""
    started = time.perf_counter()
    tokens = await run(questions)
    return (time.perf_counter() - started) / tokens


async def compare(name: str, ours: Run, theirs: Run, concurrencies: list[int], rounds: int) -> list[str]:
    """Table rows: per concurrency, the median per-token time of each side and the ratio.
    Every round asks questions not asked before (no side gets the other's prefix cache)."""
    fresh = iter(p.question for p in held_out_problems(concurrencies[0] + 2 * rounds * sum(concurrencies)))
    take = lambda count: [next(fresh) for _ in range(count)]  # noqa: E731
    first = await timed(ours, take(concurrencies[0]))  # the process's first round of ours, cold
    lines = [f"| {name} | {concurrencies[0]} (first round, cold) | {first * 1e3:.3f} | | |"]
    print(lines[-1], flush=True)
    for c in concurrencies:
        mine, raw = [], []
        for r in range(rounds):
            order = [(ours, mine), (theirs, raw)] if r % 2 else [(theirs, raw), (ours, mine)]
            for run, sink in order:
                sink.append(await timed(run, take(c)))
        m, t = statistics.median(mine), statistics.median(raw)
        lines.append(f"| {name} | {c} | {m * 1e3:.3f} | {t * 1e3:.3f} | {m / t:.3f} |")
        print(lines[-1], flush=True)
    return lines


async def main_async(args: argparse.Namespace, base_url: str) -> list[str]:
    settings = Settings(generator={"backend": "openai", "base_url": base_url, "model": args.model,
                                   "max_concurrency": max(args.concurrency), "timeout_s": 600})
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=600, max_retries=0)
    lines = []
    async with ReasoningSolver(settings) as solver:
        lines += await compare("solve(), majority_vote", wrapped(solver, "majority_vote", args.n),
                               raw_sdk(client, settings, args.n), args.concurrency, args.rounds)
        if args.proxy:
            port = free_port()
            command = [sys.executable, "-m", "rfprm_tts.cli", "serve", "--port", str(port), "--backend", "openai",
                       "--base-url", base_url, "--model", args.model]
            env = {"RFPRM_GENERATOR__MAX_CONCURRENCY": str(max(args.concurrency)), "RFPRM_GENERATOR__TIMEOUT_S": "600",
                   "RFPRM_SERVE__MAX_CONCURRENT_PER_KEY": str(max(args.concurrency))}
            with process(command, f"http://127.0.0.1:{port}/health", Path(args.logs) / "proxy.log", env):
                proxy = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", timeout=600, max_retries=0)
                lines += await compare("proxy, majority_vote vs raw SDK", via_proxy(proxy, "majority_vote", args.n),
                                       raw_sdk(client, settings, args.n), args.concurrency, args.rounds)
                lines += await compare("proxy, best_of_n vs in-process asolve", via_proxy(proxy, "best_of_n", args.n),
                                       wrapped(solver, "best_of_n", args.n), args.concurrency, args.rounds)
                await proxy.close()
    await client.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: start vLLM on the demo generator)")
    parser.add_argument("--model", default="demo", help="the served model name")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 256], help="questions in flight")
    parser.add_argument("--n", type=int, default=8, help="samples per question")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per concurrency (even: each side first half the time)")
    parser.add_argument("--proxy", action="store_true", help="also measure `rfprm serve`")
    parser.add_argument("--logs", default=".", help="folder for the servers' logs")
    args = parser.parse_args()

    with ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            port = free_port()
            stack.enter_context(vllm_server(port, Path(args.logs) / "vllm.log"))
            base_url = f"http://127.0.0.1:{port}/v1"
        header = ["| what | questions in flight | ours ms/token | baseline ms/token | ratio |", "|---|---|---|---|---|"]
        print("\n".join(header), flush=True)
        lines = asyncio.run(main_async(args, base_url))
    print(f"\nn={args.n} samples per question, median of {args.rounds} alternating rounds; {sys.platform}, "
          f"openai {openai.__version__}")
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
