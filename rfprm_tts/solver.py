"""ReasoningSolver: a generator, a PRM and a strategy wired together.

The core is async (`asolve`); `solve` is a sync facade that runs the core on the solver's own
event-loop thread, so it also works where a loop is already running (Jupyter, async apps).
Use one style per solver: its HTTP client belongs to the loop that first used it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from rfprm_tts.context import SearchContext
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators import Generator, build_generator
from rfprm_tts.prm import Scorer, build_scorer
from rfprm_tts.prm.aggregate import resolve_aggregation
from rfprm_tts.settings import Settings
from rfprm_tts.strategies import Strategy, build_strategy
from rfprm_tts.trajectory import SolveResult

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever on a daemon thread, for the sync facade."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rfprm-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
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
    `generator`, `scorer` and `strategy` objects (anything that follows the protocols).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        generator: Generator | None = None,
        scorer: Scorer | None = None,
        strategy: Strategy | None = None,
    ):
        self.settings = settings if settings is not None else Settings.load()
        self._generator = generator
        self._owns_generator = generator is None  # close only what this solver built
        self._scorer = scorer
        self._strategy = strategy
        self._loop_thread: _LoopThread | None = None
        self._build_lock = threading.Lock()

    @property
    def generator(self) -> Generator:
        with self._build_lock:
            if self._generator is None:
                self._generator = build_generator(self.settings.generator)
            return self._generator

    @property
    def scorer(self) -> Scorer:
        with self._build_lock:
            if self._scorer is None:
                self._scorer = build_scorer(self.settings.prm)
            return self._scorer

    async def asolve(self, prompt: str, **overrides: Any) -> SolveResult:
        """Solve one question. `overrides` change this solve only: `n`, `strategy`, strategy
        parameters (`beam_width=4`), or `prm__aggregation` / `prm__alpha`."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError("the prompt is empty: pass the question to solve as a non-empty string")
        settings = self._settings_for(overrides)
        return await self.run(prompt, self._strategy_for(settings, overrides), settings)

    async def run(
        self, prompt: str, strategy: Strategy, settings: Settings | None = None, max_tokens: int | None = None
    ) -> SolveResult:
        """Run a ready strategy object on one question (`asolve` builds it from settings);
        `max_tokens` caps each generation request of this solve."""
        settings = settings or self.settings
        ctx = await self.context(prompt, settings, max_tokens)
        started = time.perf_counter()
        try:
            outcome = await strategy.search(prompt, ctx)
        finally:
            await ctx.close()
        ctx.usage.wall_time_s = time.perf_counter() - started
        ctx.usage.estimate_flops(
            getattr(ctx.generator, "num_parameters", None), getattr(ctx.scorer, "num_parameters", None)
        )
        return SolveResult(
            question=prompt,
            answer=outcome.answer,
            best=outcome.best,
            candidates=outcome.candidates,
            usage=ctx.usage,
            strategy=strategy.name,
            strategy_params={
                **strategy.params.model_dump(),
                "aggregation": ctx.aggregation,
                "alpha": settings.prm.alpha,
                **outcome.details,
            },
        )

    async def context(
        self, prompt: str, settings: Settings | None = None, max_tokens: int | None = None
    ) -> SearchContext:
        """The generator and PRM as a search sees them for one question (backends are built
        on first use, off the event loop). For callers that drive a search themselves."""
        settings = settings or self.settings
        generator, scorer = await asyncio.to_thread(lambda: (self.generator, self.scorer))
        return SearchContext(
            prompt,
            generator,
            scorer,
            separator=settings.step_separator,
            aggregation=resolve_aggregation(settings.prm.aggregation, scorer),
            alpha=settings.prm.alpha,
            max_tokens=max_tokens,
        )

    def solve(self, prompt: str, **overrides: Any) -> SolveResult:
        """Sync facade of `asolve`."""
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread.run(self.asolve(prompt, **overrides))

    def _settings_for(self, overrides: dict[str, Any]) -> Settings:
        if not overrides:
            return self.settings
        settings = self.settings.with_overrides(**overrides)
        changed_backend = settings.generator != self.settings.generator or any(
            getattr(settings.prm, f) != getattr(self.settings.prm, f)
            for f in type(settings.prm).model_fields
            if f not in ("aggregation", "alpha")
        )
        if changed_backend or settings.step_separator != self.settings.step_separator:
            raise ConfigError(
                "generator, PRM and step-separator settings are fixed once a solver exists; "
                "build a new ReasoningSolver (or use the module-level solve()) to change them"
            )
        return settings

    def _strategy_for(self, settings: Settings, overrides: dict[str, Any]) -> Strategy:
        if self._strategy is not None and not overrides:
            return self._strategy
        return build_strategy(settings.strategy, n=settings.n, **settings.strategy_params)

    async def aclose(self) -> None:
        if self._generator is not None and self._owns_generator:
            await self._generator.aclose()

    def close(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.run(self.aclose())
            self._loop_thread.close()
            self._loop_thread = None
        elif self._generator is not None and self._owns_generator:
            asyncio.run(self.aclose())

    def __enter__(self) -> ReasoningSolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ReasoningSolver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_default: tuple[str, ReasoningSolver] | None = None
_default_lock = threading.Lock()


def _settings_key(settings: Settings) -> str:
    key = settings.generator.api_key
    return settings.model_dump_json() + (key.get_secret_value() if key else "")


def solve(prompt: str, **overrides: Any) -> SolveResult:
    """Drop-in: solve with settings from the environment/config plus `overrides` (any field,
    `section__field`, or strategy parameters). Reuses one solver while settings stay the same."""
    global _default
    settings = Settings.load().with_overrides(**overrides)
    key = _settings_key(settings)
    with _default_lock:
        if _default is None or _default[0] != key:
            if _default is not None:
                _default[1].close()
            _default = (key, ReasoningSolver(settings))
        solver = _default[1]
    return solver.solve(prompt)


async def asolve(prompt: str, **overrides: Any) -> SolveResult:
    """Async drop-in: like `solve`, with a solver that lives for this call."""
    async with ReasoningSolver(Settings.load().with_overrides(**overrides)) as solver:
        return await solver.asolve(prompt)
