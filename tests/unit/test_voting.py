import asyncio
import threading
import time

import pytest

from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.grading import equivalence as grading
from rfprm_tts.grading.equivalence import equivalent, normalize, vote


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("18", "18.0", True),
        ("1,234", "1234", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{1}{2}", "\\frac12", True),
        ("$x^2+1$", "1+x^2", True),
        ("(0,1]", "(0, 1]", True),
        ("[1,2]", "(1,2)", False),
        ("3", "4", False),
        (None, "4", False),
    ],
)
def test_equivalence(a, b, same):
    assert equivalent(a, b) is same


def test_normalize():
    assert normalize(" $\\text{ 12 }.$ ") == "12"
    assert normalize("\\left( 1, 2 \\right)") == "(1,2)"


def test_vote_groups_equivalent_spellings():
    assert vote(["0.5", "\\frac{1}{2}", "3", "3", None])[:2] in [("0.5", [0, 1]), ("3", [2, 3])]
    assert vote(["3", "0.5", "\\frac{1}{2}"])[:2] == ("0.5", [1, 2])
    assert vote(["3", "4", "4"], weights=[5.0, 1.0, 1.0])[:2] == ("3", [0])
    assert vote([None, None])[:2] == (None, [])


# Three samples answer 6 (low PRM scores), one answers 9 (high score).
TEXTS = ["a 1\n\n\\boxed{6}", "a 1\n\n\\boxed{6.0}", "a 2\n\n\\boxed{6}", "a 9\n\n\\boxed{9}"]


def solve(strategy: str, aggregation: str = "min"):
    settings = Settings.load(n=4, strategy=strategy, prm=dict(aggregation=aggregation))
    scorer = DigitScorer()
    result = ReasoningSolver(settings, generator=ListGenerator(TEXTS), scorer=scorer).solve("q")
    return result, scorer


def test_majority_vote_needs_no_prm():
    result, scorer = solve("majority_vote")
    assert result.answer == "6" and result.details["votes"] == 3
    assert scorer.calls == 0 and result.usage.prm_calls == 0 and result.usage.prm_tokens == 0
    assert {c.answer for c in result.candidates[:3]} == {"6", "6.0"}


def test_weighted_vote_sums_the_chosen_aggregation():
    # min: 6-group = .1 + .1 + .2 = .4 < 9-group .9 -> 9
    result, _ = solve("weighted_best_of_n", "min")
    assert result.answer == "9"
    assert result.details["weight"] == pytest.approx(0.9)
    # last: the boxed step's first digit: 6-group = .6 * 3 = 1.8 > .9 -> 6
    result, _ = solve("weighted_best_of_n", "last")
    assert result.answer == "6" and result.details["weight"] == pytest.approx(1.8)
    # best_of_n with min takes the single highest sample: 9
    assert solve("best_of_n", "min")[0].answer == "9"


def test_a_new_grading_worker_starts_before_the_time_limit_counts(monkeypatch):
    """A comparison's time limit is for the comparison: the spawned worker's start (seconds on
    a busy machine) must not turn a quick "equal" into a timeout."""
    monkeypatch.setattr(grading, "_pool", grading._Pool(1))  # no worker started yet
    assert equivalent("1+2", "3", timeout_s=0.05)


# answers only math-verify can compare, each taking it past any time limit (a prompt can ask for them)
TOWERS = [f"\\boxed{{9^{{9^{{9^{{{k}}}}}}}}}" for k in range(1, 7)]


def test_a_vote_over_answers_math_verify_cannot_compare_is_bounded_in_time():
    """Unbounded, these 6 answers cost 15 comparisons of 5 s each; the vote's budget bounds
    them, and the pairs it left undecided are counted."""
    started = time.perf_counter()
    result = vote(TOWERS, budget_s=1.0)
    assert time.perf_counter() - started < 8  # the budget, and a worker's start (seconds on a busy machine)
    assert result.unchecked == 15 and result.answer == TOWERS[0] and result.members == [0]


def test_slow_comparisons_do_not_hold_up_other_callers(monkeypatch):
    """Workers are pooled: a quick comparison is answered while another caller's is stuck."""
    monkeypatch.setattr(grading, "_pool", grading._Pool(2))
    done: list[str] = []
    slow = threading.Thread(target=lambda: done.append(f"slow {grading.compare(TOWERS[0], TOWERS[1], 20)}"))
    slow.start()
    time.sleep(0.5)
    assert grading.compare("x+1", "1+x") is True
    done.append("quick")
    slow.join()
    assert done[0] == "quick" and done[1].startswith("slow")


def test_a_comparison_that_cannot_be_checked_is_reported(caplog):
    before = grading.unchecked_comparisons()
    assert grading.compare("\\frac{x^2-1}{x-1}", "x+1", timeout_s=1e-6) is None  # no verdict that fast
    assert grading.unchecked_comparisons() == before + 1
    assert "could not compare" in caplog.text and "counted as not equal" in caplog.text
    assert vote(["x^2", "x*x"], timeout_s=1e-6).unchecked == 1
    assert grading.compare("\\frac{x^2-1}{x-1}", "x+1") is not None  # a new worker answers again


@pytest.mark.parametrize(
    "answers, quick",
    [
        (["11", "11.0", "12", None], True),  # plain numbers: compared as numbers
        (["x+1", "x + 1", "$x+1$"], True),  # one spelling
        ([None, "\\sqrt{2}"], True),  # nothing to compare it with
        (["\\frac{1}{2}", "0.5"], True),  # fractions are numbers too
        (["\\sqrt{2}", "2^{1/2}"], False),  # math-verify decides
        (["x+1", "1+x"], False),
        ([str(k) for k in range(17)], False),  # numbers, but 17 x 17 comparisons
    ],
)
def test_a_vote_is_quick_for_few_spellings_that_need_no_math_verify(answers, quick):
    assert grading.quick_to_group(answers) is quick


def test_a_vote_runs_on_the_event_loop_unless_math_verify_may_be_asked():
    """The thread hop costs more CPU than a vote over plain numbers; math-verify takes seconds."""
    from rfprm_tts.strategies.base import grouping

    async def thread_of(answers):
        return await grouping(answers, lambda: threading.get_ident())

    async def both():
        return threading.get_ident(), await thread_of(["11", "12"]), await thread_of(["x+1", "1+x"])

    loop, numbers, algebra = asyncio.run(both())
    assert numbers == loop and algebra != loop
