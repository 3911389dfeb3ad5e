"""Choosing among samples whose answers are JSON (a request's structured output: OpenAI's
`response_format` json_object or json_schema).

A sampling strategy votes on \\boxed{} answers, which JSON answers do not have; this module
votes on the JSON itself:

    the answer of a sample is what follows its thinking (after </think>, if any)
    fail the samples whose answer is not JSON (an object, for json_object), or does not
        validate against the request's schema
    group the rest by their answer as canonical JSON (keys sorted, no spaces): the largest group
        ties: the larger summed PRM score, then first seen
    the winner is the best-scored sample of that group, its text verbatim
"""

from __future__ import annotations

import json
from typing import Any

from rfprm_tts.generators.base import JSONFormat
from rfprm_tts.search.tool_calls import ShapedVote, best_scored, canonical_json, largest_group, schema_problem
from rfprm_tts.text import THINK_CLOSE
from rfprm_tts.trajectory import Candidate


def answer_json(text: str) -> str:
    """The part of a sample that answers: what follows its thinking."""
    return text.split(THINK_CLOSE)[-1].strip()


def check_answer(text: str, spec: JSONFormat) -> tuple[str | None, str | None]:
    """A sample's answer as canonical JSON, or why it is not a valid one."""
    try:
        value = json.loads(answer_json(text))
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting past Python's limit
        return None, f"the answer is not JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if spec.response_format.get("type") == "json_object" and not isinstance(value, dict):
        return None, "the answer is JSON but not an object (response_format json_object)"
    if spec.schema is not None and (problem := schema_problem(value, spec.schema)) is not None:
        return None, f"the answer {problem} (response_format's schema)"
    return canonical_json(value), None


def vote_json(candidates: list[Candidate], spec: JSONFormat) -> ShapedVote:
    """The module's rule (see its docstring) over a strategy's candidates."""
    answers: dict[int, str] = {}  # by candidate id: its canonical answer
    for c in candidates:
        if not c.ok or c.tool_calls:
            continue
        canonical, error = check_answer(c.trajectory.text, spec)
        if canonical is None:
            c.error = error
        else:
            answers[id(c)] = canonical
    valid = [c for c in candidates if id(c) in answers]
    details: dict[str, Any] = {"valid": len(valid), "distinct": len(set(answers.values()))}
    if not valid:
        return ShapedVote(None, None, details)
    members = largest_group(valid, lambda c: answers[id(c)])
    details["votes"] = len(members)
    best = best_scored(members)
    return ShapedVote(best, answers[id(best)], details)
