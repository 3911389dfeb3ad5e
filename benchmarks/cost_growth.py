"""How cost grows with the budget N: generated tokens, PRM tokens and wall time per problem
against N for every strategy of a bench run (log-log plot, and the slope of log cost on log N:
1 is linear), and the incremental PRM cache's peak against N for beam search.

    rfprm bench --dataset demo --limit 10 --budgets 1 2 4 8 16 32 64 128 256 --seed 0 \
        --strategies majority_vote best_of_n weighted_best_of_n beam_search dvts early_pruning --out runs/growth
    python benchmarks/cost_growth.py runs/growth --cache-problems 3
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections import defaultdict
from pathlib import Path

from rfprm_tts.bench import RunStore, load_problems, summarize
from rfprm_tts.bench.report import Point
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver

COSTS = {
    "generated tokens": lambda p: p.generated_tokens,
    "PRM tokens": lambda p: p.prm_tokens,
    "wall s": lambda p: p.wall_s,
}


def slope(points: list[Point], cost) -> float | None:
    """Least-squares slope of log(cost) on log(N), over the points with a positive cost."""
    xy = [(math.log(p.n), math.log(cost(p))) for p in points if cost(p) > 0]
    if len(xy) < 2:
        return None
    mx, my = sum(x for x, _ in xy) / len(xy), sum(y for _, y in xy) / len(xy)
    var = sum((x - mx) ** 2 for x, _ in xy)
    return sum((x - mx) * (y - my) for x, y in xy) / var if var else None


def growth_table(points: list[Point], min_n: int) -> list[str]:
    by_strategy: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        by_strategy[p.strategy].append(p)
    lines = [
        "| strategy | " + " | ".join(f"{name} at N={{min}}..{{max}}" for name in COSTS) + " | slope (gen, PRM, wall) |",
        "|---|" + "---|" * (len(COSTS) + 1),
    ]
    for strategy, line in sorted(by_strategy.items()):
        line = sorted((p for p in line if p.n >= min_n), key=lambda p: p.n)
        spans = [f"{cost(line[0]):,.1f} .. {cost(line[-1]):,.1f}" for cost in COSTS.values()]
        slopes = [slope(line, cost) for cost in COSTS.values()]
        shown = ", ".join("-" if s is None else f"{s:.2f}" for s in slopes)
        lines.append(f"| {strategy} | " + " | ".join(spans) + f" | {shown} |")
    header = lines[0].replace("{min}", str(line[0].n)).replace("{max}", str(line[-1].n))
    return [header, *lines[1:]]


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(COSTS), figsize=(15, 4.5))
    by_strategy: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        by_strategy[p.strategy].append(p)
    for ax, (name, cost) in zip(axes, COSTS.items()):
        for strategy, line in sorted(by_strategy.items()):
            line = sorted((p for p in line if cost(p) > 0), key=lambda p: p.n)
            ax.plot([p.n for p in line], [cost(p) for p in line], marker="o", label=strategy)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("budget N")
        ax.set_ylabel(f"{name} per problem")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def cache_peaks(budgets: list[int], problems: int) -> list[str]:
    """Beam search on `problems` demo problems at each N, a fresh solver each: the most tokens
    (and bytes) the incremental PRM cache held at once."""
    lines = ["| N | peak cached tokens | peak cache MiB (float32 KV) | PRM tokens per problem |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for n in budgets:
        async with ReasoningSolver(Settings(generator={"seed": 0})) as solver:
            runner = solver.scorer.runner
            config = runner.model.config
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            bytes_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4
            prm_tokens = 0
            for problem in load_problems("demo", limit=problems):
                result = await solver.asolve(problem.question, strategy="beam_search", n=n)
                prm_tokens += result.usage.prm_tokens
            peak = runner.peak_cached_tokens
            lines.append(f"| {n} | {peak:,} | {peak * bytes_per_token / 2**20:.2f} | {prm_tokens / problems:,.0f} |")
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a bench run directory")
    parser.add_argument("--min-n", type=int, default=1, help="fit the slopes from this N on")
    parser.add_argument("--cache-problems", type=int, default=3, help="problems per N for the cache peaks (0: skip)")
    args = parser.parse_args()

    store = RunStore(args.run)
    points = summarize(store.rows())
    print("\n".join(growth_table(points, args.min_n)))
    plot(points, store.dir / "cost_vs_n.png")
    print(f"wrote {store.dir / 'cost_vs_n.png'}")
    if args.cache_problems:
        print("\nbeam_search, incremental PRM cache:")
        asyncio.run(cache_peaks(sorted(store.config()["budgets"]), args.cache_problems))


if __name__ == "__main__":
    main()
