"""SearchTree (search/tree.py): every candidate of a solve with its parent, as
`SolveResult.tree` and `rfprm view` show it."""

from rfprm_tts.search.tree import SearchTree
from rfprm_tts.trajectory import Candidate, Trajectory


def candidate(text: str, finish_reason: str = "partial", **fields) -> Candidate:
    return Candidate(trajectory=Trajectory.from_response("q", text), finish_reason=finish_reason, **fields)


def test_nodes_hold_what_each_candidate_added_and_mark_the_chosen_path():
    tree = SearchTree()
    a, b = tree.add(candidate("1\n\n"), None), tree.add(candidate("2\n\n"), None)
    a1 = tree.add(candidate("1\n\n3\n\n"), a)
    done = tree.add(candidate("1\n\n3\n\n\\boxed{4}", "stop", generated_tokens=3), a1)
    lost = tree.add(candidate("2\n\n\\boxed{2}", "stop"), b)
    nodes = tree.nodes(done)
    assert [(n.id, n.parent, n.text) for n in nodes] == [
        (0, None, "1\n\n"),
        (1, None, "2\n\n"),
        (2, 0, "3\n\n"),
        (3, 2, "\\boxed{4}"),
        (4, 1, "\\boxed{2}"),
    ]
    assert [n.chosen for n in nodes] == [True, False, True, True, False]  # the answer and its ancestors
    assert [n.state for n in nodes] == ["open"] * 3 + ["finished"] * 2
    assert [n.answer for n in nodes] == [None, None, None, "4", "2"]  # a partial answer has none yet
    assert nodes[3].generated_tokens == 3
    assert not any(n.chosen for n in tree.nodes(None)) and tree.nodes(lost)[4].chosen


def test_nodes_show_candidates_as_they_stand_now():
    """Scores come after a candidate is added (and a failure after that): the nodes read them
    when asked. A step score is the last step's."""
    tree = SearchTree()
    scored = tree.add(candidate("5\n\n7\n\n"), None)
    failed = tree.add(candidate("5\n\n7\n\n\\boxed{8}", "stop"), scored)
    before = tree.nodes(None)
    assert before[0].score is None and before[1].answer == "8"
    scored.step_scores, scored.score = [0.5, 0.7], 0.35
    failed.error = "the PRM could not score it: too long"
    nodes = tree.nodes(None)
    assert (nodes[0].score, nodes[0].step_score) == (0.35, 0.7)
    assert (nodes[1].state, nodes[1].error, nodes[1].step_score) == ("failed", failed.error, None)
    assert nodes[1].answer is None and nodes[1].text == "\\boxed{8}"  # a failed answer shows none


def test_a_child_of_an_unrecorded_parent_or_with_other_text_is_shown_whole():
    tree = SearchTree()
    tree.add(candidate("1\n\n2\n\n"), candidate("1\n\n"))  # a parent the tree never saw: a root
    root = tree.add(candidate("4\n\n"), None)
    tree.add(candidate("9\n\n"), root)  # does not continue its parent's text
    nodes = tree.nodes(None)
    assert [(n.parent, n.text) for n in nodes] == [(None, "1\n\n2\n\n"), (None, "4\n\n"), (1, "9\n\n")]
