"""The compute-vs-accuracy benchmark harness (`rfprm bench`): datasets, graded and resumable
runs, and reports rebuilt from the rows on disk."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from rfprm_tts.bench.datasets import NAMES, Problem, load_problems
from rfprm_tts.bench.merge import merge_runs
from rfprm_tts.bench.ray_executor import RayExecutor
from rfprm_tts.bench.report import Point, markdown, plot, print_table, summarize
from rfprm_tts.bench.runner import Executor, LocalExecutor, Row, run_bench
from rfprm_tts.bench.store import RunStore
from rfprm_tts.errors import ConfigError

log = logging.getLogger(__name__)


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


__all__ = [
    "NAMES",
    "Executor",
    "LocalExecutor",
    "Point",
    "Problem",
    "RayExecutor",
    "Row",
    "RunStore",
    "load_problems",
    "merge_runs",
    "run_bench",
    "summarize",
    "write_comparison",
    "write_report",
]
