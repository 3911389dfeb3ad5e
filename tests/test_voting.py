import pytest

from fakes import DigitScorer, ListGenerator
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts import grading
from rfprm_tts.grading import equivalent, normalize, vote


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
    assert result.answer == "6" and result.strategy_params["votes"] == 3
    assert scorer.calls == 0 and result.usage.prm_calls == 0 and result.usage.prm_tokens == 0
    assert {c.answer for c in result.candidates[:3]} == {"6", "6.0"}


def test_weighted_vote_sums_the_chosen_aggregation():
    # min: 6-group = .1 + .1 + .2 = .4 < 9-group .9 -> 9
    result, _ = solve("weighted_best_of_n", "min")
    assert result.answer == "9"
    assert result.strategy_params["weight"] == pytest.approx(0.9)
    # last: the boxed step's first digit: 6-group = .6 * 3 = 1.8 > .9 -> 6
    result, _ = solve("weighted_best_of_n", "last")
    assert result.answer == "6" and result.strategy_params["weight"] == pytest.approx(1.8)
    # best_of_n with min takes the single highest sample: 9
    assert solve("best_of_n", "min")[0].answer == "9"


def test_a_new_grading_worker_starts_before_the_time_limit_counts():
    """A comparison's time limit is for the comparison: the spawned worker's start (seconds on
    a busy machine) must not turn a quick "equal" into a timeout."""
    grading._worker._stop()
    assert grading._worker._process is None
    assert equivalent("1+2", "3", timeout_s=0.05)
