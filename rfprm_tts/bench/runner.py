"""Run strategies over a dataset at several budgets, graded, resumable.

Sample reuse: a strategy that samples N answers and then picks one (best_of_n,
weighted_best_of_n, majority_vote) is run once per problem at the largest budget; its result
at a smaller budget N is its pick among the first N samples, which is exactly what a run at N
returns. The pool is PRM-scored in growing chunks (the first 1, 2, 4, ... samples), so the
PRM tokens of budget N are what scoring its first N samples cost. Search strategies (beam
search, DVTS, early pruning) run once per budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from rfprm_tts.bench.datasets import LETTERS, Problem
from rfprm_tts.bench.store import Key, RunStore, row_key
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import SizedGenerator
from rfprm_tts.grading.equivalence import choice_letter, compare
from rfprm_tts.prm.aggregate import resolve_aggregation
from rfprm_tts.runtime.files import OutputLock
from rfprm_tts.settings import Settings, without_passwords
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies.base import SampleThenChoose, Strategy, build_strategy
from rfprm_tts.trajectory import Candidate, Usage

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One graded result: a strategy's answer to a problem at budget n, and what it cost."""

    problem_id: str
    strategy: str
    n: int
    gold: str
    answer: str | None  # extracted from the chosen trajectory
    prediction: str | None  # the chosen trajectory's raw text
    correct: bool
    pass_at_n: bool  # some candidate's answer is correct (oracle)
    candidates: int
    prompt_tokens: int
    generated_tokens: int
    prm_tokens: int
    generator_flops: float | None
    prm_flops: float | None
    wall_s: float
    reused: bool  # the first n samples of a larger pool
    error: str | None = None
    unchecked: bool = False  # math-verify could not decide the verdict in time (counted wrong)
    tokens_estimated: bool = False  # reused: the server reported tokens per response, split by length


class Grader:
    """Verdicts of answers against a problem's gold answer, each distinct answer checked once
    (math-verify with a time limit per comparison). A verdict math-verify could not reach is
    None: graded wrong, and the row says so."""

    def __init__(self, timeout_s: float = 5.0):
        self.timeout_s = timeout_s
        self._verdicts: dict[tuple[str, str], bool | None] = {}

    def verdict(self, problem: Problem, answer: str | None) -> bool | None:
        if answer is None:
            return False
        if problem.choices:  # multiple choice: the letters must match
            return choice_letter(answer, LETTERS[: len(problem.choices)]) == problem.answer
        key = (problem.id, answer)
        if key not in self._verdicts:
            self._verdicts[key] = compare(answer, problem.answer, self.timeout_s)
        return self._verdicts[key]

    def __call__(self, problem: Problem, answer: str | None) -> bool:
        return self.verdict(problem, answer) is True


def row_for(
    problem: Problem,
    strategy: str,
    n: int,
    answer: str | None,
    best: Candidate | None,
    candidates: Sequence[Candidate],
    usage: Usage,
    grade: Grader,
    reused: bool,
) -> Row:
    return Row(
        problem_id=problem.id,
        strategy=strategy,
        n=n,
        gold=problem.answer,
        answer=answer,
        prediction=best.trajectory.text if best is not None else None,
        correct=grade(problem, answer),
        unchecked=grade.verdict(problem, answer) is None,
        pass_at_n=any(grade(problem, c.answer) for c in candidates if c.ok),
        candidates=len(candidates),
        prompt_tokens=usage.prompt_tokens,
        generated_tokens=usage.generated_tokens,
        prm_tokens=usage.prm_tokens,
        generator_flops=usage.generator_flops,
        prm_flops=usage.prm_flops,
        wall_s=usage.wall_time_s,
        reused=reused,
        tokens_estimated=reused and any(c.tokens_estimated for c in candidates),
    )


async def pooled_rows(
    solver: ReasoningSolver, problem: Problem, strategies: list[SampleThenChoose], budgets: list[int], grade: Grader
) -> list[Row]:
    """Every sample-then-choose strategy at every budget, from one pool of max(budgets)
    samples. Wall time of budget N: the pool's generation time x N / max + the PRM chunks."""
    ctx = await solver.context(problem.question)
    started = time.perf_counter()
    try:
        completions = await ctx.sample(max(budgets))
        generation_s = time.perf_counter() - started
        pool = [ctx.candidate(c) for c in completions]
        scored_upto, prm_tokens, prm_s, rows = 0, {0: 0}, {0: 0.0}, []
        for n in sorted(budgets):
            if any(s.uses_prm for s in strategies) and n > scored_upto:
                chunk_started = time.perf_counter()
                await ctx.score_candidates(pool[scored_upto:n])
                prm_s[n] = prm_s[scored_upto] + time.perf_counter() - chunk_started
                prm_tokens[n], scored_upto = ctx.usage.prm_tokens, n
            first = pool[:n]
            for strategy in strategies:
                outcome = strategy.choose(list(first))
                usage = Usage(
                    prompt_tokens=ctx.usage.prompt_tokens,
                    generated_tokens=sum(c.generated_tokens or 0 for c in first),
                    prm_tokens=prm_tokens[n] if strategy.uses_prm else 0,
                    generator_calls=ctx.usage.generator_calls,
                    wall_time_s=generation_s * n / max(budgets) + (prm_s[n] if strategy.uses_prm else 0.0),
                )
                usage.estimate_flops(
                    ctx.generator.num_parameters if isinstance(ctx.generator, SizedGenerator) else None,
                    ctx.scorer.num_parameters if ctx.scorer is not None else None,
                )
                args = (problem, strategy.name, n, outcome.answer, outcome.best, first, usage, grade)
                rows.append(await asyncio.to_thread(row_for, *args, reused=n < max(budgets)))
        return rows
    finally:
        await ctx.close()


async def search_row(solver: ReasoningSolver, problem: Problem, strategy: Strategy, grade: Grader) -> Row:
    result = await solver.run(problem.question, strategy)
    args = (problem, strategy.name, strategy.params.n, result.answer, result.best, result.candidates, result.usage)
    return await asyncio.to_thread(row_for, *args, grade, reused=False)


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
        under a token budget, which a pool's first N samples would not hold to)."""
        return tuple(
            name
            for name, s in self.built().items()
            if isinstance(s, SampleThenChoose) and s.params.token_budget is None
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
    """The jobs whose rows `done` does not hold yet."""
    pooled = spec.pooled
    searched = [name for name in spec.strategies if name not in pooled]
    jobs = []
    for problem in problems:
        if any((problem.id, name, n) not in done for name in pooled for n in spec.budgets):
            jobs.append(Job(problem, None, max(spec.budgets)))
        jobs += [
            Job(problem, name, n) for name in searched for n in spec.runs[name] if (problem.id, name, n) not in done
        ]
    return jobs


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

    async def resolved(self) -> dict[str, Any]:
        """What "auto" settings became for this checkpoint (loads the PRM)."""
        scorer = await asyncio.to_thread(lambda: self.solver.scorer)
        return {"aggregation": resolve_aggregation(self.spec.settings.prm.aggregation, scorer), **scorer.describe()}

    async def rows(self, job: Job) -> list[dict[str, Any]]:
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
