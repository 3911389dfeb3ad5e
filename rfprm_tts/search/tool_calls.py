"""Choosing among samples that end in tool calls (an agent's turn).

A sampling strategy picks among the samples that answer in text; over the samples that call
tools this module votes, the way a person would check an agent's step:

    fail the calls the client could not run: a tool it did not offer, arguments that are not
        a JSON object, a call where tool_choice is "none" (and text where it asks for a call)
    more samples call tools than answer in text?   else the strategy's pick stands
        group them by the tools they call (names, in order): the largest group
        within it, by the arguments (canonical JSON: keys sorted): the largest group
        ties: the larger summed PRM score (of the reasoning before the call), then first seen
        the winner is the best-scored sample of that group, its calls verbatim

That is the "hierarchical" vote (ToolSpec.vote, the proxy's rfprm.tool_vote). "tool_name" stops
after the names (the best-scored call of the most called tools, whatever its arguments);
"tool_args" votes on whole calls at once (names and arguments), so a tool called by many samples
with scattered arguments can lose to a call a few samples agree on exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from referencing.exceptions import Unresolvable

from rfprm_tts.generators.base import ToolSpec
from rfprm_tts.trajectory import Candidate


@dataclass
class ShapedVote:
    """A vote among samples shaped by the request (tool calls here, JSON answers in
    json_answers.py): the winning sample (None: no winner of that shape), its answer written
    out, and the counts that decided it."""

    best: Candidate | None
    answer: str | None
    details: dict[str, Any] = field(default_factory=dict)


def canonical_json(value: Any) -> str:
    """A JSON value written one way: keys sorted, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """What keeps `value` from matching the JSON schema, or None when it does."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return f"does not match the schema: {exc.message[:200]}"
    except (jsonschema.SchemaError, Unresolvable, RecursionError) as exc:  # schemas are checked at the request
        return f"cannot be checked: the schema fails ({str(exc)[:200]})"
    return None


def canonical(arguments: str) -> str | None:
    """A call's arguments as canonical JSON, or None when they are not a JSON object."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):  # RecursionError: nesting past Python's limit
        return None
    return canonical_json(value) if isinstance(value, dict) else None


def check_calls(candidates: list[Candidate], spec: ToolSpec) -> None:
    """Fail the samples whose calls the client could not run or did not allow."""
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in spec.tools}
    named = spec.choice["function"]["name"] if isinstance(spec.choice, dict) else None
    for c in candidates:
        if not c.ok:
            continue
        calls = c.tool_calls or []
        bad = next(filter(None, (call_problem(call["function"], schemas) for call in calls)), None)
        if calls and spec.choice == "none":
            c.error = "called a tool where tool_choice is 'none'"
        elif bad:
            c.error = bad
        elif named is not None and any(call["function"]["name"] != named for call in calls):
            c.error = f"called another tool than the one tool_choice names ({named!r})"
        elif not calls and (spec.choice == "required" or named is not None):
            c.error = "answered in text where tool_choice asks for a tool call"


def call_problem(function: dict[str, Any], schemas: dict[str, dict[str, Any] | None]) -> str | None:
    """Why the client could not run this call (a tool it did not offer, arguments that are not
    a JSON object or not what the tool's parameters schema allows), or None."""
    name = function["name"]
    if name not in schemas:
        return f"called {name!r}, a tool that was not offered"
    if canonical(function["arguments"]) is None:
        return f"called {name!r} with arguments that are not a JSON object"
    schema = schemas[name]
    problem = schema_problem(json.loads(function["arguments"]), schema) if schema else None
    return f"called {name!r} with arguments that {problem}" if problem else None


def vote_tool_calls(candidates: list[Candidate], spec: ToolSpec) -> ShapedVote:
    """The module's rule (see its docstring) over a strategy's candidates."""
    check_calls(candidates, spec)
    calling = [c for c in candidates if c.ok and c.tool_calls]
    texting = sum(c.ok and not c.tool_calls for c in candidates)
    details: dict[str, Any] = {"calling": len(calling), "text": texting}
    if len(calling) <= texting:
        return ShapedVote(None, None, details)
    same_tools = largest_group(calling, called_names) if spec.vote != "tool_args" else calling
    same_call = largest_group(same_tools, whole_calls) if spec.vote != "tool_name" else same_tools
    best = best_scored(same_call)
    answer = "; ".join(
        f"{call['function']['name']}({canonical(call['function']['arguments'])})" for call in _calls(best)
    )
    details.update(same_tools=len(same_tools), same_call=len(same_call))
    return ShapedVote(best, answer, details)


def _calls(c: Candidate) -> list[dict[str, Any]]:
    return c.tool_calls or []


def called_names(c: Candidate) -> tuple[str, ...]:
    """The tools a sample calls, in order."""
    return tuple(call["function"]["name"] for call in _calls(c))


def whole_calls(c: Candidate) -> tuple[tuple[str, str | None], ...]:
    """A sample's calls: each tool's name and its arguments as canonical JSON."""
    return tuple((call["function"]["name"], canonical(call["function"]["arguments"])) for call in _calls(c))


def best_scored(candidates: list[Candidate]) -> Candidate:
    """The highest PRM score (unscored last; ties: the first)."""
    return max(candidates, key=lambda c: c.score if c.score is not None else -math.inf)


def largest_group(candidates: list[Candidate], key: Callable[[Candidate], Hashable]) -> list[Candidate]:
    """The largest group by `key`; ties: the larger summed PRM score, then the first seen."""
    groups: dict[Hashable, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(key(c), []).append(c)
    return max(groups.values(), key=lambda g: (len(g), sum(c.score or 0.0 for c in g)))
