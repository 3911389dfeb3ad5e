"""Properties of `solve()` over arbitrary text: every string a user can pass either solves or
is refused with one RfprmError line; nothing else escapes (issue 27). Runs the real demo
generator and PRM, with tiny answers so each example is quick."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rfprm_tts import ReasoningSolver, RfprmError, Settings

# Every code point, lone surrogates (raw JSON can carry them), controls and RTL marks included.
# (st.text leaves surrogates out whatever its alphabet says, so the strings are built by hand.)
ANY_TEXT = st.lists(st.characters(codec=None) | st.integers(0xD800, 0xDFFF).map(chr), max_size=200).map("".join)


@pytest.fixture(scope="module")
def solver():
    with ReasoningSolver(Settings(n=1, generator={"max_tokens": 4, "seed": 0})) as s:
        yield s


def outcome(solver: ReasoningSolver, question, **overrides) -> str:
    try:
        result = solver.solve(question, **overrides)
    except RfprmError as exc:
        assert "\n" not in str(exc), str(exc)
        event(f"refused: {str(exc)[:40]}")
        return "refused"
    assert result.usage.generator_calls >= 1
    event("solved")
    return "solved"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=ANY_TEXT, system=st.none() | ANY_TEXT)
@example(question="x" * 1_000_000, system=None)  # a megabyte: refused, not hours of attention
@example(question="\ud800", system=None)
@example(question="12 + 3", system="\u202e\x00\x07")
def test_any_question_and_system_prompt_solve_or_are_refused(solver, question, system):
    outcome(solver, question, generator__system_prompt=system)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "user", "assistant", "system", "x"]), "content": ANY_TEXT}
        ),
        max_size=4,
    )
)
def test_any_conversation_solves_or_is_refused(solver, messages):
    outcome(solver, messages)


def test_the_refusals_name_the_problem(solver):
    with pytest.raises(RfprmError, match="lone surrogate"):
        solver.solve("what is \ud800?")
    with pytest.raises(RfprmError, match="1,000,048 tokens but the generator's context is 1,024"):
        solver.solve("x" * 1_000_000)
