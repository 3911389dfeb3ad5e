"""The proxy's work, without HTTP: one chat completion, PRM scoring or reward request at a time.

`ProxyService` takes a parsed request model (protocol.py) and returns the body to answer with,
or raises an APIError: the request's fault a 400, the upstream's a 502/504, the proxy's own a
500 (its traceback logged). app.py routes HTTP to it (auth, body, limits, streams); tests and
other front ends can call it directly, with any generator and scorer.

Before a chat request's search starts, its question is measured in the PRM's own tokens
against the PRM's context (the server's per-input limit, `prm.max_length` or the checkpoint's):
a question that leaves no room for an answer is a 400 naming both numbers, before any token is
generated upstream and before the request joins the PRM batch it would share with others.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rfprm_tts.chat import question_of, to_messages
from rfprm_tts.errors import ConfigError, GenerationError, PRMInputTooLongError
from rfprm_tts.generators import Generator
from rfprm_tts.generators.openai import OpenAIGenerator
from rfprm_tts.offline.responses import score_responses
from rfprm_tts.prm.protocol import LogprobScorer, Scorer
from rfprm_tts.prm.scorer import PRMScorer
from rfprm_tts.rewards import RewardModel, openrlhf
from rfprm_tts.search.progress import Progress
from rfprm_tts.serve.batching import BatchingScorer
from rfprm_tts.serve.errors import APIError, invalid
from rfprm_tts.serve.metrics import Metrics
from rfprm_tts.serve.protocol import ChatCall, ScoreRequest
from rfprm_tts.serve.responses import completion_body, top_choices
from rfprm_tts.serve.routes import RouteTable
from rfprm_tts.settings import PER_SOLVE_FIELDS, SIDE_MODELS, GeneratorSettings, Settings, SideRole
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies.base import uses_prm
from rfprm_tts.trajectory import SolveResult

log = logging.getLogger(__name__)
# Longer questions are tokenized for the PRM check on a worker thread; shorter ones take well
# under a millisecond, less than the hop to a thread costs on a loaded event loop.
TOKENIZE_ON_LOOP_CHARS = 4096


def internal_error() -> APIError:
    """A bug of the proxy's, as the client sees it (the traceback goes to the log)."""
    return APIError(
        500,
        "the proxy failed to answer this request; retry, and tell its operator if it persists",
        "server_error",
        "internal_error",
    )


def upstream_error(exc: GenerationError) -> APIError:
    """What the client can act on; the upstream's URL and error text go to the log only."""
    log.warning("upstream generation failed: %s", exc)
    if "timed out" in str(exc):
        return APIError(
            504,
            "the upstream model did not answer in time (after the proxy's retries); retry later, "
            "or ask for fewer tokens",
            "upstream_error",
            "upstream_timeout",
        )
    return APIError(
        502,
        "the upstream model failed to answer (after the proxy's retries); retry later",
        "upstream_error",
        "upstream_failed",
    )


def no_valid_answer(result: SolveResult) -> APIError:
    """No sample answered in the shape the request asked for (valid JSON, an allowed call): a
    200 with empty content would break the client's parsing, so the upstream's failure it is."""
    # the shape checks' reasons only: a failed generation's error may hold the upstream's URL
    reasons = sorted({c.error for c in result.candidates if c.error and (c.trajectory.text or c.tool_calls)})
    return APIError(
        502,
        f"none of the {len(result.candidates)} samples gave a valid answer for the request's response_format "
        f"or tool_choice (first reason: {reasons[0] if reasons else 'none given'}); retry, or raise rfprm.n",
        "upstream_error",
        "no_valid_answer",
    )


def context_exceeded(detail: str) -> APIError:
    return invalid(
        f"the question and its answers do not fit this server's PRM: {detail}", "context_length_exceeded", "messages"
    )


def batched(scorer: Scorer, settings: Settings, metrics: Metrics) -> Scorer:
    """`scorer` batching the scoring work of concurrent requests (serve.batch_window_ms,
    serve.max_batch); a scorer that reads the generator's log-probs runs no model: as it is."""
    if isinstance(scorer, LogprobScorer):
        return scorer
    return BatchingScorer(
        scorer,
        window_s=settings.serve.batch_window_ms / 1000,
        max_batch=settings.serve.max_batch,
        on_batch=metrics.observe_batch,
    )


def prm_model(scorer: Scorer) -> PRMScorer | None:
    """The PRM behind `scorer` when it runs a model with a known context, else None."""
    inner = scorer.scorer if isinstance(scorer, BatchingScorer) else scorer
    return inner if isinstance(inner, PRMScorer) and inner.max_length is not None else None


class ProxyService:
    """Runs the proxy's requests, each on the solver of the route its model names (routes.py).
    `start()` builds the solvers unless the default route's is given: a route that changes the
    generator or the PRM gets its own (the PRM batched across requests), one that does not
    shares the default route's. Usage is recorded in `metrics`."""

    def __init__(self, settings: Settings, solver: ReasoningSolver | None = None, metrics: Metrics | None = None):
        self.settings = settings
        self.routes = RouteTable(settings)
        self.metrics = metrics if metrics is not None else Metrics()
        self._given = solver
        self._solvers: dict[str, ReasoningSolver] = {}
        self._generators: list[Generator] = []  # what this service built, and closes (each solver its side models)
        self._scorers: list[Scorer] = []

    async def start(self) -> None:
        """Build the routes' solvers (models load here, off the event loop)."""
        if not self._solvers:
            self._solvers = await asyncio.to_thread(self._build_solvers)

    def _build_solvers(self) -> dict[str, ReasoningSolver]:
        from rfprm_tts.generators import build_generator
        from rfprm_tts.prm import build_scorer

        def generator(section: GeneratorSettings) -> Generator:
            self._generators.append(built := build_generator(section))
            return built

        def scorer(settings: Settings) -> Scorer:
            self._scorers.append(built := batched(build_scorer(settings.prm), settings, self.metrics))
            return built

        def shared(changes: dict[str, Any], role: SideRole) -> Generator | None:
            """The default route's draft or selector for a route that changes none of its model's keys
            (None: the route's solver builds its own)."""
            return None if set(changes) - PER_SOLVE_FIELDS["generator"] else default.side_models.get(role)

        default_settings = self.routes.routes[self.routes.default]
        default = self._given or ReasoningSolver(
            default_settings, generator=generator(default_settings.generator), scorer=scorer(default_settings)
        )
        solvers = {self.routes.default: default}
        for name, route in self.settings.serve.routes.items():
            routed = self.routes.routes[name]
            solvers[name] = ReasoningSolver(
                routed,
                generator=generator(routed.generator) if route.generator else default.generator,
                scorer=scorer(routed) if route.prm else default.scorer,
                draft=shared(route.draft, "draft"),
                selector=shared(route.selector, "selector"),
            )
        for solver in solvers.values():  # every side model loads now, not on a route's first request
            for role in SIDE_MODELS:
                solver.side_models.get(role)
        return solvers

    @property
    def solver(self) -> ReasoningSolver:
        """The default route's solver."""
        return self.solver_for(self.routes.default, self.settings)

    def solver_for(self, model: str, settings: Settings) -> ReasoningSolver:
        """The solver of the route `model`; a passed-through name gets the default route's
        solver asking its upstream for that model (nothing loads: the client is shared)."""
        if not self._solvers:
            raise RuntimeError("the proxy service has not started: await start() first")
        if model in self._solvers:
            return self._solvers[model]
        default = self._solvers[self.routes.default]
        if not isinstance(default.generator, OpenAIGenerator):
            raise ConfigError("serve.passthrough_models needs the openai generator backend")
        return ReasoningSolver(
            settings,
            generator=default.generator.with_model(model),
            scorer=default.scorer,
            draft=default.side_models.get("draft"),
            selector=default.side_models.get("selector"),
        )

    async def aclose(self) -> None:
        for solver in self._solvers.values():  # each closes what it built itself
            if solver is not self._given:
                await solver.aclose()
        if self._given is not None:
            await self._given.aclose()
        for generator in self._generators:
            await generator.aclose()
        for scorer in self._scorers:
            await asyncio.to_thread(scorer.close)
        self._generators, self._scorers = [], []

    async def chat(
        self, call: ChatCall, request_id: str | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> dict[str, Any]:
        """The search's answer to a chat request as a completion body. Every failure is an
        APIError: the request's fault a 400, the upstream's a 502/504, the proxy's own a 500."""
        chat = call.chat
        try:
            messages = to_messages(chat.messages)
        except ConfigError as exc:
            raise invalid(f"invalid messages: {exc}", "invalid_messages", "messages") from None
        try:
            solver = self.solver_for(call.model, call.settings)
            request_settings = call.settings.with_overrides(**chat.sampling_overrides())
            if uses_prm(call.strategy):
                await self.check_question(solver.scorer, question_of(messages))
            result = await solver.run(
                messages, call.strategy, request_settings, on_progress, call.tools, call.json_format
            )
        except APIError:
            raise
        except ConfigError as exc:
            raise invalid(str(exc), "invalid_rfprm_option") from None
        except GenerationError as exc:
            self.metrics.upstream_errors.inc()
            raise upstream_error(exc) from None
        except PRMInputTooLongError as exc:
            raise context_exceeded(str(exc)) from None
        except Exception:  # a bug, or an RfprmError the request did not cause
            log.exception("request %s failed", request_id)
            raise internal_error() from None
        self.metrics.record_usage(result)
        shaped = call.tools is not None or call.json_format is not None
        if shaped and result.best is None:
            raise no_valid_answer(result)
        # n > 1: distinct answers, which takes an equivalence check (math-verify): off the loop
        choices = await asyncio.to_thread(top_choices, result, chat.n, shaped) if chat.n > 1 else None
        return completion_body(result, chat, call.model, request_id or f"chatcmpl-{uuid.uuid4().hex}", choices)

    async def check_question(self, scorer: Scorer, question: str) -> None:
        """A 400 when the question alone fills the PRM's context (no answer could be scored),
        before the request spends upstream tokens or joins a PRM batch. Measured in the PRM's
        tokens (on a worker thread when the question is long)."""
        prm = prm_model(scorer)
        if prm is None or prm.max_length is None:
            return
        if len(question) > TOKENIZE_ON_LOOP_CHARS:
            tokens, whole = await asyncio.to_thread(question_tokens, prm, question, prm.max_length)
        else:
            tokens, whole = question_tokens(prm, question, prm.max_length)
        if tokens >= prm.max_length:
            raise context_exceeded(
                f"the question takes {'' if whole else 'over '}{tokens:,} of the PRM's {prm.max_length:,} tokens "
                "per input (question and answer together), leaving none for the answer; shorten the question"
            )

    def score(self, request: ScoreRequest) -> dict[str, Any]:
        """`POST /v1/prm/score`: the PRM's scores of the given responses (blocking: call it
        from a worker thread)."""
        try:
            results = score_responses(
                self.solver.scorer,
                [(i.question, i.answer) for i in request.items],
                self.settings.step_separator,
                self.settings.prm.alpha,
            )
        except ValueError as exc:
            raise invalid(f"invalid request: {exc}", "invalid_body") from None
        return {
            "results": [asdict(r) for r in results],
            "usage": {"prm_tokens": sum(r.prm_tokens for r in results)},
        }

    def openrlhf(self, request: openrlhf.OpenRLHFRequest) -> dict[str, Any]:
        """`POST /v1/rewards/openrlhf` (blocking: call it from a worker thread); a request whose
        lists do not match is a 400."""
        try:
            return openrlhf.answer(request, RewardModel(self.settings, scorer=self.solver.scorer))
        except ValueError as exc:
            raise invalid(f"invalid request: {exc}", "invalid_body") from None


def question_tokens(prm: PRMScorer, question: str, limit: int) -> tuple[int, bool]:
    """(the question's PRM tokens, whether all of it was measured). Prefixes of growing length
    first: once a prefix is past `limit` the question is too, so a 900 KB question costs the
    tokenization of a few times the context, not of all of it. (A cut can split a word's
    tokens in two: a prefix counts one more token at most, hence `limit + 1`.)"""
    size = limit * 8
    while size < len(question):
        tokens = len(prm.encode(question[:size], []))
        if tokens > limit + 1:
            return tokens - 1, False
        size *= 4
    return len(prm.encode(question, [])), True
