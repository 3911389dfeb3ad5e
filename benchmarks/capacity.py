"""How many replicas a sweep needs: tokens per problem from the bench's own plan, divided by
a replica's generator and PRM throughput. A paper estimate, for planning a cluster.

The plan is `rfprm bench`'s: the sample-then-choose strategies (best_of_n, weighted_best_of_n,
majority_vote) share one pool of max(budgets) samples per problem; each search strategy runs
once per budget and generates about N answers' worth of tokens at budget N; PRM tokens are the
prompt plus answer of each scored sample (incremental scoring keeps search at that floor, as
benchmarks/results/prm_throughput_h100.md measured: 1.00x floor). Generator and PRM share
the card in turn (no overlap), and `--efficiency` derates both peak rates.

    python benchmarks/capacity.py --gen-tok-s 12500 --prm-tok-s 36000 --answer-tokens 600
"""

from __future__ import annotations

import argparse
import math


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--gen-tok-s", type=float, required=True, help="generator output tokens/s per replica, at full batch"
    )
    parser.add_argument("--prm-tok-s", type=float, required=True, help="PRM tokens/s per replica (prefill)")
    parser.add_argument(
        "--answer-tokens", type=float, nargs="+", default=[600.0], help="mean generated tokens per answer"
    )
    parser.add_argument("--prompt-tokens", type=float, default=100.0, help="mean question tokens")
    parser.add_argument("--problems", type=int, default=500, help="MATH-500: 500")
    parser.add_argument("--budgets", type=int, nargs="+", default=[2**k for k in range(9)], help="sample budgets N")
    parser.add_argument("--pooled", type=int, default=3, help="sample-then-choose strategies (one pool for all)")
    parser.add_argument("--searches", type=int, default=3, help="search strategies (beam_search, dvts, early_pruning)")
    parser.add_argument("--efficiency", type=float, nargs="+", default=[1.0, 0.3], help="fractions of peak to show")
    parser.add_argument("--hours", type=float, default=24.0, help="the deadline")
    args = parser.parse_args()

    samples = (max(args.budgets) if args.pooled else 0) + args.searches * sum(args.budgets)
    print(
        f"{args.problems} problems; budgets {args.budgets}; {args.pooled} pooled + {args.searches} search strategies: "
        f"{samples:,} answers per problem; generator {args.gen_tok_s:,.0f} tok/s, PRM {args.prm_tok_s:,.0f} tok/s at peak"
    )
    print(
        "| answer tokens | efficiency | generated tok/problem | PRM tok/problem | s/problem | problems/hour/replica "
        f"| replica-hours | replicas for {args.hours:g} h |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for length in args.answer_tokens:
        generated, scored = samples * length, samples * (length + args.prompt_tokens)
        for efficiency in args.efficiency:
            seconds = (generated / args.gen_tok_s + scored / args.prm_tok_s) / efficiency
            hours = args.problems * seconds / 3600
            print(
                f"| {length:,.0f} | {efficiency:.0%} | {generated:,.0f} | {scored:,.0f} | {seconds:,.0f} | "
                f"{3600 / seconds:,.1f} | {hours:,.1f} | {math.ceil(hours / args.hours)} |"
            )


if __name__ == "__main__":
    main()
