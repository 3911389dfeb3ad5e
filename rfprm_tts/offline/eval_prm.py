"""`rfprm eval-prm FILE`: score a labelled JSONL with the configured verifier and report
ProcessBench's figures (prm/evaluation.py) and within-problem AUROC.

Each row: a problem, its steps (a list of strings), the index of the first wrong step (-1:
none) and optionally a subset name (ProcessBench's fields: problem, steps, label; subsets
from a `subset` field, else one subset named after the file). `FILE` "demo" is the bundled
demo-world file, labelled exactly by the demo's arithmetic grader.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError
from rfprm_tts.prm.aggregate import aggregate, resolve_aggregation
from rfprm_tts.prm.evaluation import (
    Labelled,
    SubsetResult,
    first_error,
    process_bench,
    tune_threshold,
    within_problem_auroc,
)
from rfprm_tts.prm.protocol import Scorer
from rfprm_tts.runtime.files import jsonl_lines, parse_row

DEMO_FILE = Path(__file__).parents[1] / "demo" / "processbench_demo.jsonl"
FIELDS = ("problem", "steps", "label", "subset")


@dataclass
class Row:
    problem: str
    steps: list[str]
    label: int
    subset: str
    raw: dict[str, Any]


def read_rows(path: str | Path, fields: dict[str, str] | None = None) -> list[Row]:
    """The labelled rows of a JSONL file; a malformed row is an error naming its line."""
    path = DEMO_FILE if str(path) == "demo" else Path(path)
    names = {f: (fields or {}).get(f, f) for f in FIELDS}
    rows = []
    for number, line in jsonl_lines(path, f"a JSONL with {', '.join(FIELDS[:3])} per row, or 'demo'"):
        raw = parse_row(number, line)
        if isinstance(raw, str):
            raise ConfigError(f"{path}: {raw}; fix or remove that line")
        try:
            steps, label = raw[names["steps"]], int(raw[names["label"]])
            problem = raw[names["problem"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}:{number}: not a labelled row ({type(exc).__name__}: {exc}); each row needs "
                f"{names['problem']!r}, {names['steps']!r} (a list of strings) and {names['label']!r} (the first wrong "
                "step, -1 if none); map other names with --field problem=NAME"
            ) from None
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            raise ConfigError(f"{path}:{number}: {names['steps']!r} must be a non-empty list of strings")
        if not -1 <= label < len(steps):
            raise ConfigError(f"{path}:{number}: label {label} is not -1 or a step index (0..{len(steps) - 1})")
        rows.append(Row(problem, steps, label, str(raw.get(names["subset"], path.stem)), raw))
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return rows


@dataclass
class Report:
    threshold: float
    tuned_on: str | None
    aggregation: str
    subsets: list[SubsetResult]
    within_problem_auroc: float | None
    auroc_problems: int
    answers: int
    prm_tokens: int
    seconds: float

    def table(self) -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.1f}"

        how = f"tuned for F1 on {self.tuned_on!r}" if self.tuned_on else "given"
        lines = [
            f"threshold {self.threshold:.4f} ({how}); {self.answers} answers, {self.prm_tokens:,} PRM tokens "
            f"in {self.seconds:.1f} s",
            "",
            "| subset | erroneous | correct | error acc | correct acc | F1 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.subset} | {r.erroneous} | {r.correct} | {pct(r.error_accuracy)} | {pct(r.correct_accuracy)} "
            f"| {pct(r.f1)} |"
            for r in self.subsets
        ]
        if self.within_problem_auroc is not None:
            lines += [
                "",
                f"within-problem AUROC ({self.aggregation}): {self.within_problem_auroc:.3f} "
                f"over {self.auroc_problems} problems with right and wrong answers",
            ]
        return "\n".join(lines)


def score_rows(scorer: Scorer, rows: list[Row], progress: bool = True) -> tuple[list[list[float | None]], int]:
    """Every row's step scores (one scorer call per problem) and the PRM tokens run."""
    from tqdm import tqdm

    by_problem: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_problem[row.problem].append(i)
    scores: list[list[float | None]] = [[] for _ in rows]
    tokens = 0
    with tqdm(total=len(rows), unit="answer", desc="eval-prm", disable=not progress) as bar:
        for problem, indices in by_problem.items():
            if scorer.prefix_cache is not None:
                scorer.prefix_cache.hold(problem)  # forgotten below, once scored
            batch = scorer.score_batch(problem, [rows[i].steps for i in indices])
            tokens += batch.tokens
            for i, got, error in zip(indices, batch.step_scores, batch.errors or [None] * len(indices)):
                if error is not None:
                    raise ConfigError(
                        f"the PRM could not score an answer to {problem[:60]!r}: {error} (set prm.overflow)"
                    )
                scores[i] = got
            bar.update(len(indices))
            cache = scorer.prefix_cache
            if cache is not None:
                cache.forget(problem)
    return scores, tokens


def evaluate(
    scorer: Scorer,
    rows: list[Row],
    *,
    aggregation: str = "auto",
    alpha: float = 1.0,
    threshold: float | None = None,
    tune_on: str | None = None,
    progress: bool = True,
) -> tuple[Report, list[dict]]:
    """The report, and each row with its step scores and predicted first error."""
    if scorer.partial_ok is False:
        raise ConfigError("eval-prm needs step scores; an outcome reward model scores whole answers only")
    subsets = sorted({r.subset for r in rows})
    if tune_on is not None and tune_on not in subsets:  # said before the scoring, not after it
        raise ConfigError(f"--tune-on {tune_on!r}: no such subset; the file has {', '.join(subsets)}: name one of them")
    started = time.perf_counter()
    scores, tokens = score_rows(scorer, rows, progress)
    method = resolve_aggregation(aggregation, scorer)
    answers = [Labelled(r.subset, r.problem, r.label, s, aggregate(s, method, alpha)) for r, s in zip(rows, scores)]
    if tune_on is not None:
        chosen = [a for a in answers if a.subset == tune_on]
        threshold = tune_threshold(chosen)
    threshold = 0.5 if threshold is None else threshold
    value, problems = within_problem_auroc(answers)
    report = Report(
        threshold,
        tune_on,
        method,
        process_bench(answers, threshold),
        value,
        problems,
        len(rows),
        tokens,
        time.perf_counter() - started,
    )
    predictions = []
    for row, step_scores in zip(rows, scores):
        predicted = first_error(step_scores, threshold)
        predictions.append(
            {**row.raw, "step_scores": step_scores, "prediction": predicted, "match": predicted == row.label}
        )
    return report, predictions


def report_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2)
