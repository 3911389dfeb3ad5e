"""Verification granularity (issue #35) on the demo world: beam search and DVTS asking the PRM
every g steps, against g = 1, particle filtering and the sampling strategies, at equal generated
+ PRM tokens. Each configuration is one `rfprm bench` run (benchmarks/results/granularity_demo/
README.md has the commands); this script reads their rows:

    python benchmarks/granularity.py runs/vg/sampled runs/vg/step_g1 runs/vg/step_g2 runs/vg/step_g3 \
        runs/vg/beam_adaptive runs/vg/particles --baseline step_g1:beam_search --out OUT

Writes OUT/granularity.md (per run, strategy and N: accuracy with its 95% bootstrap interval,
generated, PRM and total tokens per problem, and the paired accuracy difference against the
baseline at the same N) and OUT/accuracy_vs_total_tokens.png (frontier.py's plot).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from frontier import curve, load, paired_difference, plot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="rfprm bench run directories")
    parser.add_argument("--baseline", default="step_g1:beam_search", help="RUN:STRATEGY the others are paired with")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = {f"{run.name}:{strategy}": by_n for run in args.runs for strategy, by_n in load(run).items()}
    if args.baseline not in rows:
        parser.error(f"--baseline {args.baseline}: no such run:strategy; the runs give {', '.join(sorted(rows))}")
    baseline = rows[args.baseline]
    lines = [
        f"| run: strategy | N | accuracy (95% CI) | generated | PRM | total tokens | vs {args.baseline} (paired) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_n in rows.items():
        for n, tokens, accuracy, low, high in curve(by_n):
            chosen = list(by_n[n].values())
            generated = sum(r["generated_tokens"] for r in chosen) / len(chosen)
            paired = "-"
            if n in baseline and name != args.baseline:
                diff, d_low, d_high = paired_difference(by_n[n], baseline[n])
                paired = f"{diff:+.3f} ({d_low:+.3f} to {d_high:+.3f})"
            lines.append(
                f"| {name} | {n} | {accuracy:.3f} ({low:.3f}-{high:.3f}) | {generated:.0f} | {tokens - generated:.0f} "
                f"| {tokens:.0f} | {paired} |"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "granularity.md").write_text("\n".join(lines) + "\n")
    plot({name: curve(by_n) for name, by_n in rows.items()}, args.out / "accuracy_vs_total_tokens.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
