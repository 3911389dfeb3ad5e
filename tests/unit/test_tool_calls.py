"""The vote over samples that call tools (rfprm_tts.search.tool_calls) and agent history in
prompts (rfprm_tts.chat), worked by hand."""

import pytest

from rfprm_tts.chat import to_messages
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import ToolSpec
from rfprm_tts.search.tool_calls import canonical, vote_tool_calls
from rfprm_tts.trajectory import Candidate, Trajectory

TOOLS = [{"type": "function", "function": {"name": name}} for name in ("a", "b")]


def sample(*calls: tuple[str, str], text: str = "", score: float | None = None) -> Candidate:
    tool_calls = [
        {"id": f"id{i}", "type": "function", "function": {"name": name, "arguments": args}}
        for i, (name, args) in enumerate(calls)
    ]
    return Candidate(
        trajectory=Trajectory(question="q", text=text),
        tool_calls=tool_calls or None,
        score=score,
    )


def test_arguments_compare_as_canonical_json():
    assert canonical('{"y": 1, "x": [1, 2]}') == canonical('{"x":[1,2],"y":1}') == '{"x":[1,2],"y":1}'
    assert canonical("[1]") is None and canonical("{x") is None


def test_names_first_then_arguments_then_the_prm_score():
    # Names first: a x3 against b x2, though b's one call (x2) is the most repeated call; within
    # a: {"v": 1} x1, {"v": 2} x2 -> {"v": 2}; of those two samples the higher score wins.
    samples = [
        sample(("a", '{"v": 1}')),
        sample(("a", '{"v": 2}'), score=0.2),
        sample(("b", '{"v": 1}')),
        sample(("a", '{"v":2}'), score=0.7),
        sample(("b", '{"v": 1}')),
    ]
    vote = vote_tool_calls(samples, ToolSpec(TOOLS))
    assert vote.best is samples[3] and vote.answer == 'a({"v":2})'
    assert vote.details == {"calling": 5, "text": 0, "same_tools": 3, "same_call": 2}


def test_the_other_vote_modes_stop_at_names_or_vote_on_whole_calls():
    """tool_name: the most called tools win, the best-scored of their calls whatever its
    arguments. tool_args: whole calls at once: b's call and a's {"v": 2} are called twice each,
    and b's two score more (1.2 against 0.9); hierarchical takes a first (4 calls against 2)."""
    samples = [
        sample(("a", '{"v": 1}'), score=0.9),
        sample(("a", '{"v": 2}'), score=0.2),
        sample(("b", '{"v": 1}'), score=0.6),
        sample(("a", '{"v":2}'), score=0.7),
        sample(("b", '{"v": 1}'), score=0.6),
        sample(("a", '{"v": 3}'), score=0.1),
    ]
    assert vote_tool_calls(samples, ToolSpec(TOOLS, vote="tool_name")).best is samples[0]
    assert vote_tool_calls(samples, ToolSpec(TOOLS, vote="tool_args")).best is samples[2]
    assert vote_tool_calls(samples, ToolSpec(TOOLS)).best is samples[3]


def test_arguments_the_tools_schema_does_not_allow_fail():
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [{"type": "function", "function": {"name": "w", "parameters": city}}]
    good, wrong_type, missing = sample(("w", '{"city": "Paris"}')), sample(("w", '{"city": 5}')), sample(("w", "{}"))
    vote = vote_tool_calls([wrong_type, missing, good], ToolSpec(tools))
    assert vote.best is good and good.ok
    assert "does not match the schema: 5 is not of type 'string'" in wrong_type.error
    assert "'city' is a required property" in missing.error


def test_a_tie_goes_to_the_larger_summed_score():
    samples = [sample(("a", "{}"), score=0.1), sample(("b", "{}"), score=0.9)]
    assert vote_tool_calls(samples, ToolSpec(TOOLS)).best is samples[1]


def test_calls_the_client_cannot_run_fail_and_tool_choice_is_held():
    unknown, bad_json, text = sample(("c", "{}")), sample(("a", "[1]")), sample(text="It is 8 C.")
    vote = vote_tool_calls([unknown, bad_json, text], ToolSpec(TOOLS))
    assert not unknown.ok and not bad_json.ok and text.ok and vote.best is None  # text wins: 1 against 0
    required = [sample(("a", "{}")), sample(text="x"), sample(text="y")]
    assert vote_tool_calls(required, ToolSpec(TOOLS, "required")).best is required[0]
    assert [c.ok for c in required] == [True, False, False]
    named = [sample(("b", "{}")), sample(("a", "{}"))]
    assert vote_tool_calls(named, ToolSpec(TOOLS, {"type": "function", "function": {"name": "a"}})).best is named[1]
    none = [sample(("a", "{}")), sample(text="x")]
    assert vote_tool_calls(none, ToolSpec(TOOLS, "none")).best is None and not none[0].ok


def test_agent_history_is_checked_and_kept():
    call = {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}
    turn = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    messages = to_messages(turn)
    assert messages == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert to_messages(messages) == messages  # its own output is a valid prompt
    with pytest.raises(ConfigError, match="without a tool_call_id"):
        to_messages([{"role": "user", "content": "q"}, {"role": "tool", "content": "42"}])
    with pytest.raises(ConfigError, match="tool call 0 is not"):
        to_messages([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"id": 1}]}, turn[2]])
    with pytest.raises(ConfigError, match="last message must be the user's question"):
        to_messages([turn[1], turn[2]])  # a tool result with no question before it


def test_when_the_text_answers_win_a_failed_call_is_never_the_pick():
    # The strategy ranked a call to a tool nobody offered first; the vote fails it, text wins
    # (2 against 0), and the pick is the best-ranked text answer.
    from rfprm_tts.solver import choose_shaped
    from rfprm_tts.strategies.base import SearchOutcome

    ranked = [sample(("c", "{}")), sample(text="It is 8 C."), sample(text="8 C")]
    outcome = choose_shaped(SearchOutcome(None, ranked, ranked[0]), ToolSpec(TOOLS), None)
    assert outcome.best is ranked[1] and not ranked[0].ok
    required = [sample(text="x"), sample(text="y")]
    outcome = choose_shaped(SearchOutcome(None, required, required[0]), ToolSpec(TOOLS, "required"), None)
    assert outcome.best is None and outcome.answer is None  # tool_choice asked for a call; none came
