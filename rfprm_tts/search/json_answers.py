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
import math
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from rfprm_tts.generators.base import JSONFormat
from rfprm_tts.text import THINK_CLOSE
from rfprm_tts.trajectory import Candidate


@dataclass
class JSONVote:
    """The vote's outcome: the winning sample (None when no sample's answer is valid JSON),
    its answer as canonical JSON, and the counts that decided it."""

    best: Candidate | None
    answer: str | None
    details: dict[str, Any] = field(default_factory=dict)


def answer_json(text: str) -> str:
    """The part of a sample that answers: what follows its thinking."""
    return text.split(THINK_CLOSE)[-1].strip()


def check_answer(text: str, spec: JSONFormat) -> tuple[str | None, str | None]:
    """A sample's answer as canonical JSON, or why it is not a valid one."""
    try:
        value = json.loads(answer_json(text))
    except ValueError as exc:
        return None, f"the answer is not JSON ({exc})"
    if spec.response_format.get("type") == "json_object" and not isinstance(value, dict):
        return None, "the answer is JSON but not an object (response_format json_object)"
    if spec.schema is not None:
        try:
            jsonschema.validate(value, spec.schema)
        except jsonschema.ValidationError as exc:
            return None, f"the answer does not match the response_format's schema: {exc.message}"
        except jsonschema.SchemaError as exc:
            return None, f"the response_format's schema is not a valid JSON schema: {exc.message}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False), None


def vote_json(candidates: list[Candidate], spec: JSONFormat) -> JSONVote:
    """The module's rule (see its docstring) over a strategy's candidates."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if not c.ok or c.tool_calls:
            continue
        canonical, error = check_answer(c.trajectory.text, spec)
        if canonical is None:
            c.error = error
        else:
            groups.setdefault(canonical, []).append(c)
    details: dict[str, Any] = {"valid": sum(map(len, groups.values())), "distinct": len(groups)}
    if not groups:
        return JSONVote(None, None, details)
    answer, members = max(groups.items(), key=lambda item: (len(item[1]), sum(c.score or 0.0 for c in item[1])))
    best = max(members, key=lambda c: c.score if c.score is not None else -math.inf)
    details["votes"] = len(members)
    return JSONVote(best, answer, details)
