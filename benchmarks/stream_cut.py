"""Streamed thinking against chunks, over vLLM's real server on the demo-think generator: the
same thinking control run both ways on the same held-out problems, with what the server itself
generated and read (its Prometheus counters), its requests, wall time and accuracy.

    python benchmarks/stream_cut.py --limit 30 --n 8 --method probe
    python benchmarks/stream_cut.py --limit 30 --n 8 --method short1

Each mode is one `rfprm bench --backend openai` run of majority_vote against the same server,
`generator.stream_thinking` ("on" or "off") the only difference. `probe`: answer probes every 16
thinking tokens, 2 agreeing (benchmarks/thinking.py's setting); `short1`: short-1@k, the first
sample to answer stops the others. The samples differ between the runs (each request draws its
own), so the accuracies differ by sampling noise; the token and request counts are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import vllm_server

from rfprm_tts.bench.servers import free_port, prometheus_counter

COUNTERS = {  # vLLM's own counts; an aborted request is not counted as one finished
    "server generated": ("vllm:generation_tokens_total", ""),
    "server prompt": ("vllm:prompt_tokens_total", ""),
    "requests finished": ("vllm:request_success_total", ""),
}
METHODS = {
    "probe": ['early_exit="probe"', "probe_every=16", "probe_agree=2"],
    "short1": ["finish_first=1", "probe_every=32"],
}


def bench(url: str, out: Path, args: argparse.Namespace, stream: str) -> float:
    """One bench run; its wall time."""
    command = [
        *(sys.executable, "-m", "rfprm_tts.cli", "bench", "--dataset", "demo-think", "--limit", str(args.limit)),
        *("--strategies", "majority_vote", "--budgets", str(args.n), "--backend", "openai", "--base-url", url),
        *("--model", "demo-think", "--prm", "demo-think", "--max-tokens", "384"),
        *("--concurrency", str(args.concurrency), "--out", str(out)),
        *(option for param in METHODS[args.method] for option in ("--param", param)),
    ]
    env = {**os.environ, "RFPRM_GENERATOR__STREAM_THINKING": stream}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=40, help="held-out demo-think problems")
    parser.add_argument("--n", type=int, default=8, help="samples per problem")
    parser.add_argument("--concurrency", type=int, default=8, help="problems solved at once")
    parser.add_argument("--method", choices=list(METHODS), default="probe", help="the thinking control")
    args = parser.parse_args()
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    table = []
    with tempfile.TemporaryDirectory() as tmp, vllm_server(port, Path(tmp) / "vllm.log", world="demo-think"):
        for stream in ("on", "off"):
            before = {key: prometheus_counter(root, *counter) for key, counter in COUNTERS.items()}
            out = Path(tmp) / stream
            wall = bench(f"{root}/v1", out, args, stream)
            served = {key: prometheus_counter(root, *counter) - before[key] for key, counter in COUNTERS.items()}
            rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()]
            table.append(
                {
                    "stream_thinking": stream,
                    "accuracy": sum(r["correct"] for r in rows) / len(rows),
                    "generated (ours)": sum(r["generated_tokens"] for r in rows),
                    "probe": sum(r["probe_tokens"] for r in rows),
                    **{key: int(value) for key, value in served.items()},
                    "wall s": round(wall, 1),
                }
            )
    print(f"{args.limit} demo-think problems, majority_vote N={args.n}, {' '.join(METHODS[args.method])}")
    print("| " + " | ".join(table[0]) + " |")
    print("|" + " --- |" * len(table[0]))
    for row in table:
        print(
            "| "
            + " | ".join(f"{v:.3f}" if isinstance(v, float) and k == "accuracy" else str(v) for k, v in row.items())
            + " |"
        )


if __name__ == "__main__":
    main()
