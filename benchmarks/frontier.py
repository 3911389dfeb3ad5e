"""The search frontier's comparisons, from one `rfprm bench` run (rows.jsonl):

    rfprm bench --dataset demo --limit 200 --seed 0 --budgets 2 4 8 16 32 \
        --strategies majority_vote best_of_n weighted_best_of_n adaptive_vote beam_search particle_filtering \
        --out runs/frontier
    python benchmarks/frontier.py runs/frontier --out benchmarks/results/frontier_demo

Writes frontier.md and accuracy_vs_total_tokens.png (generated + PRM tokens per problem, log x,
95% bootstrap intervals as bands), and answers three questions:

1. adaptive_vote against majority_vote: the tokens it spends at each N, and the tokens majority
   voting needs for the same accuracy (its curve interpolated on log tokens);
2. particle_filtering against beam_search at the same N, paired by problem (accuracy difference
   with a paired bootstrap interval, and the tokens each spent);
3. each at the other's compute: one curve's accuracy interpolated at the other's token cost.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
from collections import defaultdict
from pathlib import Path

from rfprm_tts.bench.report import bootstrap_ci


def load(run: Path) -> dict[str, dict[int, dict[str, dict]]]:
    """rows[strategy][n][problem_id]."""
    rows: dict[str, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for line in (run / "rows.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[r["strategy"]][r["n"]][r["problem_id"]] = r
    return rows


def generated(row: dict) -> int:
    """The tokens a row's solve generated: the generator's, and a draft's or a selector's."""
    return row["generated_tokens"] + row.get("draft_generated_tokens", 0) + row.get("selector_generated_tokens", 0)


def curve(by_n: dict[int, dict[str, dict]]) -> list[tuple[int, float, float, float, float]]:
    """(n, total tokens, accuracy, ci low, ci high) per budget, by N."""
    points = []
    for n in sorted(by_n):
        rows = list(by_n[n].values())
        correct = [bool(r["correct"]) for r in rows]
        low, high = bootstrap_ci(correct)
        tokens = sum(generated(r) + r["prm_tokens"] for r in rows) / len(rows)
        points.append((n, tokens, sum(correct) / len(rows), low, high))
    return points


def interpolate(xs: list[float], ys: list[float], x: float) -> float | None:
    """y at x on the piecewise-linear curve through (log xs, ys); None outside it."""
    lx = [math.log(v) for v in xs]
    t = math.log(x)
    for (x0, y0), (x1, y1) in zip(zip(lx, ys), zip(lx[1:], ys[1:])):
        if x0 <= t <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (t - x0) / (x1 - x0)
    return None


def tokens_for_accuracy(points, accuracy: float) -> float | None:
    """The fewest tokens at which the curve first reaches `accuracy` (log-linear between points)."""
    for (_, t0, a0, *_), (_, t1, a1, *_) in itertools.pairwise(points):
        if a0 >= accuracy:
            return t0
        if a0 < accuracy <= a1:
            return math.exp(math.log(t0) + (math.log(t1) - math.log(t0)) * (accuracy - a0) / (a1 - a0))
    return points[0][1] if points and points[0][2] >= accuracy else None


def paired_difference(a: dict[str, dict], b: dict[str, dict], resamples: int = 2000, seed: int = 0):
    """Mean of correct(a) - correct(b) over the problems both answered, and its 95% paired
    bootstrap interval."""
    ids = sorted(set(a) & set(b))
    diffs = [int(a[i]["correct"]) - int(b[i]["correct"]) for i in ids]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(resamples))
    return sum(diffs) / len(diffs), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def plot(curves: dict[str, list], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")  # no two curves share a colour
    for i, (name, points) in enumerate(sorted(curves.items())):
        xs, ys = [p[1] for p in points], [p[2] for p in points]
        (line,) = ax.plot(xs, ys, marker="o", label=name, color=colours(i))
        ax.fill_between(xs, [p[3] for p in points], [p[4] for p in points], color=line.get_color(), alpha=0.12)
        for p in points:
            ax.annotate(str(p[0]), (p[1], p[2]), textcoords="offset points", xytext=(3, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("generated + PRM tokens per problem (log); labels: N")
    ax.set_ylabel("accuracy (95% bootstrap band)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = load(args.run)
    curves = {name: curve(by_n) for name, by_n in rows.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(curves, args.out / "accuracy_vs_total_tokens.png")
    problems = len(next(iter(next(iter(rows.values())).values())))
    lines = [
        f"# The search frontier on the demo world ({problems} held-out problems)",
        "",
        f"From `{args.run}/rows.jsonl`; `python benchmarks/frontier.py {args.run} --out {args.out}`.",
        "Tokens are generated + PRM tokens per problem; intervals are 95% bootstrap over problems.",
        "",
        "| strategy | N | accuracy | 95% CI | generated + PRM tokens |",
        "|---|---|---|---|---|",
    ]
    for name, points in sorted(curves.items()):
        lines += [f"| {name} | {n} | {a:.3f} | {lo:.3f}-{hi:.3f} | {t:,.0f} |" for n, t, a, lo, hi in points]
    if "adaptive_vote" in curves and "majority_vote" in curves:
        lines += [
            "",
            "## adaptive_vote against majority_vote",
            "",
            "| N | adaptive accuracy | adaptive tokens | majority tokens at that N | tokens majority needs for that accuracy | saved | paired accuracy difference (95% CI) |",
            "|---|---|---|---|---|---|---|",
        ]
        major = curves["majority_vote"]
        for n, t, a, _, _ in curves["adaptive_vote"]:
            same_n = next((p[1] for p in major if p[0] == n), None)
            needed = tokens_for_accuracy(major, a)
            d, lo, hi = (
                paired_difference(rows["adaptive_vote"][n], rows["majority_vote"].get(n, {}))
                if n in rows["majority_vote"]
                else (math.nan,) * 3
            )
            lines.append(
                f"| {n} | {a:.3f} | {t:,.0f} | {same_n:,.0f} | "
                + (f"{needed:,.0f} | {1 - t / needed:+.0%}" if needed else "not reached | -")
                + f" | {d:+.3f} ({lo:+.3f} to {hi:+.3f}) |"
            )
    if "particle_filtering" in curves and "beam_search" in curves:
        lines += [
            "",
            "## particle_filtering against beam_search",
            "",
            "| N | particle accuracy | particle tokens | beam accuracy | beam tokens | paired difference (95% CI) | beam's accuracy at particle's tokens | particle's accuracy at beam's tokens |",
            "|---|---|---|---|---|---|---|---|",
        ]
        beam, particle = curves["beam_search"], curves["particle_filtering"]
        for (n, tp, ap, *_), (_, tb, ab, *_) in zip(particle, beam):
            d, lo, hi = paired_difference(rows["particle_filtering"][n], rows["beam_search"][n])
            at_p = interpolate([p[1] for p in beam], [p[2] for p in beam], tp)
            at_b = interpolate([p[1] for p in particle], [p[2] for p in particle], tb)
            show = lambda v: "outside its range" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(
                f"| {n} | {ap:.3f} | {tp:,.0f} | {ab:.3f} | {tb:,.0f} | {d:+.3f} ({lo:+.3f} to {hi:+.3f}) | {show(at_p)} | {show(at_b)} |"
            )
    (args.out / "frontier.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
