"""The compute-vs-accuracy benchmark harness (`rfprm bench`): datasets, graded and resumable
runs, and reports rebuilt from the rows on disk."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

from rfprm_tts.bench.datasets import NAMES, Problem, load_problems
from rfprm_tts.bench.merge import merge_runs
from rfprm_tts.bench.report import Point, markdown, plot, print_table, summarize
from rfprm_tts.bench.ray_executor import RayExecutor
from rfprm_tts.bench.runner import Executor, LocalExecutor, Row, run_bench
from rfprm_tts.bench.store import RunStore

log = logging.getLogger(__name__)


def write_report(out_dir: str | Path, show: bool = True, out: IO[str] | None = None) -> list[Point]:
    """Summarize a run directory from its rows: summary.md, the PNG plots (when matplotlib is
    installed) and, with `show`, a table on `out` (default: stdout)."""
    store = RunStore(out_dir)
    points = summarize(store.rows())
    (store.dir / "summary.md").write_text(markdown(points, config=store.config()))
    try:
        plot(points, store.dir)
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install 'rfprm-tts[bench]')")
    if show:
        print_table(points, out)
    return points


__all__ = [
    "NAMES", "Executor", "LocalExecutor", "Point", "Problem", "RayExecutor", "Row", "RunStore", "load_problems",
    "merge_runs", "run_bench", "summarize", "write_report",
]
