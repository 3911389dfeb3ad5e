"""What a run is made of: the work asked for (WorkSpec), the jobs left to do (one problem and
strategy, all budgets), and the worker that turns a job into rows with one solver (locally, or
inside a Ray actor)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from itertools import zip_longest
from typing import Any

from rfprm_tts.bench.datasets import Problem
from rfprm_tts.bench.rows import Grader, Row, pooled_rows, search_row
from rfprm_tts.bench.store import Key
from rfprm_tts.errors import ConfigError
from rfprm_tts.prm.aggregate import resolve_aggregation
from rfprm_tts.settings import Settings, without_passwords
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies.base import SampleThenChoose, Strategy, build_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkSpec:
    """What every worker needs to turn jobs into rows (sent as is to Ray actors)."""

    settings: Settings
    strategies: tuple[str, ...]
    budgets: tuple[int, ...]  # sorted, distinct

    def built(self) -> dict[str, Strategy]:
        """Each strategy at its largest budget (an unknown strategy or parameter fails here)."""
        return {
            name: build_strategy(name, self.settings.strategy_params, n=max(self.runs[name]))
            for name in self.strategies
        }

    @cached_property
    def runs(self) -> dict[str, tuple[int, ...]]:
        """The budgets each strategy can run: a beam search runs N in multiples of its beam
        width, so its other budgets are skipped (said once in the log), never run as another N."""
        runs: dict[str, tuple[int, ...]] = {}
        for name in self.strategies:
            refused: dict[int, str] = {}
            for n in self.budgets:
                try:
                    build_strategy(name, self.settings.strategy_params, n=n)
                except ConfigError as exc:
                    refused[n] = str(exc)
            runs[name] = tuple(n for n in self.budgets if n not in refused)
            if not runs[name]:
                raise ConfigError(refused[max(refused)])  # the largest budget's reason is the clearest
            if refused:
                log.warning("%s skips budgets %s: %s", name, sorted(refused), refused[min(refused)])
        return runs

    @cached_property
    def pooled(self) -> tuple[str, ...]:
        """The sample-then-choose strategies: all served by one sample pool per problem (not
        under a token budget, which a pool's first N samples would not hold to, nor with the
        thinking controlled, which changes the samples themselves)."""
        return tuple(
            name
            for name, s in self.built().items()
            if isinstance(s, SampleThenChoose) and s.params.token_budget is None and not s.params.controls_thinking
        )


@dataclass(frozen=True)
class Job:
    """One unit of work: a search strategy at budget n, or (strategy None) a problem's sample
    pool, which yields the rows of every sample-then-choose strategy at every budget."""

    problem: Problem
    strategy: str | None
    n: int

    def __str__(self) -> str:
        return f"problem {self.problem.id} ({self.strategy or 'sample pool'}, N={self.n})"

    def owes(self, spec: WorkSpec) -> list[tuple[str, int]]:
        if self.strategy is None:
            return [(name, n) for name in spec.pooled for n in spec.budgets]
        return [(self.strategy, self.n)]


def plan_jobs(problems: Sequence[Problem], spec: WorkSpec, done: set[Key]) -> list[Job]:
    """The jobs whose rows `done` does not hold yet: every problem's first job, then every
    problem's second, ... so the jobs that run at once are mostly of different problems (a
    problem's own jobs run one at a time: BenchWorker)."""
    pooled = spec.pooled
    searched = [name for name in spec.strategies if name not in pooled]
    by_problem = []
    for problem in problems:
        jobs = []
        if any((problem.id, name, n) not in done for name in pooled for n in spec.budgets):
            jobs.append(Job(problem, None, max(spec.budgets)))
        jobs += [
            Job(problem, name, n) for name in searched for n in spec.runs[name] if (problem.id, name, n) not in done
        ]
        by_problem.append(jobs)
    return [job for round_ in zip_longest(*by_problem) for job in round_ if job is not None]


def failed_rows(job: Job, spec: WorkSpec, error: BaseException | str) -> list[dict[str, Any]]:
    """The rows a job owed, each marked with why it has no answer (the run goes on)."""
    message = without_passwords(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    return [
        asdict(
            Row(
                problem_id=job.problem.id,
                strategy=strategy,
                n=n,
                gold=job.problem.answer,
                answer=None,
                prediction=None,
                correct=False,
                pass_at_n=False,
                candidates=0,
                prompt_tokens=0,
                generated_tokens=0,
                prm_tokens=0,
                generator_flops=None,
                prm_flops=None,
                wall_s=0.0,
                reused=False,
                error=message,
            )
        )
        for strategy, n in job.owes(spec)
    ]


class BenchWorker:
    """Turns jobs into graded rows with one solver; a problem that fails becomes error rows.
    It lives in the bench process (LocalExecutor) or in each Ray actor (RayExecutor)."""

    def __init__(self, spec: WorkSpec, solver: ReasoningSolver | None = None):
        self.spec = spec
        self._own_solver = solver is None
        self.solver = solver or ReasoningSolver(spec.settings)
        built = spec.built()
        # `pooled` names sample-then-choose strategies only
        self._pooled = [s for s in (built[name] for name in spec.pooled) if isinstance(s, SampleThenChoose)]
        self._grade = Grader()
        # a problem's jobs one at a time: searches of one question at once would share the PRM's
        # cached prefixes, and each row's PRM tokens would depend on which ran a prefix first
        self._problem_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def resolved(self) -> dict[str, Any]:
        """What "auto" settings became for this checkpoint. Loads both models first: one that
        cannot load (a broken checkpoint, an engine short of memory) stops the run at its start,
        instead of turning every problem into an error row."""
        await asyncio.to_thread(lambda: self.solver.generator)
        scorer = await asyncio.to_thread(lambda: self.solver.scorer)
        return {"aggregation": resolve_aggregation(self.spec.settings.prm.aggregation, scorer), **scorer.describe()}

    async def rows(self, job: Job) -> list[dict[str, Any]]:
        async with self._problem_locks[job.problem.id]:
            return await self._rows(job)

    async def _rows(self, job: Job) -> list[dict[str, Any]]:
        try:
            if job.strategy is None:
                rows = await pooled_rows(self.solver, job.problem, self._pooled, list(self.spec.budgets), self._grade)
            else:
                strategy = build_strategy(job.strategy, self.spec.settings.strategy_params, n=job.n)
                rows = [await search_row(self.solver, job.problem, strategy, self._grade)]
        except Exception as exc:
            return failed_rows(job, self.spec, exc)
        return [asdict(row) for row in rows]

    async def aclose(self) -> None:
        if self._own_solver:
            await self.solver.aclose()
