"""Several `rfprm bench` runs side by side: each strategy's accuracy against its generated + PRM
tokens, paired with a baseline at the same N, and read against a reference curve at equal
tokens. Used for the search families of issue #35 (benchmarks/results/granularity_demo/ and
search_families_demo/ have the commands):

    python benchmarks/compare_runs.py runs/vg/sampled runs/vg/step_g1 runs/vg/step_g2 \
        --baseline step_g1:beam_search --reference sampled:weighted_best_of_n --out OUT --name granularity

Writes OUT/NAME.md (per run, strategy and N: accuracy with its 95% bootstrap interval,
generated (the generator's, and a draft's or selector's), PRM and total tokens per problem,
the paired accuracy difference against the baseline at the same N, and the reference curve's
accuracy at the same total tokens, interpolated on log tokens: "-" outside its range) and
OUT/accuracy_vs_total_tokens.png (frontier.py's plot).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from frontier import curve, generated, interpolate, load, paired_difference, plot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="rfprm bench run directories")
    parser.add_argument("--baseline", required=True, help="RUN:STRATEGY the others are paired with at the same N")
    parser.add_argument("--reference", help="RUN:STRATEGY whose curve is read at each row's tokens")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default="comparison", help="the table's file name, without .md")
    args = parser.parse_args()
    rows = {f"{run.name}:{strategy}": by_n for run in args.runs for strategy, by_n in load(run).items()}
    for given in filter(None, (args.baseline, args.reference)):
        if given not in rows:
            parser.error(f"{given}: no such run:strategy; the runs give {', '.join(sorted(rows))}")
    baseline = rows[args.baseline]
    reference = curve(rows[args.reference]) if args.reference else []
    lines = [
        f"| run: strategy | N | accuracy (95% CI) | generated | PRM | total tokens | vs {args.baseline} (paired) "
        f"| {args.reference or 'reference'} at these tokens |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_n in rows.items():
        for n, tokens, accuracy, low, high in curve(by_n):
            chosen = list(by_n[n].values())
            made = sum(generated(r) for r in chosen) / len(chosen)
            paired = "-"
            if n in baseline and name != args.baseline:
                diff, d_low, d_high = paired_difference(by_n[n], baseline[n])
                paired = f"{diff:+.3f} ({d_low:+.3f} to {d_high:+.3f})"
            at = interpolate([p[1] for p in reference], [p[2] for p in reference], tokens) if reference else None
            lines.append(
                f"| {name} | {n} | {accuracy:.3f} ({low:.3f}-{high:.3f}) | {made:.0f} | {tokens - made:.0f} "
                f"| {tokens:.0f} | {paired} | {'-' if at is None else f'{at:.3f}'} |"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    plot({name: curve(by_n) for name, by_n in rows.items()}, args.out / "accuracy_vs_total_tokens.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
