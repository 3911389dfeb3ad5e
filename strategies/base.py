"""The strategy protocol and the registry of strategies by name.

A strategy is a class with a `name`, a pydantic `Params` model (its knobs, validated, unknown
keys rejected) and `async search(question, ctx) -> SearchOutcome`. Register one with
`@register`, or from another package through the entry-point group `rfprm_tts.strategies`:

    [project.entry-points."rfprm_tts.strategies"]
    my_search = "my_package.module:MySearch"
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion
from rfprm_tts.grading.equivalence import quick_to_group
from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.thinking import ThinkingControl, sample_thinking
from rfprm_tts.settings import Settings, SideRole
from rfprm_tts.trajectory import Candidate

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "rfprm_tts.strategies"


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best first: scored candidates by score, then unscored, then failed ones."""

    def key(c: Candidate) -> tuple[int, float]:
        if not c.ok:
            return (2, 0.0)
        return (0, -c.score) if c.score is not None else (1, 0.0)

    return sorted(candidates, key=key)


class StrategyParams(BaseModel):
    """Parameters every strategy takes. Subclass to add a strategy's own."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(8, ge=1, description="Sample budget N.")
    token_budget: int | None = Field(
        None,
        ge=1,
        description="Stop once this many tokens are spent and return the best answer so far (the context "
        "sizes every request to what is left); None: N alone bounds the search.",
    )
    budget_counts: Literal["generated", "total"] = Field(
        "generated", description="What token_budget counts: generated tokens, or generated + PRM tokens."
    )


class DraftedParams(StrategyParams):
    """The parameters of the step searches that can draft their steps (rfprm_tts.search.speculation)."""

    draft_threshold: float | None = Field(
        None,
        ge=0.0,
        description="Drafted steps: the draft model (settings.draft) writes each round's steps first and the "
        "generator rewrites those the PRM scores under this; None: the generator writes every step.",
    )


class SamplingParams(ThinkingControl, StrategyParams):
    """The parameters of strategies that sample whole answers: StrategyParams' and the thinking
    controls (early exit, budget forcing, short-m@k: rfprm_tts.search.thinking)."""


@dataclass
class SearchOutcome:
    """What a strategy decided: the answer and every candidate, best first."""

    answer: str | None
    candidates: list[Candidate]
    best: Candidate | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    """A strategy as a solve runs it: its `name`, its validated `params` (an instance of its
    class's `Params`) and `search`.

    `uses_prm` (optional, default True): False for a strategy that never scores, so a
    solve does not load the PRM for it and `ctx.scorer` is None. `uses_draft` (optional,
    default False): True for a speculative strategy, which asks the draft model for steps;
    `uses_selector` (optional, default False): True for one that asks a selector model."""

    name: ClassVar[str]

    @property
    def params(self) -> StrategyParams: ...

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome: ...


@runtime_checkable
class UsesPRM(Protocol):
    """A strategy that says whether it scores: `uses_prm`, the optional part of the protocol
    (a strategy without it uses the PRM). Only that member: the runtime check reads no other."""

    @property
    def uses_prm(self) -> bool: ...


def uses_prm(strategy: Strategy) -> bool:
    """Whether a solve with `strategy` needs the PRM (a strategy that does not say: it does)."""
    return strategy.uses_prm if isinstance(strategy, UsesPRM) else True


@runtime_checkable
class UsesDraft(Protocol):
    """A strategy that says whether it asks the draft model (settings.draft) for steps:
    `uses_draft`, optional like `uses_prm` (a strategy without it does not)."""

    @property
    def uses_draft(self) -> bool: ...


def uses_draft(strategy: Strategy) -> bool:
    """Whether a solve with `strategy` needs the draft model (ctx.side["draft"])."""
    return strategy.uses_draft if isinstance(strategy, UsesDraft) else False


@runtime_checkable
class UsesSelector(Protocol):
    """A strategy that asks a selector model (settings.selector) when one is set: `uses_selector`,
    optional like `uses_prm` (a strategy without it does not)."""

    @property
    def uses_selector(self) -> bool: ...


def side_models(strategy: Strategy) -> list[SideRole]:
    """The side models a solve with `strategy` asks for: the draft (it must have one), the selector
    (where one is set; else the generator selects)."""
    roles: list[SideRole] = ["draft"] if uses_draft(strategy) else []
    if isinstance(strategy, UsesSelector) and strategy.uses_selector:
        roles.append("selector")
    return roles


class StrategyClass(Protocol):
    """A strategy class, as the registry holds it: its `name`, its `Params` model, and
    built from an instance of that model."""

    @property
    def name(self) -> str: ...

    @property
    def Params(self) -> type[StrategyParams]: ...

    def __call__(self, params: StrategyParams) -> Strategy: ...


S = TypeVar("S", bound=StrategyClass)
R = TypeVar("R")


class BaseStrategy:
    """Convenience base: holds the validated parameters. A strategy with parameters of its
    own declares their type too (`params: MyParams` beside `Params = MyParams`)."""

    name: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    uses_prm: bool = True

    @property
    def uses_draft(self) -> bool:
        """A step search that drafts its steps asks the draft model (settings.draft)."""
        return isinstance(self.params, DraftedParams) and self.params.draft_threshold is not None

    def __init__(self, params: StrategyParams):
        # built from the common parameters (BestOfN(StrategyParams(n=2))): its own at their defaults
        self.params = (
            params if isinstance(params, self.Params) else self.Params(**params.model_dump(exclude_unset=True))
        )


class SampleThenChoose(BaseStrategy):
    """A strategy that samples N complete answers, then picks one. Its pick among the first N
    samples of a larger pool is what a run at budget N returns, so the benchmark harness
    draws a whole curve from one pool of samples. Under a token budget the samples come in
    as many requests as the budget affords, each scored as it comes. The pick (`choose`: keep it
    free of blocking work) runs on a worker thread when its vote may ask math-verify, seconds a
    comparison, which must not stall the event loop; else on the loop (`grouping`).

    `scores_answers`: the pick reads PRM scores (majority_vote's does not). The PRM is loaded
    for that, or for early_exit 'prm'."""

    Params = SamplingParams
    params: SamplingParams
    scores_answers: ClassVar[bool] = True

    def __init__(self, params: StrategyParams):
        super().__init__(params)
        self.uses_prm = self.scores_answers or self.params.early_exit == "prm"

    async def search(self, question: str, ctx: SearchContext) -> SearchOutcome:
        exits: Counter[str] = Counter()
        candidates = await sample_candidates(ctx, self.params, self.scores_answers, exits)
        outcome = await grouping([c.answer for c in candidates], self.choose, candidates)
        if exits:
            outcome.details["thinking"] = dict(exits)
        return outcome

    def choose(self, candidates: list[Candidate]) -> SearchOutcome:
        raise NotImplementedError


async def grouping(answers: Sequence[str | None], work: Callable[..., R], *args: Any) -> R:
    """`work(*args)`, which groups `answers` by equivalence: on the event loop when that is quick
    (the thread hop costs more CPU than such a vote: 0.4 ms against 0.06 ms per solve over
    eight plain numbers, measured), else on a worker thread (math-verify takes seconds)."""
    if quick_to_group(answers):
        return work(*args)
    return await asyncio.to_thread(work, *args)


async def sample_candidates(
    ctx: SearchContext, params: SamplingParams, score: bool, exits: Counter[str]
) -> list[Candidate]:
    """N complete answers as candidates, PRM-scored when `score`: one request, or as many as a
    token budget affords (each scored as it comes)."""
    candidates: list[Candidate] = []
    while len(candidates) < params.n and (
        completions := await sample_answers(ctx, params.n - len(candidates), params, exits)
    ):
        candidates += await ctx.evaluate(completions) if score else [ctx.candidate(c) for c in completions]
    return candidates


async def sample_answers(ctx: SearchContext, n: int, params: SamplingParams, exits: Counter[str]) -> list[Completion]:
    """n whole answers: one request, or, with any thinking control set, grown together under it
    (`exits` counts how each one's thinking ended)."""
    if params.controls_thinking:
        return await sample_thinking(ctx, n, params, exits)
    return await ctx.sample(n)


def best_outcome(candidates: list[Candidate], details: dict[str, Any] | None = None) -> SearchOutcome:
    """The highest-scored candidate wins (failed ones never do); all are returned ranked."""
    ranked = rank(candidates)
    best = ranked[0] if ranked and ranked[0].ok else None
    return SearchOutcome(answer=best.answer if best else None, candidates=ranked, best=best, details=details or {})


_REGISTRY: dict[str, StrategyClass] = {}


def register(cls: S) -> S:
    """Class decorator: make a strategy available by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                _REGISTRY[ep.name] = ep.load()
            except Exception as exc:  # a broken plug-in must not break the built-ins
                log.warning("strategy plug-in %r (%s) failed to load: %s", ep.name, ep.value, exc)


def available_strategies() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def strategy_class(name: str) -> StrategyClass:
    """The registered class of strategy `name`."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, available_strategies(), n=1)
        raise ConfigError(
            f"unknown strategy {name!r}; {f'did you mean {close[0]!r}? ' if close else ''}"
            f"available: {', '.join(available_strategies())}"
        )
    return _REGISTRY[name]


def _problem(error: ErrorDetails, known: list[str]) -> str:
    """One validation error as text: a check across fields (no loc) is its own message; a
    misspelt parameter gets the closest name."""
    if not error["loc"]:
        return error["msg"].removeprefix("Value error, ")
    where = ".".join(map(str, error["loc"]))
    close = difflib.get_close_matches(where, known, n=1) if error["type"] == "extra_forbidden" else []
    return f"{where}: {error['msg']}" + (f" (did you mean {close[0]!r}?)" if close else "")


def settings_n(settings: Settings, strategy: str | None = None) -> int:
    """The N a solve with `settings` runs `strategy` (default: settings.strategy) at:
    settings.n where it was set (a file, the environment, a flag, an override), else the
    strategy's own default: 8, but 1 for speculative_steps and specreason (N is the drafts of
    each step there; RSD's default is one)."""
    if "n" in settings.model_fields_set:
        return settings.n
    default = strategy_class(strategy or settings.strategy).Params.model_fields["n"].default
    return default if isinstance(default, int) else settings.n


def build_strategy(name: str, defaults: Mapping[str, Any] | None = None, **params: Any) -> Strategy:
    """The strategy `name` with validated parameters. `defaults` (configured once for many
    strategies, like a server's or a benchmark's `strategy_params`) apply only where the
    strategy takes them; `params` must all be its own."""
    cls = strategy_class(name)
    params = {**{k: v for k, v in (defaults or {}).items() if k in cls.Params.model_fields}, **params}
    try:
        return cls(cls.Params(**params))
    except ValidationError as exc:
        problems = "; ".join(_problem(e, list(cls.Params.model_fields)) for e in exc.errors())
        known = ", ".join(cls.Params.model_fields)
        raise ConfigError(f"invalid parameters for strategy {name!r}: {problems} (it takes: {known})") from None
