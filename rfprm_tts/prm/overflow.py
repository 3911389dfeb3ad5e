"""What to do when a question + trajectory is longer than the PRM's context.

A PRM read past its trained context gives unreliable scores, so the policy is a setting
(`prm.overflow`) and never silent:

- `error`: raise PRMInputTooLongError (the default).
- `truncate`: one input with the question and as many trailing steps as fit; the earlier
  steps stay unscored (None).
- `window`: several inputs, each the question plus a run of consecutive steps; each window
  starts `overlap` steps before the first step it scores, so those steps give it context.

Planning works on token counts alone (a pure function), so it is cheap to test by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rfprm_tts.errors import PRMInputTooLongError

POLICIES = ("error", "truncate", "window")


@dataclass(frozen=True)
class Piece:
    """One PRM input: the question and steps [start, end); the scores of steps [keep, end)
    are used (the steps before `keep` are context from an overlap)."""

    start: int
    end: int
    keep: int


def plan(step_tokens: Sequence[int], budget: int, policy: str, overlap: int = 0) -> tuple[list[Piece], str | None]:
    """Cut a trajectory of steps (their token counts, tag included) into inputs that each fit
    `budget` tokens (the context less the question's template). Returns the pieces and a note
    saying what was done, None when the whole trajectory fits."""
    n = len(step_tokens)
    if sum(step_tokens) <= budget:
        return [Piece(0, n, 0)], None
    if policy == "error":
        raise PRMInputTooLongError(
            f"the trajectory's {n} steps take {sum(step_tokens)} tokens but only {budget} fit the "
            "PRM's context after the question. Set prm.overflow to 'truncate' (score the last "
            "steps that fit) or 'window' (score all steps in overlapping windows), shorten the "
            "trajectory (generator.max_tokens), or use a PRM with a longer context."
        )
    if policy == "truncate":
        start = _first_that_fits(step_tokens, n, budget)
        pieces = [Piece(start, n, start)] if start < n else []
        return pieces, f"truncated: steps 1-{start} of {n} unscored (past the PRM context)"
    if policy != "window":
        raise ValueError(f"unknown overflow policy {policy!r}; choose one of {', '.join(POLICIES)}")
    pieces, unscored, keep = [], [], 0
    while keep < n:
        start, end = _window_from(step_tokens, keep, budget, overlap)
        if end == keep:  # this step alone is longer than the context
            unscored.append(keep + 1)
            keep += 1
            continue
        pieces.append(Piece(start, end, keep))
        keep = end
    note = f"windowed: {n} steps in {len(pieces)} windows overlapping by up to {overlap} steps"
    if unscored:
        note += f"; steps {unscored} unscored (each alone is longer than the PRM context)"
    return pieces, note


def _first_that_fits(step_tokens: Sequence[int], end: int, budget: int) -> int:
    """The smallest start such that steps [start, end) fit the budget."""
    start, used = end, 0
    while start > 0 and used + step_tokens[start - 1] <= budget:
        start -= 1
        used += step_tokens[start]
    return start


def _window_from(step_tokens: Sequence[int], keep: int, budget: int, overlap: int) -> tuple[int, int]:
    """A window whose first scored step is `keep`: as much overlap (up to `overlap` steps) as
    still lets step `keep` fit, then as many steps after it as fit."""
    for start in range(max(0, keep - overlap), keep + 1):
        end, used = start, 0
        while end < len(step_tokens) and used + step_tokens[end] <= budget:
            used += step_tokens[end]
            end += 1
        if end > keep:
            return start, end
    return keep, keep
