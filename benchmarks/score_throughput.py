"""Throughput of `rfprm score` (offline scoring of a JSONL file) on one device:

    python benchmarks/score_throughput.py --prm demo --rows 2000                 # the bundled PRM, CPU
    python benchmarks/score_throughput.py --shape 7b --device cuda --rows 4000   # random 7B-shape weights

The file: `--rows` answers to demo-world questions, 8 answers per question (a GRPO group or a
Best-of-8 pool), each a chain of `--steps` arithmetic steps, about 12 tokens a step. Runs
`score_file` (what the CLI runs: chunks of `--chunk-rows`, fsynced) into a temp dir and prints
rows/s and PRM tokens/s, after one warm-up chunk.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.offline.score import score_file
from rfprm_tts.prm import build_scorer
from rfprm_tts.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
import itertools

from prm_throughput import SHAPES


def write_rows(path: Path, rows: int, steps: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    questions = [p.question for p in held_out_problems()]
    with open(path, "w") as f:
        for i in range(rows):
            numbers = [rng.randint(2, 999) for _ in range(steps + 1)]
            chain = "\n\n".join(f"{a} + {b} = {a + b}" for a, b in itertools.pairwise(numbers))
            f.write(
                json.dumps(
                    {
                        "id": i,
                        "question": questions[(i // 8) % len(questions)],
                        "response": f"{chain}\n\nThe answer is \\boxed{{{numbers[-1]}}}.",
                    }
                )
                + "\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--prm", default=None, help="a PRM name or path (default: demo, or random weights with --shape)"
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), help="random Qwen2 PRM weights of this shape")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--chunk-rows", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="score-throughput-") as tmp:
        tmp = Path(tmp)
        prm = args.prm or "demo"
        if args.shape:
            from rfprm_tts.demo.tiny import build_tiny_prm

            dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
            prm = str(
                build_tiny_prm(
                    tmp / "prm",
                    device=args.device,
                    dtype=dtype,
                    num_layers=SHAPES[args.shape]["num_hidden_layers"],
                    hidden_size=SHAPES[args.shape]["hidden_size"],
                    intermediate_size=SHAPES[args.shape]["intermediate_size"],
                    num_heads=SHAPES[args.shape]["num_attention_heads"],
                    num_kv_heads=SHAPES[args.shape]["num_key_value_heads"],
                )
            )
        settings = Settings(prm={"model": prm, "device": args.device})
        scorer = build_scorer(settings.prm)
        write_rows(tmp / "warm.jsonl", args.chunk_rows, args.steps, seed=1)
        score_file(
            scorer, settings, tmp / "warm.jsonl", tmp / "warm_out.jsonl", chunk_rows=args.chunk_rows, progress=False
        )
        write_rows(tmp / "in.jsonl", args.rows, args.steps)
        started = time.perf_counter()
        summary = score_file(
            scorer, settings, tmp / "in.jsonl", tmp / "out.jsonl", chunk_rows=args.chunk_rows, progress=False
        )
        seconds = time.perf_counter() - started
        where = (
            torch.cuda.get_device_name()
            if args.device.startswith("cuda")
            else f"CPU ({torch.get_num_threads()} threads)"
        )
        name = f"random {args.shape}-shape" if args.shape else prm
        print(
            f"rfprm score, PRM {name} on {where}: {summary.rows} rows ({summary.errors} errors), "
            f"{summary.prm_tokens:,} PRM tokens in {seconds:.1f} s: {summary.rows / seconds:,.1f} rows/s, "
            f"{summary.prm_tokens / seconds:,.0f} PRM tokens/s"
        )
        scorer.close()


if __name__ == "__main__":
    main()
