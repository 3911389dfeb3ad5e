"""ReasoningSolver: a generator, a PRM and a strategy wired together.

The core is async (`asolve`); `solve` is a sync facade that runs the core on the solver's own
event-loop thread, so it also works where a loop is already running (Jupyter, async apps).
Use one style per solver: its HTTP client belongs to the loop that first used it.

The module-level `solve` and `asolve` share one solver per set of models: changing only
search settings (n, strategy, its parameters, sampling, aggregation) reuses the loaded
models. Their work runs on that solver's own loop thread, so both styles can share it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rfprm_tts.chat import Prompt, to_messages
from rfprm_tts.errors import ConfigError, PRMInputTooLongError
from rfprm_tts.generators import Generator, build_generator
from rfprm_tts.generators.base import JSONFormat, ToolCallingGenerator, ToolSpec
from rfprm_tts.generators.side import SideModels
from rfprm_tts.prm import Scorer, build_scorer
from rfprm_tts.prm.aggregate import resolve_aggregation
from rfprm_tts.prm.protocol import LogprobScorer
from rfprm_tts.search.budget import TokenBudget
from rfprm_tts.search.context import SearchContext
from rfprm_tts.search.json_answers import vote_json
from rfprm_tts.search.progress import Progress
from rfprm_tts.search.tool_calls import vote_tool_calls
from rfprm_tts.settings import Settings, SideRole
from rfprm_tts.strategies import Strategy, build_strategy
from rfprm_tts.strategies.base import SampleThenChoose, SearchOutcome, settings_n, side_models, uses_prm
from rfprm_tts.trajectory import SolveResult

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever on a daemon thread, for the sync facade."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rfprm-loop", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class ReasoningSolver:
    """Solve questions with PRM-guided test-time search.

    Build it from `Settings` (backends are created on first use), or hand it ready
    `generator`, `scorer`, `strategy`, `draft` and `selector` objects (anything that follows the
    protocols; the draft model is the speculative strategies' cheaper generator, the selector
    the model genselect asks to pick an answer).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        generator: Generator | None = None,
        scorer: Scorer | None = None,
        strategy: Strategy | None = None,
        draft: Generator | None = None,
        selector: Generator | None = None,
    ):
        self.settings = settings if settings is not None else Settings.load()
        self._generator = generator
        self._owns_generator = generator is None  # close only what this solver built
        self._scorer = scorer
        self._owns_scorer = scorer is None
        self.side_models = SideModels(self.settings, {"draft": draft, "selector": selector})  # built on first use
        self._strategy = strategy
        self._loop_thread: _LoopThread | None = None
        self._build_lock = threading.Lock()
        self._overridden: dict[str, Settings] = {}  # per-solve overrides (as JSON) -> their settings

    @property
    def generator(self) -> Generator:
        with self._build_lock:
            if self._generator is None:
                self._generator = build_generator(self.settings.generator)
            return self._generator

    @property
    def draft(self) -> Generator:
        """The draft model of the speculative strategies (settings.draft)."""
        return self.side_models.require("draft")

    @property
    def selector(self) -> Generator | None:
        """genselect's selector model (settings.selector; None: the generator selects)."""
        return self.side_models.get("selector")

    @property
    def scorer(self) -> Scorer:
        with self._build_lock:
            if self._scorer is None:
                self._scorer = build_scorer(self.settings.prm)
            return self._scorer

    async def asolve(
        self,
        prompt: Prompt,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        tools: ToolSpec | None = None,
        json_format: JSONFormat | None = None,
        **overrides: Any,
    ) -> SolveResult:
        """Solve one question: a string, or a list of chat messages whose last user message is
        the question (see rfprm_tts.chat). `overrides` change this solve only: `n`,
        `strategy`, strategy parameters (`beam_width=4`, `token_budget=2000`), sampling
        (`generator__temperature`, `generator__max_tokens`, `generator__system_prompt`, ...,
        and the same of `draft__` and `selector__`),
        or `prm__aggregation` / `prm__alpha`. `on_progress` is called with a `Progress` after
        every generation round and PRM call of the search. `tools`: what the model may call
        (an agent's turn; rfprm_tts.search.tool_calls says how a sample that calls is chosen);
        `json_format`: the answer's JSON format (rfprm_tts.search.json_answers)."""
        settings = self._settings_for(overrides)
        return await self.run(
            prompt, self._strategy_for(settings, overrides), settings, on_progress, tools, json_format
        )

    async def run(
        self,
        prompt: Prompt,
        strategy: Strategy,
        settings: Settings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        tools: ToolSpec | None = None,
        json_format: JSONFormat | None = None,
    ) -> SolveResult:
        """Run a ready strategy object on one prompt (`asolve` builds it from settings);
        `settings` may differ from the solver's in per-solve fields only."""
        settings = settings or self.settings
        shaped = tools is not None or json_format is not None
        if shaped:
            check_whole_answers(strategy)
        limit = strategy.params.token_budget
        budget = TokenBudget(limit, strategy.params.budget_counts) if limit else None
        ctx = await self.context(
            prompt,
            settings,
            with_prm=uses_prm(strategy),
            budget=budget,
            on_progress=on_progress,
            tools=tools,
            json_format=json_format,
            side=side_models(strategy),
        )
        started = time.perf_counter()
        try:  # the context holds the question in the PRM's cache until it closes
            if shaped and not (isinstance(ctx.generator, ToolCallingGenerator) and ctx.generator.takes_tools):
                raise ConfigError(
                    "tools and JSON answers need a generator that passes them to the model: the openai backend "
                    "with generator.api 'chat', or an in-process model whose chat template takes tools"
                )
            outcome = await strategy.search(ctx.question, ctx)
        finally:
            await ctx.close()
        if shaped:
            outcome = choose_shaped(outcome, tools, json_format)
        if outcome.best is None and ctx.prm_failures and not any(c.ok for c in outcome.candidates):
            raise PRMInputTooLongError(f"no candidate could be scored by the PRM; first: {ctx.prm_failures[0]}")
        ctx.usage.wall_time_s = time.perf_counter() - started
        ctx.usage.estimate_flops(ctx.parameter_counts())
        return SolveResult(
            question=ctx.question,
            messages=ctx.messages,
            answer=outcome.answer,
            best=outcome.best,
            candidates=outcome.candidates,
            usage=ctx.usage,
            strategy=strategy.name,
            strategy_params={  # with how the PRM's step scores became one, where a PRM scored
                **strategy.params.model_dump(),
                **({"aggregation": ctx.aggregation, "alpha": settings.prm.alpha} if ctx.scorer is not None else {}),
            },
            details=outcome.details,
            tree=ctx.search_tree.nodes(outcome.best),
        )

    async def context(
        self,
        prompt: Prompt,
        settings: Settings | None = None,
        with_prm: bool = True,
        budget: TokenBudget | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        tools: ToolSpec | None = None,
        json_format: JSONFormat | None = None,
        side: list[SideRole] | None = None,
    ) -> SearchContext:
        """The generator and PRM as a search sees them for one prompt (backends are built
        on first use, off the event loop). For callers that drive a search themselves.
        Without `with_prm` the PRM is not loaded for it (a search that never scores); `side`
        names the side models it asks ("draft": a speculative search, "selector": genselect);
        `budget` caps the tokens it may spend; `on_progress` hears of every round; every
        sample request carries `tools` and `json_format`."""
        settings = settings or self.settings
        messages = to_messages(prompt, settings.generator.system_prompt)  # a bad prompt fails before any load
        if self._generator is not None and (self._scorer is not None or not with_prm):
            # built already: no hop to a worker thread, which a loaded event loop pays for in latency
            generator, scorer = self._generator, self._scorer if with_prm else None
        else:
            generator, scorer = await asyncio.to_thread(lambda: (self.generator, self.scorer if with_prm else None))
        reads_logprobs = scorer is not None and (
            isinstance(scorer, LogprobScorer) or settings.prm.confidence_weight > 0
        )
        # a verifier that reads log-probabilities needs the generator to return them
        sampling = settings.generator.sampling().model_copy(update={"logprobs": True} if reads_logprobs else {})
        roles = side or []
        return SearchContext(
            messages,
            generator,
            scorer,
            separator=settings.step_separator,
            aggregation=resolve_aggregation(settings.prm.aggregation, scorer) if scorer else None,
            alpha=settings.prm.alpha,
            confidence=(settings.prm.confidence, settings.prm.confidence_window, settings.prm.confidence_weight),
            sampling=sampling,
            budget=budget,
            on_progress=on_progress,
            tools=tools,
            json_format=json_format,
            side=self.side_models.for_solve(roles, settings, sampling)  # built already: no hop, as above
            if self.side_models.loaded(roles)
            else await asyncio.to_thread(self.side_models.for_solve, roles, settings, sampling),
        )

    def solve(
        self,
        prompt: Prompt,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        tools: ToolSpec | None = None,
        json_format: JSONFormat | None = None,
        **overrides: Any,
    ) -> SolveResult:
        """Sync facade of `asolve` (`on_progress` is called on the solver's loop thread)."""
        return self._own_loop().run(
            self.asolve(prompt, on_progress=on_progress, tools=tools, json_format=json_format, **overrides)
        )

    def _own_loop(self) -> _LoopThread:
        with self._build_lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread()
            return self._loop_thread

    def _settings_for(self, overrides: dict[str, Any]) -> Settings:
        """The settings of a solve with `overrides`; the same overrides (an app's every call)
        are validated once."""
        if not overrides:
            return self.settings
        key = json.dumps(overrides, sort_keys=True, default=repr)
        if key in self._overridden:
            return self._overridden[key]
        settings = self.settings.with_overrides(**overrides)
        if settings.models_key() != self.settings.models_key():
            raise ConfigError(
                "this solver's models are loaded: a solve may change only search settings (n, "
                "strategy and its parameters, the sampling and system_prompt of the generator, draft and selector, "
                "prm.aggregation and prm.alpha). Build a new ReasoningSolver (or use the "
                "module-level solve()) for other generator, PRM or step-separator settings"
            )
        if len(self._overridden) >= 64:  # bounded: an app sends a few shapes of overrides
            self._overridden.clear()
        self._overridden[key] = settings
        return settings

    def _strategy_for(self, settings: Settings, overrides: dict[str, Any]) -> Strategy:
        if self._strategy is not None and not overrides:
            return self._strategy
        return build_strategy(settings.strategy, **{**settings.strategy_params, "n": settings_n(settings)})

    async def aclose(self) -> None:
        """Close what this solver built: the generator's client or engine, the side models', and a PRM engine."""
        if self._generator is not None and self._owns_generator:
            await self._generator.aclose()
        await self.side_models.aclose()
        if self._scorer is not None and self._owns_scorer:
            await asyncio.to_thread(self._scorer.close)

    def close(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.run(self.aclose())
            self._loop_thread.close()
            self._loop_thread = None
        else:
            asyncio.run(self.aclose())

    def __enter__(self) -> ReasoningSolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ReasoningSolver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_shared: ReasoningSolver | None = None
_shared_lock = threading.Lock()


def _shared_solve(prompt: Prompt, overrides: dict[str, Any]) -> tuple[_LoopThread, Coroutine[Any, Any, SolveResult]]:
    """The module-level solver's loop, and the solve to run there. The solver is built again
    only when the models change."""
    global _shared
    settings = Settings.load().with_overrides(**overrides)
    with _shared_lock:
        if _shared is None or _shared.settings.models_key() != settings.models_key():
            if _shared is not None:
                _shared.close()
            _shared = ReasoningSolver(settings)
        solver = _shared
    return solver._own_loop(), solver.run(prompt, solver._strategy_for(settings, overrides), settings)


def solve(prompt: Prompt, **overrides: Any) -> SolveResult:
    """Drop-in: solve with settings from the environment/config plus `overrides` (any field,
    `section__field`, or strategy parameters). Models are loaded once and kept while only
    search settings change."""
    loop, work = _shared_solve(prompt, overrides)
    return loop.run(work)


async def asolve(prompt: Prompt, **overrides: Any) -> SolveResult:
    """Async drop-in: like `solve` (the same shared models); the search runs on the shared
    solver's loop thread while this coroutine awaits it."""
    loop, work = await asyncio.to_thread(_shared_solve, prompt, overrides)
    return await asyncio.wrap_future(loop.submit(work))


def check_whole_answers(strategy: Strategy, what: str = "tools and JSON answers") -> None:
    """Tools, JSON answers and token log-probabilities go with strategies that sample whole
    answers and pick one, without thinking controls (those continue a partial answer, which a
    tool call ends, and build an answer from several requests' tokens)."""
    if not isinstance(strategy, SampleThenChoose) or strategy.params.controls_thinking:
        raise ConfigError(
            f"{what} need a strategy that samples whole answers (best_of_n, weighted_best_of_n, "
            f"majority_vote) without thinking controls; {strategy.name!r} with these parameters is not one"
        )


def choose_shaped(outcome: SearchOutcome, tools: ToolSpec | None, json_format: JSONFormat | None) -> SearchOutcome:
    """The pick among samples shaped by the request: a tool call when most samples call tools
    (search.tool_calls), else with a JSON format the JSON answer most samples give
    (search.json_answers; none when no sample's answer is valid), else the strategy's pick
    among the samples that answer in text (its ranking, best first; none when none do)."""
    if tools is not None:
        called = vote_tool_calls(outcome.candidates, tools)
        outcome.details["tool_calls"] = called.details
        if called.best is not None:
            return SearchOutcome(called.answer, outcome.candidates, called.best, outcome.details)
        text = next((c for c in outcome.candidates if c.ok and not c.tool_calls), None)
        if text is not outcome.best:
            outcome = SearchOutcome(text.answer if text else None, outcome.candidates, text, outcome.details)
    if json_format is not None:
        voted = vote_json(outcome.candidates, json_format)
        outcome.details["json"] = voted.details
        return SearchOutcome(voted.answer, outcome.candidates, voted.best, outcome.details)
    return outcome
