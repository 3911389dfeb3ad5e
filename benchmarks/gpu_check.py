"""The GPU check, one script for a session lent a device machine (H100/H200), which has
torch and transformers but not the rest of our dependencies and no network:

    bash benchmarks/gpu_wheels.sh                           # here: .whl/ (this project + what the image lacks)
    # device run, carry [".whl"], timeout_s 600:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
        PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --shape 7b --repeats 1 --out $OUT

(about 6-7 minutes of an H100/H200 with --repeats 1; the machine's start comes on top)

    python benchmarks/gpu_check.py --shape demo --device cpu  # the same code paths on a CPU

Steps, each printed as it finishes: (1) the PRM throughput table (prm_throughput.py, bf16);
(2) incremental/packed vs full scoring agreement in float32; (3) an end-to-end solve on one
device with a random-weight 7B-shaped generator (transformers backend) and a 7B-shaped PRM
sharing it: generator and PRM tokens/s and peak device memory.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from prm_throughput import SHAPES

from rfprm_tts.demo.tiny import build_tiny_generator, build_tiny_prm
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver

HERE = Path(__file__).resolve().parent


def tiny_shape(shape: str) -> dict[str, int]:
    """prm_throughput's Qwen2 dimensions, as build_tiny_* arguments."""
    s = SHAPES[shape]
    return {
        "hidden_size": s["hidden_size"],
        "intermediate_size": s["intermediate_size"],
        "num_layers": s["num_hidden_layers"],
        "num_heads": s["num_attention_heads"],
        "num_kv_heads": s["num_key_value_heads"],
    }


def step(title: str, command: list[str], log: Path) -> None:
    """Run one benchmark script, its output shown and kept."""
    print(f"\n## {title}\n$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out.write(done.stdout)
    print(done.stdout[-6000:], f"({time.perf_counter() - started:.0f} s, exit {done.returncode})", flush=True)


async def end_to_end(shape: str, device: str, n: int, max_tokens: int, workdir: Path) -> None:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    started = time.perf_counter()
    generator = build_tiny_generator(workdir / "generator", device=device, dtype=dtype, **tiny_shape(shape))
    prm = build_tiny_prm(workdir / "prm", device=device, dtype=dtype, **tiny_shape(shape))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    print(f"random {shape} checkpoints written in {time.perf_counter() - started:.0f} s", flush=True)
    settings = Settings(
        generator={
            "backend": "transformers",
            "model": str(generator),
            "device": device,
            "max_tokens": max_tokens,
            "seed": 0,
        },
        prm={"model": str(prm), "device": device},
    )
    async with ReasoningSolver(settings) as solver:
        question = "Compute 7 + 5 * 3 - 4."
        for _round in ("warm-up", "timed"):  # the second round is the one reported
            ctx = await solver.context(question)
            t0 = time.perf_counter()
            candidates = [ctx.candidate(c) for c in await ctx.sample(n)]
            t1 = time.perf_counter()
            await ctx.score_candidates(candidates)
            t2 = time.perf_counter()
            usage = ctx.usage
            await ctx.close()
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.startswith("cuda") else "n/a (CPU)"
        print(
            f"\n## End to end (timed, after a warm-up): {shape} generator + {shape} PRM on {device}, best_of_n n={n}, "
            f"max_tokens={max_tokens}\n"
            "| part | tokens | seconds | tokens/s |\n|---|---|---|---|\n"
            f"| generator (batch of {n}) | {usage.generated_tokens} | {t1 - t0:.2f} | {usage.generated_tokens / (t1 - t0):,.0f} |\n"
            f"| PRM | {usage.prm_tokens} | {t2 - t1:.2f} | {usage.prm_tokens / (t2 - t1):,.0f} |\n"
            f"peak device memory (generator + PRM + activations): {peak}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per throughput path")
    parser.add_argument("--n", type=int, default=8, help="samples in the end-to-end solve")
    parser.add_argument("--max-tokens", type=int, default=512, help="per sample in the end-to-end solve")
    parser.add_argument("--out", default=".", help="folder for the logs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "agreement", "end_to_end"])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if torch.cuda.is_available():
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    throughput = [sys.executable, str(HERE / "prm_throughput.py"), "--shape", args.shape, "--device", args.device]
    if "throughput" not in args.skip:
        step("PRM throughput", [*throughput, "--repeats", str(args.repeats)], out / "throughput.log")
    if "agreement" not in args.skip:
        step("Float32 agreement", [*throughput, "--dtype", "float32", "--agreement-only"], out / "agreement.log")
    if "end_to_end" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            asyncio.run(end_to_end(args.shape, args.device, args.n, args.max_tokens, Path(tmp)))


if __name__ == "__main__":
    main()
