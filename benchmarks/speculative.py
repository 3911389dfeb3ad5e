"""Speculative reasoning on the demo world: does a draft model a fifth of the generator's size,
judged step by step, keep the generator's accuracy at a fraction of its FLOPs and wall time?

    python benchmarks/speculative.py --out runs/speculative --limit 200
    python benchmarks/speculative.py --out runs/speculative --limit 200 --only speculative_0.5   # one run

Every configuration is one `rfprm bench` run (the CLI, in a subprocess) on the demo world's
held-out problems, one problem at a time (`--concurrency 1`, so wall time is one solve's):
the target (`demo`) alone, greedy, best-of-N and beam search; the draft (`demo-draft`) alone;
`speculative_steps` (RSD: the demo PRM judges each draft step) over a sweep of thresholds;
`specreason` (the target rates each draft step with one digit) over a sweep; and beam search
with `draft_threshold` (draft-first expansion). Rerunning resumes each run.

Writes OUT/speculative.md and the joint plots of `rfprm bench report`
(OUT/compared/accuracy_vs_*.png). Per problem, each against target-only greedy: accuracy with a
95% bootstrap interval, the tokens the target wrote (what its decoding time follows on a GPU),
the target's FLOPs and all three models' (2 x parameters x tokens read and written in every call:
a step loop sends the answer so far again with each step, and the in-process backend has no
prefix cache to spare the re-reading), wall seconds, the draft's share of the tokens written and
its acceptance rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rfprm_tts.bench.report import bootstrap_ci, write_comparison
from rfprm_tts.bench.store import RunStore

COMMON = ["--dataset", "demo", "--model", "demo", "--prm", "demo", "--seed", "0", "--concurrency", "1"]
DRAFT = ["--draft-model", "demo-draft"]
GREEDY = {"RFPRM_GENERATOR__TEMPERATURE": "0", "RFPRM_DRAFT__TEMPERATURE": "0"}


@dataclass
class Config:
    """One bench run: its name (its folder), what it is, its `rfprm bench` arguments and
    environment. `draft_only`: the generator is the draft model, so its FLOPs are no target's."""

    name: str
    what: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    draft_only: bool = False


def configs(thresholds: list[float], judge_thresholds: list[float]) -> list[Config]:
    def one(strategy: str, n: int = 1) -> list[str]:
        return ["--strategies", strategy, "--budgets", str(n)]

    runs = [
        Config("target_greedy", "target alone, greedy", one("majority_vote"), GREEDY),
        Config(
            "target_sampled",
            "target alone, N samples at T=1",
            ["--strategies", "best_of_n", "weighted_best_of_n", "--budgets", "4", "16"],
        ),
        Config("target_beam", "target alone, beam search N=4 at T=1", one("beam_search", 4)),
        Config("draft_greedy", "draft alone, greedy", ["--model", "demo-draft", *one("majority_vote")], GREEDY, True),
        Config(
            "draft_sampled",
            "draft alone, weighted best-of-N at T=1 (demo PRM)",
            ["--model", "demo-draft", "--strategies", "weighted_best_of_n", "--budgets", "4", "16"],
            draft_only=True,
        ),
    ]
    sweeps = [
        ("speculative", "speculative_steps", "the PRM's score of the step", thresholds),
        ("specreason", "specreason", "the target's rating of the step", judge_thresholds),
    ]
    runs += [
        Config(
            f"{name}_{t}",
            f"{strategy}, 1 greedy draft step, accepted when {judged} >= {t}",
            [*DRAFT, *one(strategy), "--param", f"threshold={t}"],
            GREEDY,
        )
        for name, strategy, judged, sweep in sweeps
        for t in sweep
    ]
    runs.append(
        Config(
            "speculative_n4_0.5",
            "speculative_steps, 4 draft steps at T=1, the best if >= 0.5, else a greedy target step",
            [*DRAFT, *one("speculative_steps", 4), "--param", "threshold=0.5"],
            {"RFPRM_GENERATOR__TEMPERATURE": "0"},
        )
    )
    runs.append(
        Config(
            "beam_draft_0.5",
            "beam search N=4 at T=1, draft-first expansion (draft_threshold 0.5)",
            [*DRAFT, *one("beam_search", 4), "--param", "draft_threshold=0.5"],
        )
    )
    return runs


def run(config: Config, out: Path, limit: int) -> Path:
    folder = out / config.name
    command = ["rfprm", "bench", *COMMON, "--limit", str(limit), *config.args, "--out", str(folder)]
    print(f"== {config.name}: {' '.join(command)}", flush=True)
    subprocess.run(command, env={**os.environ, **config.env}, check=True, stdout=subprocess.DEVNULL)
    (folder / "speculative_config.json").write_text(json.dumps({"what": config.what, "env": config.env}))
    return folder


def rows(folder: Path) -> dict[tuple[str, int], list[dict]]:
    """A run's rows (as `rfprm bench` stores them), by strategy and N."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in RunStore(folder).rows():
        groups.setdefault((row["strategy"], row["n"]), []).append(row)
    return groups


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def measure(done: list[tuple[Config, Path]]) -> list[dict]:
    """One line per (run, strategy, N): figures per problem."""
    lines = []
    for config, folder in done:
        for (strategy, n), group in sorted(rows(folder).items()):
            right = [bool(r["correct"]) for r in group]
            generator = mean([r["generator_flops"] or 0.0 for r in group])
            draft = mean([r.get("draft_flops") or 0.0 for r in group])
            target = 0.0 if config.draft_only else generator
            written = 0.0 if config.draft_only else mean([r["generated_tokens"] for r in group])
            total = generator + draft + mean([r["prm_flops"] or 0.0 for r in group])
            draft_tokens = sum(r.get("draft_generated_tokens", 0) for r in group)
            tokens = draft_tokens + sum(r["generated_tokens"] for r in group)
            share = 1.0 if config.draft_only else draft_tokens / tokens if tokens else 0.0
            acceptance = [
                r["details"]["acceptance"] for r in group if r.get("details", {}).get("acceptance") is not None
            ]
            lines.append(
                dict(
                    run=config.name,
                    what=config.what,
                    strategy=f"{strategy} N={n}",
                    problems=len(group),
                    accuracy=mean(right),
                    ci=bootstrap_ci(right),
                    target_flops=target,
                    target_written=written,
                    total_flops=total,
                    wall_s=mean([r["wall_s"] for r in group]),
                    draft_share=share,
                    acceptance=mean(acceptance) if acceptance else None,
                    failures=sum(1 for r in group if r.get("error")),
                )
            )
    return lines


def table(lines: list[dict], done: list[tuple[Config, Path]]) -> str:
    """The lines as Markdown, with ratios against target-only greedy."""
    base = next((line for line in lines if line["run"] == "target_greedy"), None)

    def ratio(value: float, key: str) -> str:
        return f" ({value / base[key]:.2f}x)" if base and base[key] else ""

    out = [
        "| run | strategy | accuracy (95% CI) | target tokens written | target FLOPs | all FLOPs | wall s "
        "| draft's share of tokens | acceptance |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for line in lines:
        low, high = line["ci"]
        acceptance = "-" if line["acceptance"] is None else f"{line['acceptance']:.2f}"
        failed = f", {line['failures']} failed" if line["failures"] else ""
        out.append(
            f"| {line['run']} | {line['strategy']} | {line['accuracy']:.3f} ({low:.3f}-{high:.3f}){failed} | "
            f"{line['target_written']:.1f}{ratio(line['target_written'], 'target_written')} | "
            f"{line['target_flops']:.2e}{ratio(line['target_flops'], 'target_flops')} | "
            f"{line['total_flops']:.2e}{ratio(line['total_flops'], 'total_flops')} | "
            f"{line['wall_s']:.3f}{ratio(line['wall_s'], 'wall_s')} | {line['draft_share']:.2f} | {acceptance} |"
        )
    legend = "\n".join(f"- `{config.name}`: {config.what}" for config, _ in done)
    return "\n".join(out) + "\n\n" + legend + "\n"


FAMILIES = {  # a run name's family: (label, marker, joined); a joined family's points are a sweep
    "target": ("target alone", "o", False),
    "draft": ("draft alone", "v", False),
    "speculative": ("speculative_steps (threshold)", "s", True),
    "speculative_n4": ("speculative_steps, 4 drafts at T=1 (threshold)", "P", False),
    "specreason": ("specreason (threshold)", "D", True),
    "beam_draft": ("beam search, drafted", "^", False),
}


def family(run: str) -> str:
    return next((name for name in ("beam_draft", "speculative_n4") if run.startswith(name)), run.split("_")[0])


def point_label(line: dict) -> str:
    """What a point is within its family: a threshold (n4_0.5 for four drafts), or a strategy and N."""
    if line["run"].startswith("spec"):
        return line["run"].rsplit("_", 1)[1]
    strategy, n = line["strategy"].split(" ")
    return f"{'greedy' if strategy == 'majority_vote' else strategy} {n}"


def plot(lines: list[dict], out: Path) -> Path:
    """Accuracy against target FLOPs, all FLOPs and wall time, one panel each, a marker per
    family; the draft alone has no target FLOPs and is left off the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = [("target_flops", "target FLOPs per problem"), ("total_flops", "all FLOPs"), ("wall_s", "wall s")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    for color, (name, (label, marker, joined)) in enumerate(FAMILIES.items()):
        for ax, (key, title) in zip(axes, panels):
            shown = [line for line in lines if family(line["run"]) == name and line[key] > 0]
            if joined:  # a sweep, in threshold order
                shown.sort(key=lambda line: float(point_label(line)))
            if not shown:
                continue
            xs, ys = [line[key] for line in shown], [line["accuracy"] for line in shown]
            below = [y - line["ci"][0] for y, line in zip(ys, shown)]
            above = [line["ci"][1] - y for y, line in zip(ys, shown)]
            style = "-" if joined else "none"
            ax.errorbar(
                xs, ys, yerr=[below, above], marker=marker, capsize=3, label=label, linestyle=style, color=f"C{color}"
            )
            for x, y, line in zip(xs, ys, shown):
                ax.annotate(point_label(line), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"{title} (log)")
            ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (95% bootstrap CI)")
    handles, labels = axes[1].get_legend_handles_labels()  # the middle panel shows every family
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path = out / "speculative.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs (rerun to resume)")
    parser.add_argument("--limit", type=int, default=200, help="held-out problems")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--judge-thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--only", nargs="+", help="run only these configurations (by name)")
    args = parser.parse_args()
    chosen = [c for c in configs(args.thresholds, args.judge_thresholds) if not args.only or c.name in args.only]
    if not chosen:
        sys.exit(f"--only: no such configuration; the names: {', '.join(c.name for c in configs([], []))}, ...")
    done = [(config, run(config, args.out, args.limit)) for config in chosen]
    everything = [(c, args.out / c.name) for c in configs(args.thresholds, args.judge_thresholds)]
    finished = [(c, f) for c, f in everything if (f / "rows.jsonl").is_file()] or done
    lines = measure(finished)
    text = table(lines, finished)
    (args.out / "speculative.md").write_text(text)
    plot(lines, args.out)
    write_comparison([f for _, f in finished], args.out / "compared", show=False)
    print(text)


if __name__ == "__main__":
    main()
