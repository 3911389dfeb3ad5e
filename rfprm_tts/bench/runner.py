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
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rfprm_tts.bench.datasets import Problem
from rfprm_tts.bench.store import RunStore
from rfprm_tts.grading import compare
from rfprm_tts.prm.aggregate import resolve_aggregation
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies.base import SampleThenChoose, Strategy, build_strategy
from rfprm_tts.trajectory import Candidate, Usage


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
        key = (problem.id, answer)
        if key not in self._verdicts:
            self._verdicts[key] = compare(answer, problem.answer, self.timeout_s)
        return self._verdicts[key]

    def __call__(self, problem: Problem, answer: str | None) -> bool:
        return self.verdict(problem, answer) is True


def row_for(
    problem: Problem, strategy: str, n: int, answer: str | None, best: Candidate | None,
    candidates: Sequence[Candidate], usage: Usage, grade: Grader, reused: bool,
) -> Row:
    return Row(
        problem_id=problem.id, strategy=strategy, n=n, gold=problem.answer, answer=answer,
        prediction=best.trajectory.text if best is not None else None,
        correct=grade(problem, answer), unchecked=grade.verdict(problem, answer) is None,
        pass_at_n=any(grade(problem, c.answer) for c in candidates if c.ok),
        candidates=len(candidates), prompt_tokens=usage.prompt_tokens,
        generated_tokens=usage.generated_tokens, prm_tokens=usage.prm_tokens,
        generator_flops=usage.generator_flops, prm_flops=usage.prm_flops,
        wall_s=usage.wall_time_s, reused=reused,
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
                usage.estimate_flops(getattr(ctx.generator, "num_parameters", None), ctx.scorer.num_parameters)
                args = (problem, strategy.name, n, outcome.answer, outcome.best, first, usage, grade)
                rows.append(await asyncio.to_thread(row_for, *args, reused=n < max(budgets)))
        return rows
    finally:
        await ctx.close()


async def search_row(solver: ReasoningSolver, problem: Problem, strategy: Strategy, grade: Grader) -> Row:
    result = await solver.run(problem.question, strategy)
    args = (problem, strategy.name, strategy.params.n, result.answer, result.best, result.candidates, result.usage)
    return await asyncio.to_thread(row_for, *args, grade, reused=False)


def failed_row(problem: Problem, strategy: str, n: int, error: Exception) -> Row:
    return Row(
        problem_id=problem.id, strategy=strategy, n=n, gold=problem.answer, answer=None, prediction=None,
        correct=False, pass_at_n=False, candidates=0, prompt_tokens=0, generated_tokens=0, prm_tokens=0,
        generator_flops=None, prm_flops=None, wall_s=0.0, reused=False, error=f"{type(error).__name__}: {error}",
    )


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
) -> RunStore:
    """Run what `out_dir` does not hold yet; returns the store with every row. A given
    `solver` (e.g. with ready backends) is used instead of one built from `settings`."""
    budgets = sorted(set(budgets))
    built = {name: build_strategy(name, settings.strategy_params, n=max(budgets)) for name in strategies}
    pooled = [s for s in built.values() if isinstance(s, SampleThenChoose)]
    searched = [name for name, s in built.items() if not isinstance(s, SampleThenChoose)]
    own = solver is None
    solver = solver or ReasoningSolver(settings)
    scorer = await asyncio.to_thread(lambda: solver.scorer)
    config = {**(run_config or {}), "strategies": list(strategies), "budgets": budgets,
              "settings": settings.model_dump(mode="json", exclude={"generator": {"api_key"}, "prm": {"api_key"}, "serve": True}),
              # what "auto" settings became for this checkpoint
              "resolved": {"aggregation": resolve_aggregation(settings.prm.aggregation, scorer), **scorer.describe()}}
    store = RunStore(out_dir, config)
    done = store.done()
    jobs: list[tuple[Problem, str | None, int]] = []  # strategy None: the problem's sample pool
    for problem in problems:
        if any((problem.id, s.name, n) not in done for s in pooled for n in budgets):
            jobs.append((problem, None, max(budgets)))
        jobs += [(problem, name, n) for name in searched for n in budgets if (problem.id, name, n) not in done]

    grade = Grader()
    limit = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(jobs), desc="bench", unit="job", disable=not progress, dynamic_ncols=True)

    async def run(problem: Problem, strategy: str | None, n: int) -> None:
        async with limit:
            try:
                if strategy is None:
                    rows = await pooled_rows(solver, problem, pooled, budgets, grade)
                    rows = [r for r in rows if (r.problem_id, r.strategy, r.n) not in done]
                else:
                    rows = [await search_row(solver, problem, build_strategy(strategy, settings.strategy_params, n=n), grade)]
            except Exception as exc:  # noqa: BLE001 - a failed problem is a row, not a crashed run
                names = [s.name for s in pooled] if strategy is None else [strategy]
                ns = budgets if strategy is None else [n]
                rows = [failed_row(problem, name, k, exc) for name in names for k in ns if (problem.id, name, k) not in done]
            await asyncio.to_thread(store.append, [asdict(r) for r in rows])
            bar.update()

    try:
        await asyncio.gather(*(run(*job) for job in jobs))
    finally:
        bar.close()
        if own:
            await solver.aclose()
    return store
