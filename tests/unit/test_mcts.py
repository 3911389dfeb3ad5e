"""MCTS (strategies/mcts.py) worked by hand on helpers.fakes.StepTreeGenerator(depth=2):
continuation i of a prefix with j steps is the step (i + 2j) % 9 + 1; after 2 steps the answer
is \\boxed{sum}. DigitScorer: a step scores its digit / 10 (the answer: the sum's first digit);
aggregation "last", so a node's PRM value is its last step's score. M = 2 (expand_width), so
every child's prior is 1/2."""

import math

import pytest

from helpers.fakes import DigitScorer, StepTreeGenerator
from rfprm_tts import ReasoningSolver, Settings


def solve(**params):
    gen, scorer = StepTreeGenerator(depth=2), DigitScorer()
    settings = Settings.load(strategy="mcts", prm=dict(aggregation="last"))
    result = ReasoningSolver(settings, generator=gen, scorer=scorer).solve("q", expand_width=2, **params)
    return result, gen, scorer


def node(result, *steps):
    """The tree node whose path is `steps`."""
    by_id = {n.id: n for n in result.tree}

    def path(n):
        return ([] if n.parent is None else path(by_id[n.parent])) + [n.text.strip()]

    return next(n for n in result.tree if path(n) == list(steps))


def test_puct_explores_the_less_visited_step_then_goes_back_to_the_better_one():
    # sim 1: expand the question: "1" .1, "2" .2                          root N 2
    # sim 2: PUCT at the root (N 2): "1" .1 + .5*sqrt2/2 = .454, "2" .2 + .354 = .554 -> expand "2":
    #        2|3 .3, 2|4 .4; "2" N 3, Q .3                                   root N 4
    # sim 3: root N 4: "1" .1 + .5*2/2 = .6 beats "2" .3 + .5*2/4 = .55 -> expand "1": 1|3 .3, 1|4 .4
    # sim 4: root N 6: "1" .267 + .306 = .573, "2" .3 + .306 = .606 -> "2"; there (N 3) 2|3 .3 + .433,
    #        2|4 .4 + .433 -> expand 2|4: its two answers are alike, \boxed{6} .6, kept once
    result, gen, scorer = solve(n=4, c_puct=1.0)
    assert [r.prefix for r in gen.requests] == ["", "2\n\n", "1\n\n", "2\n\n4\n\n"]
    assert [r.n for r in gen.requests] == [2, 2, 2, 2] and scorer.calls == 4
    assert result.answer == "6" and result.best.trajectory.step_texts == ["2", "4", "\\boxed{6}"]
    assert result.details == {"simulations": 4, "nodes": 7, "max_depth": 3}
    two, one = node(result, "2"), node(result, "1")
    assert (two.visits, one.visits) == (4, 3)
    assert two.value == pytest.approx((0.2 + 0.3 + 0.4 + 0.6) / 4) and one.value == pytest.approx(0.8 / 3)
    assert node(result, "2", "4").visits == 2 and node(result, "1", "3").visits == 1
    assert [n.chosen for n in (two, node(result, "2", "4"), one)] == [True, True, False]


def test_without_exploration_a_finished_answer_is_visited_again_and_nothing_is_sampled():
    # c_puct 0 follows the best Q: sim 2 expands "2", sim 3 2|4 (to \boxed{6}), and sim 4 selects
    # that finished answer: its value is backed up again, no request is made
    result, gen, _ = solve(n=4, c_puct=0.0)
    assert [r.prefix for r in gen.requests] == ["", "2\n\n", "2\n\n4\n\n"]
    answer = node(result, "2", "4", "\\boxed{6}")
    assert answer.visits == 2 and answer.value == pytest.approx(0.6) and result.answer == "6"


def test_rollout_values_are_the_scores_of_answers_run_to_the_end():
    # sim 1: "1" and "2", each rolled out: 1|3|\boxed{4} .4, 2|3|\boxed{5} .5 (their values)
    # sim 2: "2" .5 + .354 beats "1" .4 + .354 -> expand "2": 2|3 and 2|4, rolled out to
    #        2|3|\boxed{5} .5 and 2|4|\boxed{6} .6; the best rollout is the answer
    result, gen, scorer = solve(n=2, value="rollout")
    assert [(r.prefix, r.n, bool(r.stop)) for r in gen.requests] == [
        ("", 2, True),
        ("1\n\n", 1, False),
        ("2\n\n", 1, False),
        ("2\n\n", 2, True),
        ("2\n\n3\n\n", 1, False),
        ("2\n\n4\n\n", 1, False),
    ]
    assert scorer.calls == 4 and result.answer == "6"
    assert node(result, "2").value == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    assert sorted(c.answer for c in result.candidates if c.state == "finished") == ["4", "5", "5", "6"]


def test_no_answer_within_the_simulations_runs_the_most_visited_path_to_the_end():
    # depth 3: after sims 1-2 ("1", "2"; then "2" -> 2|3 .3, 2|4 .4) nothing has finished; the
    # most visited path is "2" (N 3) then, of two visited once, 2|4 (Q .4 over .3): run to the end
    gen, scorer = StepTreeGenerator(depth=3), DigitScorer()
    settings = Settings.load(strategy="mcts", prm=dict(aggregation="last"))
    result = ReasoningSolver(settings, generator=gen, scorer=scorer).solve("q", n=2, expand_width=2)
    assert (gen.requests[-1].prefix, bool(gen.requests[-1].stop)) == ("2\n\n4\n\n", False)
    assert result.best.trajectory.step_texts == ["2", "4", "5", "\\boxed{11}"] and result.answer == "11"


def test_at_max_steps_an_expansion_writes_whole_answers():
    # max_steps 1: the question's expansion runs to the end (two answers, as best-of-2 samples them)
    result, gen, scorer = solve(n=3, max_steps=1)
    assert [bool(r.stop) for r in gen.requests] == [False] and scorer.calls == 1
    assert sorted(c.answer for c in result.candidates) == ["4", "6"] and result.answer == "6"
    assert math.isclose(result.best.score, 0.6)


def test_a_token_budget_ends_the_search():
    # 6 generated tokens: three expansions of two one-token steps (the question, "2", "1"; the
    # third asked for the 2 tokens left); the fourth affords nothing, so the search ends with no
    # answer finished and no tokens left to run the most visited path to the end
    result, gen, _ = solve(n=8, token_budget=6)
    assert [(r.prefix, r.n) for r in gen.requests] == [("", 2), ("2\n\n", 2), ("1\n\n", 2)]
    assert result.usage.generated_tokens == 6 and result.details["simulations"] == 3
    assert result.answer is None and all(c.state == "open" for c in result.candidates)


def test_the_page_of_a_tree_search_shows_each_nodes_visits_and_value():
    from rfprm_tts.offline.view import render_html

    result, _, _ = solve(n=4, c_puct=1.0)
    page = render_html(result)
    assert '<span class="badge">N 4, Q 0.375</span>' in page  # "2": (.2 + .3 + .4 + .6) / 4
    assert '<span class="badge">N 3, Q 0.267</span>' in page and "N, Q: the tree search" in page
