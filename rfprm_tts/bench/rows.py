"""One graded row per (problem, strategy, budget).

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
from dataclasses import dataclass, field
from typing import Any

from rfprm_tts.bench.datasets import LETTERS, Problem
from rfprm_tts.grading.equivalence import choice_letter, compare
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies.base import SampleThenChoose, Strategy
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
    generated_tokens: int  # answer probes (early exit) included
    prm_tokens: int
    generator_flops: float | None
    prm_flops: float | None
    wall_s: float
    reused: bool  # the first n samples of a larger pool
    error: str | None = None
    unchecked: bool = False  # math-verify could not decide the verdict in time (counted wrong)
    tokens_estimated: bool = False  # reused: the server reported tokens per response, split by length
    probe_tokens: int = 0  # of generated_tokens, those that probed for an answer (early exit)
    draft_generated_tokens: int = 0  # a speculative strategy's draft model (settings.draft), apart
    draft_flops: float | None = None
    selector_generated_tokens: int = 0  # genselect's selector model (settings.selector), apart
    selector_flops: float | None = None
    # a search strategy's scalar result details, e.g. speculative_steps' acceptance and the steps
    # each model wrote (nested ones, such as a vote's tallies, are left out of the row)
    details: dict[str, Any] = field(default_factory=dict)


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
    details: dict[str, Any] | None = None,
) -> Row:
    scalars = {k: v for k, v in (details or {}).items() if v is None or isinstance(v, str | int | float | bool)}
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
        probe_tokens=usage.probe_tokens,
        prm_tokens=usage.prm_tokens,
        generator_flops=usage.generator_flops,
        prm_flops=usage.prm_flops,
        draft_generated_tokens=usage.draft_generated_tokens,
        draft_flops=usage.draft_flops,
        selector_generated_tokens=usage.selector_generated_tokens,
        selector_flops=usage.selector_flops,
        wall_s=usage.wall_time_s,
        reused=reused,
        tokens_estimated=reused and any(c.tokens_estimated for c in candidates),
        details=scalars,
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
                usage.estimate_flops(ctx.parameter_counts())
                args = (problem, strategy.name, n, outcome.answer, outcome.best, first, usage, grade)
                rows.append(await asyncio.to_thread(row_for, *args, reused=n < max(budgets)))
        return rows
    finally:
        await ctx.close()


async def search_row(solver: ReasoningSolver, problem: Problem, strategy: Strategy, grade: Grader) -> Row:
    result = await solver.run(problem.question, strategy)
    args = (problem, strategy.name, strategy.params.n, result.answer, result.best, result.candidates, result.usage)
    return await asyncio.to_thread(row_for, *args, grade, reused=False, details=result.details)
