"""What the wrapper costs: `solve()` through the OpenAI backend against the raw openai SDK
making the same sample requests to the same vLLM server, and `rfprm serve` against a client
doing the same work itself.

    python benchmarks/overhead.py                          # starts `vllm serve` on the demo generator
    python benchmarks/overhead.py --base-url http://127.0.0.1:8000/v1 --model demo
    python benchmarks/overhead.py --client-cpu --concurrency 256   # the client's CPU alone

For each concurrency C (questions in flight): rounds alternate raw and wrapped (each round's
order flipped), max(C, --per-round) distinct demo questions each, C at a time, majority_vote with n samples in one request
per question, as a user's own script would send. Reported: wall time per generated token
over all rounds of each side, the ratio wrapped / raw, CPU per question (the vLLM server
shares this machine's cores, so a client's CPU slows generation here), plus the process's first
wrapped request on its own line (what a one-shot script pays). Rounds a few seconds apart see a
different server (its batch, its cache, the other processes on the machine), so the "paired"
ratio has both sides ask the same questions at the same moment (`paired`) and compares their
summed request latency per generated token, with a 95% bootstrap interval over questions: the
figure to read against 1.05 (the vLLM server it starts runs without a prefix cache, which
would favour the second request of a question; an odd C keeps C - 1 in flight).
`--client-cpu` measures what the latency ratio at many requests in flight comes from: each
side's own CPU per question against a canned upstream in its own process (benchmarks/
canned_upstream.py), with no model server sharing the cores. The proxy part (`--proxy`) starts `rfprm serve` as
its own process: majority_vote through the proxy vs the raw SDK to vLLM, and best_of_n through
the proxy vs in-process `asolve` with the same PRM (the proxy's HTTP and JSON only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import openai
from servers import cpu_seconds, vllm_server

from rfprm_tts.bench.servers import free_port, server_process
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver

Run = Callable[[str], Awaitable[int]]  # one question -> generated tokens


def raw_sdk(client: openai.AsyncOpenAI, settings: Settings, n: int) -> Run:
    """What a user writes without us: one chat request with n samples per question."""
    g, sampling = settings.generator, settings.generator.sampling()

    async def one(question: str) -> int:
        messages = ([{"role": "system", "content": g.system_prompt}] if g.system_prompt else []) + [
            {"role": "user", "content": question}
        ]
        response = await client.chat.completions.create(
            model=g.model,
            messages=messages,
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_completion_tokens=sampling.max_tokens,
        )
        return response.usage.completion_tokens

    return one


def wrapped(solver: ReasoningSolver, strategy: str, n: int) -> Run:
    async def one(question: str) -> int:
        return (await solver.asolve(question, strategy=strategy, n=n)).usage.generated_tokens

    return one


def via_proxy(client: openai.AsyncOpenAI, strategy: str, n: int) -> Run:
    async def one(question: str) -> int:
        response = await client.chat.completions.create(
            model="rfprm",  # the proxy's name (serve.model_name)
            messages=[{"role": "user", "content": question}],
            extra_body={"rfprm": {"strategy": strategy, "n": n}},
        )
        return response.model_extra["rfprm"]["usage"]["generated_tokens"]

    return one


@dataclass
class Side:
    """One way of asking: its request, and the server process whose CPU counts with ours."""

    run: Run
    server_pid: int | None = None
    seconds: float = 0.0
    tokens: int = 0
    cpu_s: float = 0.0
    questions: int = 0

    def cpu(self) -> float:
        return cpu_seconds() + (cpu_seconds(self.server_pid) if self.server_pid else 0.0)

    async def timed(self, question: str, limit: asyncio.Semaphore | None = None) -> tuple[float, int]:
        """One request (under `limit`): its latency (from when it was sent) and its tokens."""
        async with limit or contextlib.nullcontext():
            started = time.perf_counter()
            tokens = await self.run(question)
            return time.perf_counter() - started, tokens

    async def warm(self, questions: list[str], in_flight: int) -> None:
        """Ask untimed, so the client's connection pool is open before what is timed."""
        limit = asyncio.Semaphore(in_flight)
        await asyncio.gather(*(self.timed(q, limit) for q in questions))

    async def round(self, questions: list[str], in_flight: int) -> float:
        """One round: every question, `in_flight` at a time; adds to the totals and returns
        its seconds per generated token."""
        limit = asyncio.Semaphore(in_flight)
        cpu, started = self.cpu(), time.perf_counter()
        tokens = sum(t for _, t in await asyncio.gather(*(self.timed(q, limit) for q in questions)))
        seconds = time.perf_counter() - started
        self.seconds, self.tokens, self.questions = (
            self.seconds + seconds,
            self.tokens + tokens,
            self.questions + len(questions),
        )
        self.cpu_s += self.cpu() - cpu
        return seconds / tokens


Timing = tuple[float, int]  # one request's latency and generated tokens


async def paired(ours: Side, theirs: Side, questions: list[str], in_flight: int) -> list[tuple[Timing, Timing]]:
    """Every question asked by both sides, (ours, theirs) timings per question. At 1 in flight
    the two requests of a question run one after the other (which side first alternates); above,
    both at once, `in_flight` / 2 questions at a time: the same question under the same server
    load for both sides."""
    limit = asyncio.Semaphore(max(1, in_flight // 2))

    async def pair(i: int, question: str) -> tuple[Timing, Timing]:
        first, second = (ours, theirs) if i % 2 else (theirs, ours)
        async with limit:
            if in_flight == 1:
                a, b = await first.timed(question), await second.timed(question)
            else:
                a, b = await asyncio.gather(first.timed(question), second.timed(question))
        return (a, b) if i % 2 else (b, a)

    return list(await asyncio.gather(*(pair(i, q) for i, q in enumerate(questions))))


def ratio_interval(pairs: list[tuple[Timing, Timing]], draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Ours / theirs in summed latency per generated token, with a 95% bootstrap interval over
    questions (a question's two timings are resampled together)."""

    def ratio(sample: list[tuple[Timing, Timing]]) -> float:
        ours = sum(o[0] for o, _ in sample) / sum(o[1] for o, _ in sample)
        theirs = sum(t[0] for _, t in sample) / sum(t[1] for _, t in sample)
        return ours / theirs

    rng = random.Random(seed)
    ratios = sorted(ratio(rng.choices(pairs, k=len(pairs))) for _ in range(draws))
    return ratio(pairs), ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


async def compare(
    name: str, ours: Side, theirs: Side, concurrencies: list[int], rounds: int, per_round: int, pairs: int
) -> list[str]:
    """Table rows: per concurrency, each side's time per generated token over all its rounds,
    the ratio, and each side's CPU per question (this process, plus its server's for the
    proxy). A round is max(C, per_round) questions, C in flight; rounds alternate sides (each
    round's order flipped); then both sides warm up (C questions each, untimed) and
    max(2C, pairs) questions are asked by both sides (`paired`), whose ratio has a bootstrap interval. Every round asks questions not asked before."""
    sizes = [max(c, per_round) for c in concurrencies]
    paired_sizes = [max(2 * c, pairs) for c in concurrencies]
    warm_ups = 2 * sum(concurrencies)
    fresh = iter(p.question for p in held_out_problems(1 + 2 * rounds * sum(sizes) + sum(paired_sizes) + warm_ups))
    take = lambda count: [next(fresh) for _ in range(count)]  # noqa: E731
    first = await ours.round(take(1), 1)  # the process's first solve of ours, cold
    lines = [f"| {name} | 1 (the process's first request, cold) | {first * 1e3:.3f} | | | | | |"]
    print(lines[-1], flush=True)
    for c, size, paired_size in zip(concurrencies, sizes, paired_sizes):
        mine, raw = Side(ours.run, ours.server_pid), Side(theirs.run, theirs.server_pid)
        for r in range(rounds):
            for side in (mine, raw) if r % 2 else (raw, mine):
                await side.round(take(size), c)
        # both clients open their connections before the pairs (whichever side's pool was warmer
        # won by more than the interval: 0.872 with no rounds before, 1.084 after two)
        await asyncio.gather(mine.warm(take(c), c), raw.warm(take(c), c))
        both, low, high = ratio_interval(await paired(mine, raw, take(paired_size), c))
        if rounds:
            m, t = mine.seconds / mine.tokens, raw.seconds / raw.tokens
            rounds_cells = (
                f"| {m * 1e3:.3f} | {t * 1e3:.3f} | {m / t:.3f} | {both:.3f} ({low:.3f}-{high:.3f}) | "
                f"{mine.cpu_s / mine.questions * 1e3:.1f} | {raw.cpu_s / raw.questions * 1e3:.1f} |"
            )
        else:  # --rounds 0: the paired measurement alone
            rounds_cells = f"| | | | {both:.3f} ({low:.3f}-{high:.3f}) | | |"
        lines.append(f"| {name} | {c} {rounds_cells}")
        print(lines[-1], flush=True)
    return lines


async def main_async(args: argparse.Namespace, base_url: str) -> list[str]:
    settings = Settings(
        generator={
            "backend": "openai",
            "base_url": base_url,
            "model": args.model,
            "max_concurrency": max(args.concurrency),
            "timeout_s": 600,
        }
    )
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=600, max_retries=0)
    lines = []
    async with ReasoningSolver(settings) as solver:
        lines += await compare(
            "solve(), majority_vote",
            Side(wrapped(solver, "majority_vote", args.n)),
            Side(raw_sdk(client, settings, args.n)),
            args.concurrency,
            args.rounds,
            args.per_round,
            args.pairs,
        )
        if args.proxy:
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "rfprm_tts.cli",
                "serve",
                "--port",
                str(port),
                "--backend",
                "openai",
                "--base-url",
                base_url,
                "--model",
                args.model,
            ]
            env = {
                "RFPRM_GENERATOR__MAX_CONCURRENCY": str(max(args.concurrency)),
                "RFPRM_GENERATOR__TIMEOUT_S": "600",
                "RFPRM_SERVE__MAX_CONCURRENT_PER_KEY": str(max(args.concurrency)),
            }
            with server_process(
                command, f"http://127.0.0.1:{port}/health", Path(args.logs) / "proxy.log", env
            ) as server:
                proxy = openai.AsyncOpenAI(
                    base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", timeout=600, max_retries=0
                )
                lines += await compare(
                    "proxy, majority_vote vs raw SDK",
                    Side(via_proxy(proxy, "majority_vote", args.n), server.pid),
                    Side(raw_sdk(client, settings, args.n)),
                    args.concurrency,
                    args.rounds,
                    args.per_round,
                    args.pairs,
                )
                lines += await compare(
                    "proxy, best_of_n vs in-process asolve",
                    Side(via_proxy(proxy, "best_of_n", args.n), server.pid),
                    Side(wrapped(solver, "best_of_n", args.n)),
                    args.concurrency,
                    args.rounds,
                    args.per_round,
                    args.pairs,
                )
                await proxy.close()
    await client.close()
    return lines


async def client_cpu(base_url: str, n: int, in_flight: int, questions: int) -> list[str]:
    """Each side's own CPU per question (this process's, all threads) against the canned upstream
    in its own process: what the wrapper adds on the client, without a model server sharing the
    cores. After a warm-up of each side, two rounds each, alternating."""
    settings = Settings(
        generator={"backend": "openai", "base_url": base_url, "model": "demo", "max_concurrency": in_flight}
    )
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=600, max_retries=0)
    fresh = iter(p.question for p in held_out_problems(6 * questions))
    cpu: dict[str, list[float]] = {"solve(), majority_vote": [], "raw openai SDK": []}
    async with ReasoningSolver(settings) as solver:
        sides = dict(zip(cpu, (Side(wrapped(solver, "majority_vote", n)), Side(raw_sdk(client, settings, n)))))
        for side in sides.values():
            await side.warm([next(fresh) for _ in range(questions)], in_flight)
        for _ in range(2):
            for name, side in sides.items():
                started = time.process_time()
                await side.warm([next(fresh) for _ in range(questions)], in_flight)
                cpu[name].append((time.process_time() - started) / questions * 1e6)
    await client.close()
    ours, raw = (statistics.mean(v) for v in cpu.values())
    return [
        f"client CPU per question, {questions} questions per round, {in_flight} in flight, n={n}, canned upstream:",
        *(f"  {name}: {' / '.join(f'{v:,.0f}' for v in values)} us" for name, values in cpu.items()),
        f"  ours - raw: {ours - raw:,.0f} us per question ({ours / raw:.2f}x)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: start vLLM on the demo generator)")
    parser.add_argument("--model", default="demo", help="the served model name")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 256], help="questions in flight")
    parser.add_argument("--n", type=int, default=8, help="samples per question")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating rounds per concurrency (even: each side first half the time)"
    )
    parser.add_argument("--per-round", type=int, default=64, help="questions per round (at least C)")
    parser.add_argument(
        "--pairs", type=int, default=256, help="questions each side asks in the paired measurement (at least 2C)"
    )
    parser.add_argument("--proxy", action="store_true", help="also measure `rfprm serve`")
    parser.add_argument("--logs", default=".", help="folder for the servers' logs")
    parser.add_argument(
        "--client-cpu",
        action="store_true",
        help="only each side's own CPU per question, against a canned upstream (no model server)",
    )
    args = parser.parse_args()
    if args.client_cpu:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "canned_upstream:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        log = Path(args.logs) / "canned.log"
        with server_process(command, f"http://127.0.0.1:{port}/health", log, cwd=Path(__file__).parent):
            lines = asyncio.run(client_cpu(f"http://127.0.0.1:{port}/v1", args.n, max(args.concurrency), 1000))
        print("\n".join(lines))
        return

    with ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            port = free_port()
            # no prefix cache: in the paired measurement the second of a question's two requests would find
            # its prompt cached, and the wrapped side, slower to send, would be second more often
            stack.enter_context(vllm_server(port, Path(args.logs) / "vllm.log", extra=("--no-enable-prefix-caching",)))
            base_url = f"http://127.0.0.1:{port}/v1"
        header = [
            "| what | questions in flight | ours ms/token | baseline ms/token | ratio, rounds | ratio, paired (95% CI) "
            "| ours CPU ms/question | baseline CPU ms/question |",
            "|---|---|---|---|---|---|---|---|",
        ]
        print("\n".join(header), flush=True)
        lines = asyncio.run(main_async(args, base_url))
    print(
        f"\nn={args.n} samples per question, {args.rounds} alternating rounds and max(2C, {args.pairs}) paired "
        f"questions per row; {sys.platform}, "
        f"openai {openai.__version__}"
    )
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
