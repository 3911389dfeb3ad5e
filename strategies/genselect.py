"""Generative selection (GenSelect: NeMo-Skills, the AIMO-2 winning recipe): a model reads several
candidate solutions side by side in one prompt and names the best one. Unlike a verifier, which
judges each answer alone, it compares them.

    samples = N complete answers (no PRM)
    contenders = one sample per distinct final answer, the most common answer first
    while more than group_size contenders:               (a tournament)
        split them into groups of group_size; the selector picks one of each group
    the selector picks among the last ones
    a pick it cannot read ("Best: i" with i a solution shown), or a token budget that affords
        no selector call: the group's most common answer
    answer: the last pick's

The selector is the selector model where one is set (settings.selector: any chat model, e.g.
one served over the OpenAI API; it samples as its own section says, counted in usage.selector_*),
else the generator itself (asked with a prompt of its own, counted as the generator's calls and
tokens). result.details counts the selector's calls apart either way. A single distinct answer
needs no selector.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass

from pydantic import Field

from rfprm_tts.chat import to_messages
from rfprm_tts.generators.base import Completion, GenerationRequest
from rfprm_tts.grading.equivalence import Vote, answer_groups
from rfprm_tts.search.context import SearchContext
from rfprm_tts.strategies.base import (
    BaseStrategy,
    SamplingParams,
    SearchOutcome,
    StrategyParams,
    grouping,
    register,
    sample_candidates,
)
from rfprm_tts.strategies.voting import vote_outcome
from rfprm_tts.trajectory import Candidate

log = logging.getLogger(__name__)

SELECT_PROMPT = (
    "{question}\n\nBelow are {count} candidate solutions to this problem, numbered from 0. They reach "
    "different final answers, so at most one of them is right.\n\n{solutions}\n\n"
    "Check the solutions against each other and decide which one is correct. "
    'End your reply with a line of the form "Best: <number>".'
)
PICK = re.compile(r"best\s*:\s*(?:solution\s*)?#?\s*(\d+)", re.IGNORECASE)  # not \boxed{i}: a restated answer


class GenSelectParams(SamplingParams):
    group_size: int = Field(
        4, ge=2, description="Solutions shown to the selector at once; more contenders play a tournament."
    )
    selections: int = Field(
        1,
        ge=1,
        description="Selector samples per group, at the solve's temperature; the pick is their most common "
        "readable pick. 1: one greedy pick.",
    )
    max_chars: int = Field(
        1500,
        ge=100,
        description="Characters of each solution shown (its end, after any thinking: where the answer is).",
    )


@dataclass
class Contender:
    """One distinct final answer: the first sample that gave it, and the samples that did."""

    members: list[int]
    sample: Candidate

    @property
    def count(self) -> int:
        return len(self.members)


def shown(candidate: Candidate, max_chars: int) -> str:
    """What the selector reads of a solution: the text after its thinking, its last `max_chars`."""
    text = candidate.trajectory.text.rsplit("</think>", 1)[-1].strip()
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


def read_pick(reply: Completion, count: int) -> int | None:
    """The solution a selector's reply names last, when it is one of the `count` shown."""
    if reply.error is not None:
        return None
    picks = [int(i) for i in PICK.findall(reply.text)]
    return picks[-1] if picks and picks[-1] < count else None


@dataclass
class Tally:
    """What one search asked of the selector: calls, picks asked (selections per call), picks it
    could not read, replies that failed (an unreachable server, say) and the first failure."""

    calls: int = 0
    picks: int = 0
    unreadable: int = 0
    failed: int = 0
    error: str | None = None

    def details(self) -> dict[str, object]:
        counts = {"selector_calls": self.calls, "selector_picks": self.picks, "unreadable_picks": self.unreadable}
        return counts | ({"selector_failures": self.failed, "selector_error": self.error} if self.failed else {})


@register
class GenSelect(BaseStrategy):
    name = "genselect"
    Params = GenSelectParams
    params: GenSelectParams

    def __init__(self, params: StrategyParams):
        super().__init__(params)
        self.uses_prm = self.params.early_exit == "prm"
        self.uses_selector = True  # settings.selector where one is set; else the generator selects

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        exits: Counter[str] = Counter()
        samples = await sample_candidates(ctx, self.params, False, exits)  # no pick reads a PRM score
        answers = [c.answer if c.ok else None for c in samples]
        groups, unchecked = await grouping(answers, answer_groups, answers)
        contenders = [Contender(g, samples[g[0]]) for g in sorted(groups, key=len, reverse=True)]
        tally, rounds = Tally(), 0
        while len(contenders) > 1:
            rounds += 1
            size = self.params.group_size
            matches = [contenders[i : i + size] for i in range(0, len(contenders), size)]
            ways = sum(len(match) > 1 for match in matches)  # selector calls sent at once: they share a budget
            contenders = list(await asyncio.gather(*(self.pick(ctx, match, tally, ways) for match in matches)))
        winner = contenders[0].members if contenders else []
        if tally.error is not None:  # a selector that cannot answer leaves every pick to the majority: say so
            log.warning("%d of %d selector replies failed, e.g. %s", tally.failed, tally.picks, tally.error)
        details: dict[str, object] = {"rounds": rounds, **tally.details()}
        if exits:
            details["thinking"] = dict(exits)
        return vote_outcome(Vote(answers[winner[0]] if winner else None, winner, unchecked), samples, **details)

    async def pick(self, ctx: SearchContext, match: list[Contender], tally: Tally, ways: int) -> Contender:
        """The selector's choice among `match` (a lone contender goes on without a call)."""
        if len(match) == 1:
            return match[0]
        readable = Counter(p for p in await self.ask(ctx, match, tally, ways) if p is not None)
        if not readable:  # nothing to read, failed, or no call affordable: the group's most common (first of equals)
            return max(match, key=lambda c: c.count)
        return match[readable.most_common(1)[0][0]]

    async def ask(self, ctx: SearchContext, match: list[Contender], tally: Tally, ways: int) -> list[int | None]:
        """The selector's picks among `match`, one per selection (none when a token budget
        affords no call; a budget's tokens left are shared by the `ways` calls of the round)."""
        k = ctx.budget.affordable(self.params.selections)
        if k == 0:
            return []
        solutions = "\n\n".join(
            f"Solution {i}:\n{shown(c.sample, self.params.max_chars)}\nFinal answer: {c.sample.answer}"
            for i, c in enumerate(match)
        )
        prompt = SELECT_PROMPT.format(question=ctx.question, count=len(match), solutions=solutions)
        selector = ctx.side.get("selector")
        own = selector.sampling if selector is not None else ctx.sampling
        cap = {"max_tokens": ctx.budget.cap(own.max_tokens, ways), "logprobs": False}
        sampling = own.model_copy(
            update={"temperature": 0.0, "seed": None, **cap} if k == 1 else {"seed": ctx.next_seeds(k), **cap}
        )
        messages = to_messages(prompt, selector.system_prompt if selector is not None else None)
        request = GenerationRequest(messages, n=k, sampling=sampling)
        result = await ctx.generate(request, by="selector" if selector is not None else "target")
        errors = [reply.error for reply in result.completions if reply.error is not None]
        picks = [read_pick(reply, len(match)) for reply in result.completions]
        tally.calls, tally.picks, tally.failed = tally.calls + 1, tally.picks + len(picks), tally.failed + len(errors)
        tally.unreadable += sum(p is None for p in picks) - len(errors)
        tally.error = tally.error or (errors[0] if errors else None)
        return picks
