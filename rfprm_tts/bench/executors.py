"""Where jobs run: the Executor protocol, and the LocalExecutor (one solver in this process);
ray_executor.py has the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from rfprm_tts.bench.jobs import BenchWorker, Job, WorkSpec
from rfprm_tts.solver import ReasoningSolver


class Executor(Protocol):
    """Where jobs run: in this process (LocalExecutor) or on Ray actors (RayExecutor)."""

    async def start(self, spec: WorkSpec) -> dict[str, Any]:
        """Build the workers; returns what "auto" settings resolved to (run.json's `resolved`)."""
        ...

    def run(self, jobs: Sequence[Job]) -> AsyncIterator[tuple[Job, list[dict[str, Any]]]]:
        """Each job's rows, as jobs finish, each job exactly once."""
        ...

    async def aclose(self) -> None: ...


class LocalExecutor:
    """Jobs on one solver in this process, `concurrency` problems at once."""

    def __init__(self, concurrency: int = 4, solver: ReasoningSolver | None = None):
        self.concurrency = concurrency
        self._solver = solver
        self._worker: BenchWorker | None = None

    async def start(self, spec: WorkSpec) -> dict[str, Any]:
        self._worker = BenchWorker(spec, self._solver)
        return await self._worker.resolved()

    async def run(self, jobs: Sequence[Job]) -> AsyncIterator[tuple[Job, list[dict[str, Any]]]]:
        assert self._worker is not None, "start() first"
        worker, limit = self._worker, asyncio.Semaphore(self.concurrency)

        async def one(job: Job) -> tuple[Job, list[dict[str, Any]]]:
            async with limit:
                return job, await worker.rows(job)

        tasks = [asyncio.ensure_future(one(job)) for job in jobs]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.aclose()
