"""Accuracy and compute of every strategy on the demo world's held-out problems.

    python benchmarks/strategies_demo.py --problems 100 --budgets 4 16 --out benchmarks/results/strategies_demo.md

Runs each strategy through the public API (ReasoningSolver on the bundled demo world, CPU)
and prints one Markdown table: accuracy, generated tokens, PRM tokens and wall time per
problem, for each strategy and budget N.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from tqdm import tqdm

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.grading import equivalent

STRATEGIES = {
    "majority_vote": {},
    "best_of_n": {},
    "weighted_best_of_n": {},
    "beam_search": {"beam_width": 4},
    "dvts": {"beam_width": 4},
    "early_pruning": {"schedule": [0.5, 0.5]},
}


async def run(strategy: str, params: dict, n: int, problems, solver: ReasoningSolver) -> dict:
    correct = generated = prm = 0
    started = time.perf_counter()
    for problem in tqdm(problems, desc=f"{strategy} N={n}", leave=False):
        result = await solver.asolve(problem.question, strategy=strategy, n=n, **params)
        correct += equivalent(result.answer, str(problem.answer))
        generated += result.usage.generated_tokens
        prm += result.usage.prm_tokens
    count = len(problems)
    return dict(
        strategy=strategy, n=n, accuracy=correct / count, generated=generated / count,
        prm=prm / count, seconds=(time.perf_counter() - started) / count,
    )


async def main_async(args: argparse.Namespace) -> list[dict]:
    problems = held_out_problems()[: args.problems]
    settings = Settings.load(prm=dict(aggregation=args.aggregation), generator=dict(seed=args.seed))
    rows = []
    async with ReasoningSolver(settings) as solver:
        for n in args.budgets:
            for strategy in args.strategies:
                rows.append(await run(strategy, STRATEGIES[strategy], n, problems, solver))
                r = rows[-1]
                print(f"{strategy:>20} N={n:<3} acc {r['accuracy']:.3f}  gen {r['generated']:7.1f}  prm {r['prm']:8.1f}")
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Demo world, first {args.problems} held-out problems, aggregation `{args.aggregation}`, seed {args.seed}.",
        "Tokens and seconds are per problem.",
        "",
        "| strategy | N | accuracy | generated tokens | PRM tokens | s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['n']} | {r['accuracy']:.3f} | {r['generated']:.0f} | {r['prm']:.0f} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--aggregation", default="last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = table(asyncio.run(main_async(args)), args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"{text}\n\nCommand: python benchmarks/strategies_demo.py {' '.join(__import__('sys').argv[1:])}\n")


if __name__ == "__main__":
    main()
