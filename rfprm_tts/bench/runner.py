"""`run_bench`: strategies x budgets over a dataset, graded (rows.py), as jobs (jobs.py) on an
executor (executors.py, ray_executor.py), into a resumable run directory (store.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rfprm_tts.bench.datasets import Problem
from rfprm_tts.bench.executors import Executor, LocalExecutor
from rfprm_tts.bench.jobs import WorkSpec, plan_jobs
from rfprm_tts.bench.store import RunStore, row_key
from rfprm_tts.runtime.files import OutputLock
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver


async def run_bench(
    problems: Sequence[Problem],
    strategies: Sequence[str],
    budgets: Sequence[int],
    settings: Settings,
    out_dir: str | Path,
    *,
    concurrency: int = 4,
    run_config: dict[str, Any] | None = None,
    progress: bool = True,
    solver: ReasoningSolver | None = None,
    executor: Executor | None = None,
) -> RunStore:
    """Run what `out_dir` does not hold yet; returns the store with every row. This process is
    the only writer of the rows, whichever executor runs the jobs (default: LocalExecutor with
    `concurrency` and `solver`, a given solver with ready backends, else one from `settings`)."""
    spec = WorkSpec(settings, tuple(strategies), tuple(sorted(set(budgets))))
    spec.built()  # an unknown strategy or parameter fails here, before any model loads
    executor = executor or LocalExecutor(concurrency, solver)
    with OutputLock(out_dir, folder=True):  # a second run on the folder is refused before any model loads
        bar = None
        try:
            resolved = await executor.start(spec)
            config = {
                **(run_config or {}),
                "strategies": list(strategies),
                "budgets": list(spec.budgets),
                "settings": settings.record(),
                "resolved": resolved,
            }
            store = RunStore(out_dir, config)
            done = store.done()
            jobs = plan_jobs(problems, spec, done)
            bar = tqdm(total=len(jobs), desc="bench", unit="job", disable=not progress, dynamic_ncols=True)
            async for _, rows in executor.run(jobs):
                fresh = [row for row in rows if row_key(row) not in done]  # a pool re-run for one missing budget
                done.update(row_key(row) for row in fresh)
                await asyncio.to_thread(store.append, fresh)
                bar.update()
        finally:
            if bar is not None:
                bar.close()
            await executor.aclose()
    return store
