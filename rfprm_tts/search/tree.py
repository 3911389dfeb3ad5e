"""The search tree of one solve: every candidate a search made, with its parent, for
`SolveResult.tree` and the page `rfprm view` draws."""

from __future__ import annotations

from rfprm_tts.trajectory import Candidate, SearchNode


class SearchTree:
    def __init__(self) -> None:
        self._nodes: list[tuple[Candidate, int | None]] = []  # every candidate, with its parent's index
        self._index: dict[int, int] = {}  # id(candidate) -> its index
        self._visits: dict[int, tuple[int, float]] = {}  # index -> (visits, mean value), from a tree search

    def annotate(self, candidate: Candidate, visits: int, value: float) -> None:
        """A tree search's statistics of `candidate`'s node: its visits and mean backed-up value."""
        if id(candidate) in self._index:
            self._visits[self._index[id(candidate)]] = (visits, value)

    def add(self, candidate: Candidate, parent: Candidate | None) -> Candidate:
        """Record `candidate` as a child of `parent` (None: of the question)."""
        self._index[id(candidate)] = len(self._nodes)
        self._nodes.append((candidate, None if parent is None else self._index.get(id(parent))))
        return candidate

    def nodes(self, chosen: Candidate | None) -> list[SearchNode]:
        """Every candidate as it stands now, each with the text it added to its parent;
        `chosen` and its ancestors are marked."""
        on_path: set[int] = set()
        node = self._index.get(id(chosen)) if chosen is not None else None
        while node is not None:
            on_path.add(node)
            node = self._nodes[node][1]
        out = []
        for i, (c, parent) in enumerate(self._nodes):
            visits, value = self._visits.get(i, (None, None))
            above = self._nodes[parent][0].trajectory.text if parent is not None else ""
            text = c.trajectory.text
            out.append(
                SearchNode(
                    id=i,
                    parent=parent,
                    text=text[len(above) :] if text.startswith(above) else text,
                    score=c.score,
                    step_score=c.step_scores[-1] if c.step_scores else None,
                    state=c.state,
                    answer=c.answer if c.state == "finished" else None,
                    generated_tokens=c.generated_tokens,
                    error=c.error,
                    chosen=i in on_path,
                    written_by=c.step_models[-1] if c.step_models else None,
                    visits=visits,
                    value=value,
                )
            )
        return out
