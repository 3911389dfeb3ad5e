"""The compute-vs-accuracy benchmark harness (`rfprm bench`): datasets, graded and resumable
runs, and reports rebuilt from the rows on disk."""

from __future__ import annotations

from rfprm_tts.bench.datasets import NAMES, Problem, load_problems
from rfprm_tts.bench.executors import Executor, LocalExecutor
from rfprm_tts.bench.merge import merge_runs
from rfprm_tts.bench.ray_executor import RayExecutor
from rfprm_tts.bench.report import Point, summarize, write_comparison, write_report
from rfprm_tts.bench.rows import Row
from rfprm_tts.bench.runner import run_bench
from rfprm_tts.bench.store import RunStore

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
