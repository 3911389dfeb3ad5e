"""How good is a verifier at finding errors: ProcessBench's protocol (Zheng et al. 2024) and
within-problem AUROC, on step scores from any scorer. No torch here.

ProcessBench labels each answer with the index of its first wrong step (-1: all steps right).
A PRM becomes a critic through a threshold: its prediction is the first step scored below it
(-1 if none). Per subset: accuracy on the erroneous answers (the predicted index is the
labelled one), accuracy on the correct answers (predicted -1), and their harmonic mean, F1.
The official scripts read a two-label PRM at its argmax (threshold 0.5); for a PRM whose
scores are not calibrated, the paper picks the threshold with the best F1 on one subset (its
GSM8K split) and applies it to every subset: `tune_threshold`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Scores = Sequence[float | None]


@dataclass(frozen=True)
class Labelled:
    """One answer: its subset, its problem, its first wrong step (-1: none), its step scores
    and its aggregated score."""

    subset: str
    problem: str
    label: int
    step_scores: Scores
    score: float | None = None


@dataclass(frozen=True)
class SubsetResult:
    subset: str
    erroneous: int
    correct: int
    error_accuracy: float | None  # None: no answer of that kind in the subset
    correct_accuracy: float | None
    f1: float | None


def first_error(step_scores: Scores, threshold: float) -> int:
    """The first step scored below `threshold` (-1 if none; an unscored step is skipped)."""
    return next((i for i, s in enumerate(step_scores) if s is not None and s < threshold), -1)


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def subset_result(subset: str, answers: Sequence[Labelled], threshold: float) -> SubsetResult:
    hits = [(a.label, first_error(a.step_scores, threshold) == a.label) for a in answers]
    erroneous = [hit for label, hit in hits if label != -1]
    correct = [hit for label, hit in hits if label == -1]
    error_accuracy = sum(erroneous) / len(erroneous) if erroneous else None
    correct_accuracy = sum(correct) / len(correct) if correct else None
    return SubsetResult(
        subset,
        len(erroneous),
        len(correct),
        error_accuracy,
        correct_accuracy,
        harmonic_mean(error_accuracy, correct_accuracy),
    )


def by_subset(answers: Iterable[Labelled]) -> dict[str, list[Labelled]]:
    groups: dict[str, list[Labelled]] = defaultdict(list)
    for a in answers:
        groups[a.subset].append(a)
    return dict(sorted(groups.items()))


def process_bench(answers: Sequence[Labelled], threshold: float) -> list[SubsetResult]:
    """One result per subset, then (with several subsets) the macro average ("average")."""
    results = [subset_result(name, group, threshold) for name, group in by_subset(answers).items()]
    if len(results) > 1:

        def mean(values):
            known = [v for v in values if v is not None]
            return sum(known) / len(known) if known else None

        results.append(
            SubsetResult(
                "average",
                sum(r.erroneous for r in results),
                sum(r.correct for r in results),
                mean(r.error_accuracy for r in results),
                mean(r.correct_accuracy for r in results),
                mean(r.f1 for r in results),
            )
        )
    return results


def tune_threshold(answers: Sequence[Labelled]) -> float:
    """The threshold with the best F1 on `answers` (ties: the one nearest 0.5). Candidates are
    the midpoints between consecutive distinct step scores, and the ends."""
    scores = sorted({s for a in answers for s in a.step_scores if s is not None})
    if not scores:
        raise ValueError("no step scores to tune a threshold on")
    candidates = [scores[0] - 1e-9, *((x + y) / 2 for x, y in itertools.pairwise(scores)), scores[-1] + 1e-9]

    def quality(t: float) -> tuple[float, float]:
        return (subset_result("", answers, t).f1 or 0.0, -abs(t - 0.5))

    return max(candidates, key=quality)


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half."""
    if not positives or not negatives:
        return None
    ranked = sorted([(s, 1) for s in positives] + [(s, 0) for s in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += mean_rank * sum(label for _, label in ranked[i:j])
        i = j
    p, q = len(positives), len(negatives)
    return (rank_sum - p * (p + 1) / 2) / (p * q)


def within_problem_auroc(answers: Iterable[Labelled]) -> tuple[float | None, int]:
    """The mean over problems of the AUROC of aggregated scores, correct answers (label -1)
    against wrong ones, and how many problems had both (the others say nothing)."""
    groups: dict[str, list[tuple[float, int]]] = defaultdict(list)  # per problem: (score, label)
    for a in answers:
        if a.score is not None:
            groups[a.problem].append((a.score, a.label))
    values = []
    for group in groups.values():
        value = auroc([s for s, label in group if label == -1], [s for s, label in group if label != -1])
        if value is not None:
            values.append(value)
    return (sum(values) / len(values) if values else None), len(values)
