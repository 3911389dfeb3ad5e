"""Monte Carlo tree search with a PRM: PUCT selection (AlphaZero's rule) over partial answers,
the PRM's score as the value (as OpenR's and rStar's searches use a process reward model).

    root = the question
    repeat n simulations:
        select: from the root, follow the child with the highest
                    Q(c) + c_puct * P(c) * sqrt(N(parent)) / (1 + N(c))
                until a node with no children (a leaf)
        a finished leaf: back its value up again (nothing is sampled)
        else expand: sample M next steps of the leaf in one request (at depth max_steps, the
            rest of the answer), drop repeats; each child's prior P = 1 / their count
        evaluate: a child's value is the PRM's score of its path (value "prm"), or of one
            rollout from it to the end (value "rollout"; the rollout is an answer too)
        backup: each child is one visit of its value, on itself and on every ancestor
    answer: the best-scored finished answer; none finished: the most visited path, run to the end

Q(c) is the mean value under c; N(c) its visits. Every child is evaluated as it is made (the PRM
scores all M in one call), so none waits unvisited and a low prior never hides a good step.
The tree, with each node's visits and Q, is in SolveResult.tree (`rfprm view` shows them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from rfprm_tts.search.context import SearchContext
from rfprm_tts.strategies.base import BaseStrategy, SearchOutcome, StrategyParams, best_outcome, register
from rfprm_tts.strategies.beam_search import unique
from rfprm_tts.trajectory import Candidate


class MCTSParams(StrategyParams):
    n: int = Field(8, ge=1, description="Simulations: each selects a leaf and expands it into M next steps.")
    expand_width: int = Field(4, ge=1, description="M: next steps sampled when a leaf is expanded.")
    max_steps: int = Field(40, ge=1, description="Depth at which an expansion generates the rest of the answer.")
    c_puct: float = Field(1.0, ge=0.0, description="Exploration weight of PUCT (0: always the best Q).")
    value: Literal["prm", "rollout"] = Field(
        "prm",
        description="A new node's value: the PRM's score of its path, or of one rollout from it to the end "
        "(a sample per node more; each rollout is a candidate answer).",
    )


@dataclass(eq=False)
class Node:
    """A partial (or finished) answer in the tree; the root is the empty answer."""

    candidate: Candidate
    parent: Node | None = None
    prior: float = 1.0
    depth: int = 0
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0

    @property
    def text(self) -> str:
        return self.candidate.trajectory.text

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    @property
    def finished(self) -> bool:
        return self.candidate.state != "open"


def value(c: Candidate) -> float:
    """What a candidate is worth to the search: its PRM score (0 unscored)."""
    return c.score if c.score is not None else 0.0


def puct(child: Node, parent_visits: int, c_puct: float) -> float:
    return child.q + c_puct * child.prior * math.sqrt(parent_visits) / (1 + child.visits)


def select(root: Node, c_puct: float) -> Node:
    """The leaf PUCT leads to (the first of equals)."""
    node = root
    while node.children:
        parent = node
        node = max(parent.children, key=lambda c: puct(c, parent.visits, c_puct))
    return node


def backup(node: Node | None, v: float) -> None:
    """One visit of value v on `node` and every ancestor."""
    while node is not None:
        node.visits += 1
        node.value_sum += v
        node = node.parent


def most_visited_leaf(root: Node) -> Node:
    """The leaf reached by following the most visited child (the better Q of equals)."""
    node = root
    while node.children:
        node = max(node.children, key=lambda c: (c.visits, c.q))
    return node


def nodes_of(root: Node) -> list[Node]:
    """Every node under the root, parents first."""
    out, todo = [], list(root.children)
    while todo:
        node = todo.pop(0)
        out.append(node)
        todo += node.children
    return out


@register
class MCTS(BaseStrategy):
    name = "mcts"
    Params = MCTSParams
    params: MCTSParams

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        p = self.params
        root = Node(Candidate(trajectory=ctx.trajectory(""), finish_reason="partial", generated_tokens=0))
        rollouts: list[Candidate] = []
        failed: list[Candidate] = []
        for simulations in range(1, p.n + 1):
            leaf = select(root, p.c_puct)
            if leaf.finished:
                backup(leaf, leaf.q)
                continue
            last = leaf.depth + 1 >= p.max_steps
            children = await ctx.score_candidates(unique(await ctx.extend([leaf.text], p.expand_width, not last)))
            if not children:  # the token budget is spent: this simulation did not run
                simulations -= 1
                break
            failed += [c for c in children if not c.ok]
            ok = [c for c in children if c.ok]
            if not ok and leaf.parent is not None:  # a dead end: the search forgets it
                leaf.parent.children.remove(leaf)
                continue
            leaf.children = [Node(c, leaf, 1 / len(ok), leaf.depth + 1) for c in ok]
            for node, v in zip(leaf.children, await self.evaluate(ctx, leaf.children, rollouts)):
                backup(node, v)
        nodes = nodes_of(root)
        for node in nodes:
            ctx.search_tree.annotate(node.candidate, node.visits, node.q)
        finished = [n.candidate for n in nodes if n.finished] + rollouts
        if not finished:
            finished = await self.finish(ctx, root)
        # the answer is a finished one; partial answers only stand in when none finished
        candidates = (finished or [n.candidate for n in nodes]) + failed
        depth = max((n.depth for n in nodes), default=0)
        return best_outcome(candidates, {"simulations": simulations, "nodes": len(nodes), "max_depth": depth})

    async def evaluate(self, ctx: SearchContext, children: list[Node], rollouts: list[Candidate]) -> list[float]:
        """Each new child's value: its PRM score, or its rollout's (value "rollout")."""
        values = [value(n.candidate) for n in children]
        if self.params.value == "rollout":
            growing = [i for i, n in enumerate(children) if not n.finished]
            ends = await ctx.extend([children[i].text for i in growing], 1, one_step=False, check=False)
            for i, end in zip(growing, await ctx.score_candidates(ends)):  # a token budget may end them early
                if end.ok:
                    values[i] = value(end)
                    rollouts.append(end)
        return values

    async def finish(self, ctx: SearchContext, root: Node) -> list[Candidate]:
        """No answer finished within the simulations: the most visited path, run to the end
        (none: nothing was expanded)."""
        leaf = most_visited_leaf(root)
        if leaf is root:
            return []
        return [c for c in await ctx.score_candidates(await ctx.extend([leaf.text], 1, one_step=False)) if c.ok]
