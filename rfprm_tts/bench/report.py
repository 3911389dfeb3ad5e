"""Summaries of a benchmark run, always rebuilt from its rows: a terminal table, Markdown, and
PNG plots (accuracy vs generated tokens, and accuracy vs N)."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from rfprm_tts.bench.store import RunStore
from rfprm_tts.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One strategy at one budget, averaged over problems (tokens and FLOPs per problem)."""

    strategy: str
    n: int
    problems: int
    accuracy: float
    ci_low: float
    ci_high: float
    pass_at_n: float
    generated_tokens: float
    prm_tokens: float
    flops: float | None  # all of them: generator, PRM, draft and selector
    wall_s: float
    failures: int
    reused: bool
    target_flops: float | None = None  # the generator's alone: what a draft model saves
    draft_tokens: float = 0.0
    selector_tokens: float = 0.0  # genselect's selector model's generated tokens (settings.selector)


def bootstrap_ci(outcomes: Sequence[bool], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean, over problems."""
    if not outcomes:
        return 0.0, 0.0
    rng, k = random.Random(seed), len(outcomes)
    means = sorted(sum(rng.choices(outcomes, k=k)) / k for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def summarize(rows: Sequence[dict[str, Any]]) -> list[Point]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["strategy"], row["n"])].append(row)
    points = []
    for (strategy, n), group in sorted(groups.items()):
        correct = [bool(r["correct"]) for r in group]
        # rows written before draft models were counted lack their fields
        sides = ("draft_flops", "selector_flops")
        flops = [(r["generator_flops"] or 0) + (r["prm_flops"] or 0) + sum(r.get(k) or 0 for k in sides) for r in group]
        target = [r["generator_flops"] or 0 for r in group]
        low, high = bootstrap_ci(correct)
        points.append(
            Point(
                strategy=strategy,
                n=n,
                problems=len(group),
                accuracy=sum(correct) / len(group),
                ci_low=low,
                ci_high=high,
                pass_at_n=sum(bool(r["pass_at_n"]) for r in group) / len(group),
                generated_tokens=_mean(r["generated_tokens"] for r in group),
                prm_tokens=_mean(r["prm_tokens"] for r in group),
                flops=_mean(flops) if any(flops) else None,
                wall_s=_mean(r["wall_s"] for r in group),
                failures=sum(r.get("error") is not None for r in group),
                reused=any(r.get("reused") for r in group),
                target_flops=_mean(target) if any(target) else None,
                draft_tokens=_mean(r.get("draft_generated_tokens", 0) for r in group),
                selector_tokens=_mean(r.get("selector_generated_tokens", 0) for r in group),
            )
        )
    return points


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


COLUMNS = (
    "strategy",
    "N",
    "problems",
    "accuracy",
    "95% CI",
    "pass@N",
    "gen tok",
    "PRM tok",
    "FLOPs",
    "wall s",
    "failed",
)


SIDE_COLUMN = "side tok"  # shown when a draft or selector model generated: their tokens, apart


def columns(points: Sequence[Point]) -> list[str]:
    sides = any(p.draft_tokens or p.selector_tokens for p in points)
    return [*COLUMNS[:7], *([SIDE_COLUMN] if sides else []), *COLUMNS[7:]]


def cells(p: Point, sides: bool = False) -> list[str]:
    side = [f"{p.draft_tokens + p.selector_tokens:,.0f}"] if sides else []
    return [
        p.strategy + (" *" if p.reused else ""),
        str(p.n),
        str(p.problems),
        f"{p.accuracy:.3f}",
        f"{p.ci_low:.3f}-{p.ci_high:.3f}",
        f"{p.pass_at_n:.3f}",
        f"{p.generated_tokens:,.0f}",
        *side,
        f"{p.prm_tokens:,.0f}",
        "n/a" if p.flops is None else f"{p.flops:.2e}",
        f"{p.wall_s:.2f}",
        str(p.failures),
    ]


REUSE_NOTE = (
    "\\* from the first N samples of one pool per problem (sample reuse): the pick among them is "
    "what a run at N returns; PRM tokens are what scoring those N cost; wall time is the pool's "
    "generation time x N / N_max plus their PRM scoring."
)


def markdown(points: Sequence[Point], title: str = "Benchmark summary", config: dict[str, Any] | None = None) -> str:
    lines = [f"# {title}", ""]
    if config:
        lines += [f"- {key}: `{config[key]}`" for key in ("dataset", "problems", "command") if key in config]
        lines.append("")
    shown = columns(points)
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(cells(p, SIDE_COLUMN in shown)) + " |" for p in points]
    lines.append("")
    lines.append(
        "Accuracy with a 95% bootstrap interval over problems; pass@N: some candidate is right "
        "(oracle); tokens, FLOPs (2 x parameters x tokens, generator + PRM + a draft or selector model) and wall "
        "time per problem; gen tok: the generator's, side tok: a draft's and a selector's generated tokens."
    )
    if any(p.reused for p in points):
        lines += ["", REUSE_NOTE]
    return "\n".join(lines) + "\n"


def print_table(points: Sequence[Point], file: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file)
    if not console.is_terminal:  # a log file: do not squeeze the table into 80 columns
        console = Console(file=file, width=160)
    table = Table(title="accuracy vs compute")
    shown = columns(points)
    for column in shown:
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for p in points:
        table.add_row(*cells(p, SIDE_COLUMN in shown))
    console.print(table)
    if any(p.reused for p in points):
        console.print(REUSE_NOTE.replace("\\*", "*"))


def plot(points: Sequence[Point], out_dir: str | Path) -> list[Path]:
    """accuracy_vs_tokens.png (log x) and accuracy_vs_n.png, one line per strategy; where a
    draft model wrote steps, also accuracy against the target's FLOPs, all FLOPs and wall time
    (what speculation trades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_strategy: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        by_strategy[p.strategy].append(p)
    paths = []
    axes: list[tuple[str, Callable[[Point], float], str]] = [
        ("accuracy_vs_tokens.png", lambda p: max(p.generated_tokens, 1.0), "generated tokens per problem (log)"),
        ("accuracy_vs_n.png", lambda p: p.n, "budget N (log2)"),
    ]
    if any(p.draft_tokens for p in points):
        axes.append(("accuracy_vs_wall_s.png", lambda p: max(p.wall_s, 1e-3), "wall seconds per problem (log)"))
        if all(p.target_flops and p.flops for p in points):
            axes.append(
                ("accuracy_vs_target_flops.png", lambda p: p.target_flops or 1.0, "target FLOPs per problem (log)")
            )
            axes.append(("accuracy_vs_total_flops.png", lambda p: p.flops or 1.0, "all FLOPs per problem (log)"))
    for name, x_of, label in axes:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for strategy, line in sorted(by_strategy.items()):
            line = sorted(line, key=x_of)
            ax.errorbar(
                [x_of(p) for p in line],
                [p.accuracy for p in line],
                yerr=[[p.accuracy - p.ci_low for p in line], [p.ci_high - p.accuracy for p in line]],
                marker="o",
                capsize=3,
                label=strategy,
            )
        ax.set_xscale("log", base=2 if name == "accuracy_vs_n.png" else 10)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (95% bootstrap CI)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(out_dir) / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(out_dir: str | Path, show: bool = True, out: IO[str] | None = None) -> list[Point]:
    """Summarize a run directory from its rows: summary.md, the PNG plots (when matplotlib is
    installed) and, with `show`, a table on `out` (default: stdout)."""
    store = RunStore(out_dir)
    rows = store.rows()
    if not rows:
        raise ConfigError(f"{store.dir} holds no finished rows yet; run (or resume) the benchmark first")
    points = summarize(rows)
    _emit(points, store.dir, store.config(), "Benchmark summary", show, out)
    return points


def write_comparison(
    runs: Sequence[str | Path], out_dir: str | Path, show: bool = True, out: IO[str] | None = None
) -> list[Point]:
    """Several runs on one set of plots (one line per run and strategy, labelled "run:
    strategy"), e.g. the same strategies with different verifiers: summary.md and PNGs in
    `out_dir`."""
    names = [Path(r).name for r in runs]
    labels = names if len(set(names)) == len(names) else [str(r) for r in runs]
    points = [
        replace(p, strategy=f"{label}: {p.strategy}")
        for run, label in zip(runs, labels)
        for p in summarize(RunStore(run).rows())
    ]
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"command": "rfprm bench report " + " ".join(map(str, runs)) + f" --out {out_dir}"}
    _emit(points, directory, config, "Runs compared", show, out)
    return points


def _emit(points: list[Point], directory: Path, config: dict, title: str, show: bool, out: IO[str] | None) -> None:
    (directory / "summary.md").write_text(markdown(points, title=title, config=config))
    try:
        plot(points, directory)
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install 'rfprm-tts[bench]')")
    if show:
        print_table(points, out)
