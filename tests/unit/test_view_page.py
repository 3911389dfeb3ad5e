"""The page of a solve (`rfprm view`) says what the CLI says: "(none found)" for no answer, and
usage figures rounded as the CLI rounds them."""

from __future__ import annotations

import json
from pathlib import Path

from rfprm_tts.offline.view import render_html
from rfprm_tts.trajectory import SolveResult

SAVED = json.loads((Path(__file__).parents[1] / "data" / "solve_result.json").read_text())


def test_no_answer_reads_as_the_cli_says_it():
    page = render_html(SolveResult.model_validate({**SAVED, "answer": None}))
    assert '<b id="answer">(none found)</b>' in page and "None</b>" not in page


def test_usage_figures_are_rounded():
    usage = {**SAVED["usage"], "wall_time_s": 2.6291126219999796, "prm_flops": 319258836.0}
    page = render_html(SolveResult.model_validate({**SAVED, "usage": usage}))
    assert "2.63" in page and "2.6291126" not in page
    assert "3.19e+08" in page and "319258836.0" not in page


def test_a_vote_without_scores_shows_no_summed_score():
    """majority_vote scores nothing: its answers table shows "-", not a summed 0.000."""
    unscored = [{**c, "score": None, "step_scores": []} for c in SAVED["candidates"]]
    page = render_html(SolveResult.model_validate({**SAVED, "candidates": unscored}))
    answers = page.split('<table id="answers">', 1)[1].split("</table>", 1)[0]
    assert "<td>-</td>" in answers and "0.000" not in answers
