"""`rfprm fit-aggregation SCORED.jsonl -o MODEL.json`: fit a learned aggregation
(rfprm_tts/prm/learned.py) on the rows of an `rfprm score` output whose correctness is known:
a boolean field (`--correct-field`, e.g. ProcessBench's final_answer_correct) or a gold answer
(`--gold-field`, graded as `rfprm select --require-correct` grades).

The questions are split (seeded) into a fitting part and a held-out part (`holdout`, a share of
the questions, so no question's answers are on both sides); the report compares the model fitted
on the first with every built-in aggregation on the second: AUROC over the held-out answers, and
top-1, the share of held-out questions whose best-scored answer is correct (what Best-of-N picks).
The model written is then fitted on all the rows.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError
from rfprm_tts.offline.select import is_correct, question_of_row
from rfprm_tts.offline.view import fmt
from rfprm_tts.prm.aggregate import AGGREGATIONS
from rfprm_tts.prm.evaluation import auroc
from rfprm_tts.prm.learned import LearnedAggregation, fit
from rfprm_tts.runtime.files import check_output, read_jsonl


@dataclass(frozen=True)
class Answer:
    """One scored row: its question, step scores, the built-in aggregations' scores, and whether it is right."""

    question: Any
    step_scores: list[float]
    scores: dict[str, float]
    correct: bool


@dataclass
class FitReport:
    rows: int = 0
    used: int = 0
    correct: int = 0
    skipped: int = 0  # unscored, or with no step score
    held_out_questions: int = 0
    held_out_answers: int = 0
    # per scoring (learned, then each built-in aggregation): held-out AUROC and top-1
    auroc: dict[str, float | None] = field(default_factory=dict)
    top1: dict[str, float | None] = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"fitted on {self.used} of {self.rows} rows ({self.correct} correct; {self.skipped} skipped: unscored); "
            f"held out for the comparison: {self.held_out_answers} answers to {self.held_out_questions} questions",
            "| aggregation | held-out AUROC | held-out top-1 |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {name} | {fmt(self.auroc[name])} | {fmt(self.top1[name])} |" for name in self.auroc]
        return "\n".join(lines)


def labelled_answers(
    rows: list[dict[str, Any]], correct_field: str | None, gold_field: str, response_field: str | None
) -> tuple[list[Answer], int]:
    """The scored rows as answers with labels, and how many rows were skipped (unscored)."""
    answers, skipped = [], 0
    for number, row in enumerate(rows, 1):
        scored = row.get("rfprm")
        if not isinstance(scored, dict) or scored.get("error") or not scored.get("step_scores"):
            skipped += 1
            continue
        steps = scored["step_scores"]
        if not isinstance(steps, list) or not all(number_or_none(s) for s in steps):
            raise ConfigError(
                f"row {number}: rfprm.step_scores is not a list of finite numbers; give the output of rfprm score"
            )
        if correct_field is not None:
            if not isinstance(row.get(correct_field), bool):
                raise ConfigError(
                    f"row {number}: --correct-field {correct_field!r} is {row.get(correct_field)!r}, not true or false"
                )
            correct = row[correct_field]
        else:
            correct = is_correct(row, gold_field, response_field, "fit-aggregation")
        kept = [float(s) for s in steps if s is not None]
        if not kept:
            skipped += 1
            continue
        by = scored.get("scores")
        builtin = (
            {m: float(v) for m, v in by.items() if v is not None and number_or_none(v)} if isinstance(by, dict) else {}
        )
        answers.append(Answer(question_of_row(row), kept, builtin, correct))
    return answers, skipped


def number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))


def top1(answers: list[Answer], score) -> float | None:
    """The share of questions whose best-scored answer is correct (the first of equals)."""
    by_question: dict[Any, list[Answer]] = defaultdict(list)
    for a in answers:
        by_question[a.question].append(a)
    if not by_question:
        return None
    return sum(max(group, key=score).correct for group in by_question.values()) / len(by_question)


def compare(model: LearnedAggregation, held_out: list[Answer], report: FitReport) -> None:
    scorings = {"learned": lambda a: model.score(a.step_scores)} | {
        m: (lambda a, m=m: a.scores.get(m, float("-inf"))) for m in AGGREGATIONS
    }
    for name, score in scorings.items():
        report.auroc[name] = auroc(
            [score(a) for a in held_out if a.correct], [score(a) for a in held_out if not a.correct]
        )
        report.top1[name] = top1(held_out, score)


def fit_file(
    source: str | Path,
    out: str | Path,
    correct_field: str | None = None,
    gold_field: str = "answer",
    response_field: str | None = None,
    holdout: float = 0.2,
    l2: float = 1.0,
    seed: int = 0,
) -> FitReport:
    out = check_output(out, source)
    rows = read_jsonl(source, "the output of rfprm score")
    answers, skipped = labelled_answers(rows, correct_field, gold_field, response_field)
    labels = {a.correct for a in answers}
    if labels != {True, False}:
        raise ConfigError(
            f"{source}: {len(answers)} scored answers, "
            + ("none" if not answers else "all correct" if True in labels else "none correct")
            + ": fitting needs both right and wrong answers (score more rows, or check --correct-field / --gold-field)"
        )
    report = FitReport(rows=len(rows), used=len(answers), correct=sum(a.correct for a in answers), skipped=skipped)
    questions = sorted({repr(a.question) for a in answers})
    random.Random(seed).shuffle(questions)
    held = set(questions[: round(holdout * len(questions))])
    fitting = [a for a in answers if repr(a.question) not in held]
    held_out = [a for a in answers if repr(a.question) in held]
    if held_out and {a.correct for a in fitting} == {True, False}:
        report.held_out_questions, report.held_out_answers = len(held), len(held_out)
        compare(fit([a.step_scores for a in fitting], [a.correct for a in fitting], l2), held_out, report)
    model = fit([a.step_scores for a in answers], [a.correct for a in answers], l2)
    fitted = {"source": str(source), "rows": report.used, "correct": report.correct, "l2": l2}
    replace(model, fitted=fitted | {"held_out_auroc": report.auroc, "held_out_top1": report.top1}).save(out)
    return report
