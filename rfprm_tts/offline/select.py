"""`rfprm select SCORED.jsonl -o KEPT.jsonl`: keep the best-scored rows of an `rfprm score`
output, for fine-tuning (the ReasonFlux paper's offline trajectory selection).

Rules, applied in this order: rows that failed to score are never kept; `--require-correct`
keeps only rows whose final answer equals the gold field (the project's grader); `--min-score`
drops rows below it; then `--top-k K` or `--top-frac F` keeps the best per group (rows with the
same group field, by default the same question) or over the whole file. Ties keep the row that
comes first; kept rows are written in input order.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rfprm_tts.errors import ConfigError
from rfprm_tts.grading.equivalence import equivalent
from rfprm_tts.offline.score import QUESTION_FIELDS, RESPONSE_FIELDS, pick
from rfprm_tts.offline.view import fmt
from rfprm_tts.prm.aggregate import AGGREGATIONS
from rfprm_tts.runtime.files import check_output, jsonl, read_jsonl, write_atomically
from rfprm_tts.text import extract_answer


@dataclass(frozen=True)
class Rule:
    by: str = "reasonflux"
    top_k: int | None = None
    top_frac: float | None = None
    per: Literal["group", "global"] = "group"
    min_score: float | None = None
    require_correct: bool = False
    gold_field: str = "answer"
    group_field: str | None = None  # None: the question
    response_field: str | None = None  # None: the first of the usual names (as rfprm score reads it)

    def __post_init__(self) -> None:
        if self.by not in AGGREGATIONS:
            raise ConfigError(f"--by {self.by!r}: choose one of {', '.join(AGGREGATIONS)}")
        if self.top_k is not None and self.top_frac is not None:
            raise ConfigError("--top-k and --top-frac both size the selection: give one")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("--top-k must be at least 1")
        if self.top_frac is not None and not 0 < self.top_frac <= 1:
            raise ConfigError("--top-frac must be in (0, 1]")


@dataclass
class Summary:
    rows: int = 0
    unscored: int = 0
    incorrect: int = 0
    below_min: int = 0
    kept: int = 0
    groups: int = 0
    mean_kept: float | None = None
    mean_dropped: float | None = None
    dropped_by_rank: int = 0

    def table(self) -> str:
        return (
            f"kept {self.kept} of {self.rows} rows ({self.groups} groups); dropped: {self.unscored} unscored, "
            f"{self.incorrect} incorrect, {self.below_min} below --min-score, {self.dropped_by_rank} by rank; "
            f"mean score kept {fmt(self.mean_kept)}, dropped {fmt(self.mean_dropped)}"
        )


def select(rows: list[dict[str, Any]], rule: Rule) -> tuple[list[int], Summary]:
    """The indices of the rows kept (in input order), and what happened to the rest."""
    summary = Summary(rows=len(rows))
    scores: dict[int, float] = {}  # every scored row's score under rule.by
    candidates: list[int] = []
    for i, row in enumerate(rows):
        score = (row.get("rfprm") or {}).get("scores", {}).get(rule.by)
        if score is None:
            summary.unscored += 1
            continue
        scores[i] = score
        if rule.require_correct and not is_correct(row, rule.gold_field, rule.response_field):
            summary.incorrect += 1
        elif rule.min_score is not None and score < rule.min_score:
            summary.below_min += 1
        else:
            candidates.append(i)

    pools: dict[Any, list[int]] = defaultdict(list)
    for i in candidates:
        pools[group_of(rows[i], rule) if rule.per == "group" else None].append(i)
    kept: list[int] = []
    for members in pools.values():
        ranked = sorted(members, key=lambda i: (-scores[i], i))  # ties: the row that comes first
        size = (
            rule.top_k
            if rule.top_k is not None
            else math.ceil(rule.top_frac * len(ranked))
            if rule.top_frac is not None
            else len(ranked)
        )
        kept += ranked[:size]
    kept.sort()
    summary.kept, summary.dropped_by_rank = len(kept), len(candidates) - len(kept)
    summary.groups = len({group_of(rows[i], rule) for i in scores})
    kept_set = set(kept)
    summary.mean_kept = mean([scores[i] for i in kept])
    summary.mean_dropped = mean([v for i, v in scores.items() if i not in kept_set])
    return kept, summary


def group_of(row: dict[str, Any], rule: Rule) -> Any:
    if rule.group_field is not None:
        return json.dumps(row.get(rule.group_field), sort_keys=True)
    return question_of_row(row)


def question_of_row(row: dict[str, Any]) -> str | None:
    """The question a row answers (its first question field)."""
    return next((row[f] for f in QUESTION_FIELDS if isinstance(row.get(f), str)), None)


def is_correct(
    row: dict[str, Any], gold_field: str, response_field: str | None, flag: str = "--require-correct"
) -> bool:
    """Whether the row's response's final answer equals its gold field (`flag`: the option that
    asked, for the error when the row has none)."""
    if gold_field not in row:
        raise ConfigError(f"{flag}: a row has no gold field {gold_field!r} (name it with --gold-field)")
    try:
        response = pick(row, response_field, RESPONSE_FIELDS, "response")
    except ValueError:
        return False
    return equivalent(extract_answer(response), str(row[gold_field]))


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def select_file(source: str | Path, out: str | Path, rule: Rule) -> Summary:
    """Keep `rule`'s rows of `source` in `out` (written whole, never over the input)."""
    out = check_output(out, source)
    rows = read_jsonl(source, "the output of rfprm score")
    if rows and not any("rfprm" in r for r in rows):
        raise ConfigError(f"{source} has no scored rows (no 'rfprm' field): run rfprm score on it first")
    kept, summary = select(rows, rule)
    write_atomically(out, jsonl(rows[i] for i in kept))
    return summary
