"""A soak of `rfprm serve` against faults, cancels and a hostile client, on loopback only.

    python benchmarks/serve_soak.py                                   # 256 clients, 10,000 requests
    python benchmarks/serve_soak.py --clients 32 --requests 1000 --max-seconds 120
    python benchmarks/serve_soak.py --load-nice 10                    # the load yields the CPU to the proxy

The proxy runs as its own process (`rfprm serve`, measured from outside: its memory from
/proc); the upstream is serve_load.py's stand-in with every fault kind injected (500s,
timeouts, resets, truncated JSON, `choices: null`). Clients send ordinary requests, a
`--cancel-rate` share of them giving up after a random 0.05-1 s. A hostile client runs
beside them: bodies sent in part and left open, JSON nested 5,000 levels, integers of 5,000
digits, lone surrogates, votes over answers only math-verify can compare, 900 KB prompts. A
prober in a process of its own asks /health every 50 ms. Printed: answered, errors by status, lost (no answer, no
error), latency p50/p99, /health p99, the proxy's memory after warm-up and at the end, and
upstream calls of cancelled requests that still ran to completion after the cancel.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import random
import statistics
import sys
import time
from pathlib import Path

import httpx
from serve_load import FAULTS, start_upstream, tagged

from rfprm_tts.bench.servers import free_port, server_process
from rfprm_tts.demo.arithmetic import held_out_problems

KEY = "soak-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
WARM_UP_S = 20.0


def rss_mb(pid: int) -> float:
    """A process's resident memory, with its children's (the math-verify workers)."""
    total = 0
    for child in [pid, *children(pid)]:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")


class Soak:
    def __init__(self, url: str, args: argparse.Namespace):
        self.url, self.args = url, args
        self.rng = random.Random(args.seed)
        self.latencies: list[float] = []
        self.statuses: collections.Counter[str] = collections.Counter()  # one count per request sent
        self.sent = 0
        self.cancelled_at: dict[int, float] = {}
        self.hostile: collections.Counter[str] = collections.Counter()
        self.done = asyncio.Event()

    async def clients(self) -> None:
        problems = held_out_problems()
        todo = iter(range(self.args.requests))
        deadline = time.monotonic() + self.args.max_seconds
        limits = httpx.Limits(max_connections=self.args.clients + 8)
        async with httpx.AsyncClient(base_url=self.url, headers=HEADERS, timeout=120, limits=limits) as client:

            async def worker() -> None:
                for tag in todo:
                    if time.monotonic() > deadline:
                        return
                    question = tagged(problems[tag % len(problems)].question, tag)
                    body = {"messages": [{"role": "user", "content": question}], "rfprm": {"n": self.args.n}}
                    await self.one(client, tag, body)

            await asyncio.gather(*(worker() for _ in range(self.args.clients)))
        self.done.set()

    async def one(self, client: httpx.AsyncClient, tag: int, body: dict) -> None:
        """One request; its outcome counted in `statuses` (a request without one is lost)."""
        self.sent += 1
        started = time.perf_counter()
        cancel_after = self.rng.uniform(0.05, 1.0) if self.rng.random() < self.args.cancel_rate else None
        try:
            response = await asyncio.wait_for(client.post("/v1/chat/completions", json=body), cancel_after)
        except TimeoutError:
            self.cancelled_at[tag] = time.monotonic()
            self.statuses["cancelled by client"] += 1
            return
        except httpx.HTTPError as exc:
            self.statuses[f"transport: {type(exc).__name__}"] += 1
            return
        try:
            ok = response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            self.statuses[f"{response.status_code} malformed body"] += 1
            return
        self.statuses["answered" if ok else str(response.status_code)] += 1
        if ok:
            self.latencies.append(time.perf_counter() - started)

    async def attacker(self) -> None:
        """One hostile request at a time, of each kind in turn, until the clients are done."""
        host, port = self.url.removeprefix("http://").split(":")
        kinds = ["half-body", "deep-json", "huge-int", "surrogate", "vote", "big-prompt"]
        async with httpx.AsyncClient(base_url=self.url, headers=HEADERS, timeout=120) as client:
            for i in range(10**9):
                if self.done.is_set():
                    return
                kind = kinds[i % len(kinds)]
                if kind == "half-body":
                    await self.half_body(host, int(port))
                    status = "sent"
                else:
                    response = await client.post(
                        "/v1/chat/completions", content=hostile_body(kind), headers={"content-type": "application/json"}
                    )
                    status = str(response.status_code)
                self.hostile[f"{kind} {status}"] += 1
                await asyncio.sleep(0.2)

    async def half_body(self, host: str, port: int) -> None:
        """Headers and part of a body, left open for 2 s (the proxy's body timeout is longer)."""
        _reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"messages": ['.encode()
        )
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()


def hostile_body(kind: str) -> bytes:
    ask = '{"messages": [{"role": "user", "content": %s}]%s}'
    if kind == "deep-json":
        return b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    if kind == "huge-int":
        return (ask % ('"q"', ', "seed": ' + "9" * 5000)).encode()
    if kind == "surrogate":
        return (ask % ('"\\ud800"', "")).encode()
    if kind == "vote":  # the upstream answers an unknown question with answers only math-verify compares
        return (ask % ('"Which tower?"', ', "rfprm": {"strategy": "majority_vote", "n": 8}')).encode()
    return (ask % (json.dumps("Think. " * 130_000), "")).encode()  # about 900 KB


def probe(url: str, stop: multiprocessing.synchronize.Event, out: multiprocessing.connection.Connection) -> None:
    """/health every 50 ms until `stop`, from a process of its own (so the clients' work in
    this one does not add to what it measures); sends back the latencies."""
    latencies = []
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(f"{url}/health")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    out.send(latencies)


async def run(url: str, args: argparse.Namespace, proxy_pid: int) -> tuple[Soak, list[float], float, float]:
    """The soak; its clients' outcomes, /health latencies, the proxy's memory after warm-up and at the end."""
    soak = Soak(url, args)
    spawn = multiprocessing.get_context("spawn")
    stop, (receive, send) = spawn.Event(), spawn.Pipe(duplex=False)
    prober = spawn.Process(target=probe, args=(url, stop, send), daemon=True)
    prober.start()
    if args.load_nice:  # the proxy and the prober keep their priority: as if the load ran elsewhere
        os.nice(args.load_nice)
    tasks = [asyncio.ensure_future(soak.clients())]
    if args.hostile:
        tasks.append(asyncio.ensure_future(soak.attacker()))
    await asyncio.sleep(WARM_UP_S)
    warm = rss_mb(proxy_pid)
    await asyncio.gather(*tasks)
    stop.set()
    health = await asyncio.to_thread(receive.recv)
    prober.join()
    return soak, health, warm, rss_mb(proxy_pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop sending new requests after this")
    parser.add_argument("--n", type=int, default=4, help="sample budget per request (best_of_n)")
    parser.add_argument("--fault-rate", type=float, default=0.09)
    parser.add_argument("--cancel-rate", type=float, default=0.1)
    parser.add_argument("--no-hostile", dest="hostile", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--load-nice",
        type=int,
        default=0,
        help="lower the priority of this process (the clients and the stand-in upstream) by this much once the "
        "proxy and the /health prober run: on a small machine, the load then competes less with what is measured, "
        "as if it ran on another machine",
    )
    args = parser.parse_args()

    upstream, counts = start_upstream(
        args.fault_rate, (0.02, 0.3), args.seed, long_answers=False, faults=FAULTS, hang_s=3.0
    )
    port = free_port()
    env = {
        "RFPRM_GENERATOR__BACKEND": "openai",
        "RFPRM_GENERATOR__MODEL": "up",
        "RFPRM_GENERATOR__BASE_URL": f"http://127.0.0.1:{upstream.server_address[1]}/v1",
        "RFPRM_GENERATOR__TIMEOUT_S": "2",
        "RFPRM_GENERATOR__MAX_RETRIES": "3",
        "RFPRM_GENERATOR__BACKOFF_S": "0.05",
        "RFPRM_GENERATOR__BACKOFF_MAX_S": "0.5",
        "RFPRM_GENERATOR__MAX_CONCURRENCY": "512",
        "RFPRM_SERVE__API_KEYS": json.dumps([KEY]),
        "RFPRM_SERVE__MAX_CONCURRENT_PER_KEY": str(args.clients + 16),
    }
    rfprm = str(Path(sys.executable).parent / "rfprm")
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_soak_{port}.log"
    started = time.perf_counter()
    with server_process(
        [rfprm, "serve", "--port", str(port)], f"http://127.0.0.1:{port}/health", log, env=env, timeout_s=300
    ) as proxy:
        soak, health, warm, end = asyncio.run(run(f"http://127.0.0.1:{port}", args, proxy.pid))
    seconds = time.perf_counter() - started
    upstream.shutdown()

    late = sum(
        1 for tag, at in soak.cancelled_at.items() for done in counts["finished"].get(tag, []) if done > at + 0.1
    )
    cancelled_calls = sum(len(counts["finished"].get(tag, [])) for tag in soak.cancelled_at)
    sent = soak.sent
    errors = {
        status: count for status, count in soak.statuses.items() if status not in ("answered", "cancelled by client")
    }
    rows = [
        ("requests (clients), seconds", f"{sent} ({args.clients} concurrent, n={args.n}), {seconds:.0f} s"),
        ("answered", str(soak.statuses["answered"])),
        ("cancelled by their client", str(soak.statuses["cancelled by client"])),
        ("errors by status", json.dumps(errors) if errors else "none"),
        ("lost (no answer, no error)", str(sent - sum(soak.statuses.values()))),
        (
            "latency p50 / p99 (answered)",
            f"{quantile(soak.latencies, 50):.3f} s / {quantile(soak.latencies, 99):.3f} s",
        ),
        ("/health p99 / max", f"{quantile(health, 99) * 1000:.0f} ms / {max(health, default=0) * 1000:.0f} ms"),
        ("proxy memory after warm-up / end", f"{warm:.0f} MB / {end:.0f} MB ({(end - warm) / max(warm, 1):+.0%})"),
        ("upstream calls / injected faults", f"{counts['calls']} / {counts['faults']}"),
        ("upstream calls abandoned by the proxy", str(counts["abandoned"])),
        (
            "cancelled requests' upstream calls run to completion after the cancel",
            f"{late} of {cancelled_calls} answered calls of {len(soak.cancelled_at)} cancelled requests",
        ),
        ("hostile requests (kind status: count)", json.dumps(dict(sorted(soak.hostile.items())))),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"proxy log: {log}")


if __name__ == "__main__":
    main()
