"""Whole responses scored by the PRM, outside a search: what `rfprm score`, the RL reward
adapters and the proxy's scoring endpoint share. One scorer call for many questions'
responses; a response that cannot be scored gets its error and the rest go on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rfprm_tts.prm.aggregate import AGGREGATIONS, aggregate
from rfprm_tts.prm.protocol import Scorer
from rfprm_tts.trajectory import Trajectory


@dataclass
class ResponseScore:
    """A response's step scores, its score under every aggregation, how many steps it was cut
    into, the overflow note, the PRM tokens it took (its share by length of its question's
    call, when several responses share one); or the error that kept it unscored."""

    step_scores: list[float | None]
    scores: dict[str, float | None]
    steps: int
    prm_note: str | None
    prm_tokens: int
    error: str | None = None
    one_score: bool = False  # the verifier gives one score per answer: every aggregation is it


def steps_of(question: str, response: str | Sequence[str], separator: str) -> tuple[list[str], bool]:
    """(steps, whether the last is a final answer after <think>): a list of steps as given, or
    a response cut at the separator (the ReasonFlux input when it has <think>)."""
    if not isinstance(response, str):
        return list(response), False
    trajectory = Trajectory.from_response(question, response, separator)
    return trajectory.step_texts, trajectory.ends_with_answer_step


def score_responses(
    scorer: Scorer, items: Sequence[tuple[str, str | Sequence[str]]], separator: str, alpha: float
) -> list[ResponseScore]:
    """Score (question, response or steps) pairs in one scorer call, the responses to one
    question together (a GRPO group is one request); an empty response fails alone."""
    cut = [steps_of(q, r, separator) for q, r in items]
    by_question: dict[str, list[int]] = {}
    for i, (steps, _) in enumerate(cut):
        if steps:
            by_question.setdefault(items[i][0], []).append(i)
    requests = [(question, [cut[i][0] for i in indices]) for question, indices in by_question.items()]
    cache = scorer.prefix_cache
    if cache is not None:  # a search of the same question at once keeps its prefixes meanwhile
        for question in by_question:
            cache.hold(question)
    try:
        batches = scorer.score_many(requests) if requests else []
    finally:
        if cache is not None:  # nothing here is scored twice: keep no prefixes
            for question in by_question:
                cache.forget(question)
    results = [ResponseScore([], {}, 0, None, 0, error="the response is empty") for _ in items]
    for indices, batch in zip(by_question.values(), batches):
        shares = [sum(len(s) for s in cut[i][0]) for i in indices]  # the batch's tokens, shared by length
        for k, i in enumerate(indices):
            scores, answer_step = batch.step_scores[k], cut[i][1]
            error = (batch.errors or [None] * len(indices))[k]
            by = {
                m: scores[0] if scorer.one_score and scores else aggregate(scores, m, alpha, answer_step=answer_step)
                for m in AGGREGATIONS
            }
            results[i] = ResponseScore(
                scores,
                {} if error else by,
                len(cut[i][0]),
                (batch.notes or [None] * len(indices))[k],
                round(batch.tokens * shares[k] / max(1, sum(shares))),
                None if error is None else f"the PRM could not score it: {error}",
                scorer.one_score,
            )
    return results
