from rfprm_tts.text import extract_answer, last_boxed, split_steps, split_thinking
from rfprm_tts.trajectory import Trajectory


def test_split_steps_drops_empty_steps_and_uses_the_given_separator():
    assert split_steps("a\n\n\n\nb\n\n  \n\nc") == ["a", "b", "c"]
    assert split_steps("a\nb\n\nc", separator="\n") == ["a", "b", "c"]
    assert split_steps("   ") == []


def test_split_thinking_variants():
    assert split_thinking("<think>\nx\n\ny\n</think>\n\nThe answer is 3.") == ("x\n\ny", "The answer is 3.")
    # Reasoning models often emit only the closing tag (the opening one is in the template).
    assert split_thinking("x\n</think>final") == ("x", "final")
    # Cut off mid-thought: all thinking, no answer.
    assert split_thinking("<think>still going") == ("still going", "")
    assert split_thinking("plain answer") == (None, "plain answer")


def test_boxed_with_nested_braces_takes_the_last_one():
    assert last_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{unbalanced") is None
    assert extract_answer(r"so \fbox{42}.") == "42"


def test_extract_answer_fallbacks():
    assert extract_answer("The answer is 18.") == "18"
    assert extract_answer("work\n#### 1,234") == "1,234"
    assert extract_answer("Final Answer: $x=2$") == "x=2"
    assert extract_answer("no answer here") is None
    # The answer after </think> wins over a boxed value inside the thinking.
    assert extract_answer(r"<think>maybe \boxed{1}</think>So \boxed{2}") == "2"


def test_trajectory_with_thinking_ends_with_the_final_answer_as_one_step():
    t = Trajectory.from_response("q", "<think>s1\n\ns2</think>\n\nThe answer is \\boxed{5}.\n\nDone.")
    assert [s.part for s in t.steps] == ["thinking", "thinking", "answer"]
    assert t.steps[-1].text == "The answer is \\boxed{5}.\n\nDone."
    assert t.answer == "5"
    plain = Trajectory.from_response("q", "a\n\nb")
    assert [s.part for s in plain.steps] == ["response", "response"]
