"""`rfprm serve`: an OpenAI-compatible chat-completions endpoint that answers with the
PRM-chosen answer of a search over the configured generator (any OpenAI-compatible upstream,
in-process vLLM, or the demo world).

A request is a standard chat-completions body. Its messages (system message and history
included) go to the generator as they are; the PRM scores the last user message as the
question. The strategy and budget are server defaults, overridable in an `rfprm` object of
the body (the openai SDK sends it with `extra_body`): `{"strategy": "beam_search", "n": 8,
"params": {"beam_width": 4}, "token_budget": 4000, "return_candidates": true}`; the token
budget may also come as an `X-Rfprm-Token-Budget` header (both given: the smaller holds),
within `serve.max_token_budget`. The request's sampling fields
(temperature, top_p, stop, seed, max_tokens / max_completion_tokens) override the server's
generator settings for that request, within the server's limits; `max_tokens` bounds each
answer. `n` must be 1: the answer is one chosen completion.

With `stream: true` the response starts at once: a role chunk, then a progress chunk after
every generation round and PRM call of the search (`choices: []`, and an `rfprm` object
`{"event": "progress", "round", "phase", "candidates", "open", "finished", "best_score",
"generated_tokens", "prm_tokens", "elapsed_s"}`, which clients that do not know it skip),
then the chosen answer as standard content chunks.

Beside chat completions, behind the same keys and PRM batching: `POST /v1/prm/score` (the PRM
scores of given responses, see ScoreRequest) and `POST /v1/rewards/openrlhf` (OpenRLHF's
remote reward request; rfprm_tts.rewards.openrlhf).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rfprm_tts.chat import to_messages
from rfprm_tts.context import Progress
from rfprm_tts.errors import ConfigError, GenerationError, RfprmError
from rfprm_tts.rewards import RewardModel, openrlhf
from rfprm_tts.scoring import score_responses
from rfprm_tts.serve.metrics import Metrics
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies.base import build_strategy
from rfprm_tts.trajectory import SolveResult

log = logging.getLogger(__name__)


class RfprmOptions(BaseModel):
    """Per-request search options (the body's `rfprm` object)."""

    model_config = ConfigDict(extra="forbid")
    strategy: str | None = None
    n: int | None = Field(None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    token_budget: int | None = Field(None, ge=1)
    budget_counts: Literal["generated", "total"] | None = None
    return_candidates: bool = False


class ScoreItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    response: str | None = None
    steps: list[str] | None = None

    @model_validator(mode="after")
    def _one_answer(self) -> ScoreItem:
        if (self.response is None) == (self.steps is None):
            raise ValueError("give each item a response or a list of steps (one of them)")
        return self


class ScoreRequest(BaseModel):
    """`POST /v1/prm/score`: `{"items": [{"question": ..., "response": ...} or {"question": ...,
    "steps": [...]}]}`; the answer: `{"results": [{"step_scores", "scores" (every aggregation),
    "steps", "prm_note", "prm_tokens", "error"}], "usage": {"prm_tokens"}}`."""

    model_config = ConfigDict(extra="forbid")
    items: list[ScoreItem] = Field(min_length=1)


class ChatRequest(BaseModel):
    """The chat-completions fields the proxy reads; other fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    rfprm: RfprmOptions = Field(default_factory=RfprmOptions)

    @property
    def token_limit(self) -> int | None:
        """The cap on each answer (max_completion_tokens, or the older max_tokens)."""
        return self.max_completion_tokens or self.max_tokens

    def sampling_overrides(self) -> dict[str, Any]:
        """The request's sampling fields, as per-solve overrides of the generator settings."""
        given = {
            "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed, "max_tokens": self.token_limit,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
        }
        return {f"generator__{name}": value for name, value in given.items() if value is not None}


class APIError(Exception):
    """An error answered as an OpenAI-style error object."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers or {}

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.kind, "param": None, "code": self.code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.payload()}, status_code=self.status, headers=self.headers)


@dataclass
class Ticket:
    """One admitted request: its key, when it started, the status to record, and whether a
    stream took over releasing it."""

    key: int
    started: float
    status: int = 500
    streaming: bool = False


class KeyLimiter:
    """Bearer-key auth (constant-time comparisons, keys never logged) and a cap on each
    key's requests in flight."""

    def __init__(self, keys: list[str], max_in_flight: int):
        self.keys = [k.encode() for k in keys]
        self.max_in_flight = max_in_flight
        self.in_flight: dict[int, int] = {}

    def identify(self, authorization: str | None) -> int:
        """The index of the caller's key (-1 when the server has no keys)."""
        if not self.keys:
            return -1
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        matches = [hmac.compare_digest(given, key) for key in self.keys]  # every key, always
        if not any(matches):
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           "authentication_error", "invalid_api_key")
        return matches.index(True)

    def acquire(self, key: int) -> None:
        if self.in_flight.get(key, 0) >= self.max_in_flight:
            raise APIError(429, f"more than {self.max_in_flight} requests in flight for this key; retry shortly",
                           "rate_limit_error", "too_many_requests", headers={"Retry-After": "1"})
        self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def release(self, key: int) -> None:
        self.in_flight[key] -= 1


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing one larger than `limit` bytes before reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes is over the limit of {limit}", "invalid_request_error",
                       "body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"request body is over the limit of {limit} bytes", "invalid_request_error",
                           "body_too_large")
    return bytes(body)


def parse_request(body: bytes, settings: Settings, budget_header: str | None = None) -> ChatRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the body is not valid JSON: {exc}", "invalid_request_error", "invalid_json") from None
    try:
        chat = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"invalid field {where}: {first['msg']}", "invalid_request_error", "invalid_field") from None
    limits = settings.serve
    if chat.n != 1:
        raise APIError(400, "n must be 1: the proxy returns one chosen answer; set the search budget with rfprm.n",
                       "invalid_request_error", "invalid_n")
    budget = chat.rfprm.n or settings.n
    if budget > limits.max_n:
        raise APIError(400, f"rfprm.n={budget} is over this server's limit of {limits.max_n}",
                       "invalid_request_error", "n_too_large")
    max_tokens = chat.token_limit
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens={max_tokens} is over this server's limit of {limits.max_tokens}",
                       "invalid_request_error", "max_tokens_too_large")
    chat.rfprm.token_budget = token_budget(chat.rfprm, budget_header, limits.max_token_budget)
    return chat


def token_budget(options: RfprmOptions, header: str | None, limit: int | None) -> int | None:
    """The request's token budget: the smallest it gave (rfprm.token_budget, rfprm.params,
    the header), else the server's limit; over the limit is refused."""
    asked = [b for b in (options.token_budget, options.params.get("token_budget")) if b is not None]
    if header is not None:
        if not header.strip().isdigit() or int(header) < 1:
            raise APIError(400, f"X-Rfprm-Token-Budget must be a positive whole number of tokens, got {header!r}",
                           "invalid_request_error", "invalid_token_budget")
        asked.append(int(header))
    budget = min(asked, default=limit)
    if limit is not None and budget is not None and budget > limit:
        raise APIError(400, f"token budget {budget} is over this server's limit of {limit}",
                       "invalid_request_error", "token_budget_too_large")
    return budget


def completion_body(result: SolveResult, chat: ChatRequest, model: str, request_id: str) -> dict[str, Any]:
    best = result.best
    usage = result.usage
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": best.trajectory.text if best else ""},
            "finish_reason": (best.finish_reason if best and best.finish_reason in ("stop", "length") else "stop"),
        }],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.generated_tokens,
            "total_tokens": usage.prompt_tokens + usage.generated_tokens,
        },
        "rfprm": {
            "answer": result.answer,
            "score": best.score if best else None,
            "strategy": result.strategy,
            "strategy_params": result.strategy_params,
            "usage": usage.model_dump(),
        },
    }
    if chat.rfprm.return_candidates:
        body["rfprm"]["candidates"] = [
            {
                "text": c.trajectory.text, "answer": c.answer, "score": c.score, "step_scores": c.step_scores,
                "finish_reason": c.finish_reason, "error": c.error, "prm_note": c.prm_note,
            }
            for c in result.candidates
        ]
    return body


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def chunk_head(request_id: str, created: int, model: str) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}


def delta_chunk(head: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    return sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


def progress_chunk(head: dict[str, Any], progress: Progress) -> str:
    """A search progress event: no choices (clients that only read choices skip it)."""
    return sse({**head, "choices": [], "rfprm": {"event": "progress", **asdict(progress)}})


def answer_chunks(body: dict[str, Any], include_usage: bool, piece: int = 64) -> list[str]:
    """The chosen answer as content chunks, the finish chunk (with the `rfprm` object), the
    usage chunk when asked for, then [DONE]."""
    head = chunk_head(body["id"], body["created"], body["model"])
    text = body["choices"][0]["message"]["content"]
    events = [delta_chunk(head, {"content": text[i : i + piece]}) for i in range(0, len(text), piece)]
    events.append(delta_chunk(head, {}, body["choices"][0]["finish_reason"], rfprm=body["rfprm"]))
    if include_usage:
        events.append(sse({**head, "choices": [], "usage": body["usage"]}))
    events.append("data: [DONE]\n\n")
    return events


def upstream_error(exc: GenerationError) -> APIError:
    timed_out = "timed out" in str(exc)
    return APIError(504 if timed_out else 502, f"upstream generation failed: {exc}", "upstream_error",
                    "upstream_timeout" if timed_out else "upstream_failed")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(settings: Settings) -> None:
    """Refuse an open proxy: beyond loopback without keys, anyone who reaches the port spends
    the upstream's tokens."""
    serve = settings.serve
    if not serve.api_keys and not serve.allow_no_auth and not is_loopback(serve.host):
        raise ConfigError(
            f"refusing to listen on {serve.host} without API keys: anyone who reaches this port "
            "would spend your upstream's tokens. Give clients a key (--api-key KEY, or "
            "RFPRM_SERVE__API_KEYS='[\"KEY\"]'), listen on 127.0.0.1, or pass --allow-no-auth "
            "(RFPRM_SERVE__ALLOW_NO_AUTH=true) on a network you trust"
        )


def create_app(settings: Settings, solver: ReasoningSolver | None = None) -> FastAPI:
    """The proxy app. Without a `solver`, one is built from `settings` with the PRM batched
    across requests (serve.batch_window_ms, serve.max_batch)."""
    check_exposure(settings)
    metrics = Metrics()
    limiter = KeyLimiter([k.get_secret_value() for k in settings.serve.api_keys], settings.serve.max_concurrent_per_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal solver
        built = solver is None
        if built:
            solver = await asyncio.to_thread(build_solver, settings, metrics)
        yield
        await solver.aclose()
        if built:  # the batching PRM was handed to the solver, so it is ours to close
            await asyncio.to_thread(solver.scorer.close)

    app = FastAPI(title="rfprm-tts proxy", lifespan=lifespan)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        limiter.identify(request.headers.get("authorization"))
        return {"object": "list", "data": [{"id": settings.serve.model_name, "object": "model", "created": 0,
                                            "owned_by": "rfprm-tts"}]}

    @asynccontextmanager
    async def admitted(request: Request) -> AsyncIterator[Ticket]:
        """Auth, the key's in-flight cap and metrics around one request. On exit the key is
        released and the request recorded, unless its ticket was handed to a stream (which
        does both when it ends)."""
        ticket = Ticket(limiter.identify(request.headers.get("authorization")), time.perf_counter())
        limiter.acquire(ticket.key)
        metrics.start()
        try:
            yield ticket
        except APIError as exc:
            ticket.status = exc.status
            raise
        finally:
            if not ticket.streaming:
                finish(ticket)

    def finish(ticket: Ticket) -> None:
        """The request is over: free its place under the key's cap and record it."""
        limiter.release(ticket.key)
        metrics.finish(ticket.status, time.perf_counter() - ticket.started)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        async with admitted(request) as ticket:
            raw = await read_body(request, settings.serve.max_body_bytes)
            chat = parse_request(raw, settings, request.headers.get("x-rfprm-token-budget"))
            if chat.stream:
                ticket.streaming = True
                return StreamingResponse(stream(chat, ticket), media_type="text/event-stream")
            body = await until_done_or_disconnect(asyncio.ensure_future(solve(chat)), request)
            ticket.status = 200
            return JSONResponse(body)

    async def guarded(request: Request, work: Callable[[bytes], Any]) -> Response:
        """A JSON endpoint whose `work(body)` runs on a worker thread (it scores) and returns
        the JSON to answer."""
        async with admitted(request) as ticket:
            raw = await read_body(request, settings.serve.max_body_bytes)
            try:
                body = await asyncio.to_thread(work, raw)
            except (ValidationError, ValueError) as exc:
                raise APIError(400, f"invalid request: {exc}", "invalid_request_error", "invalid_body") from None
            ticket.status = 200
            return JSONResponse(body)

    @app.post("/v1/prm/score")
    async def prm_score(request: Request) -> Response:
        def work(raw: bytes) -> dict[str, Any]:
            items = ScoreRequest.model_validate_json(raw).items
            results = score_responses(solver.scorer, [(i.question, i.steps or i.response) for i in items],
                                      settings.step_separator, settings.prm.alpha)
            return {"results": [asdict(r) for r in results], "usage": {"prm_tokens": sum(r.prm_tokens for r in results)}}

        return await guarded(request, work)

    @app.post("/v1/rewards/openrlhf")
    async def openrlhf_rewards(request: Request) -> Response:
        return await guarded(request, lambda raw: openrlhf.answer(openrlhf.OpenRLHFRequest.model_validate_json(raw),
                                                                  RewardModel(settings, scorer=solver.scorer)))

    async def solve(
        chat: ChatRequest, request_id: str | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> dict[str, Any]:
        options = chat.rfprm
        budget = {"token_budget": options.token_budget} if options.token_budget else {}
        if options.budget_counts:
            budget["budget_counts"] = options.budget_counts
        try:
            messages = to_messages(chat.messages)
        except ConfigError as exc:
            raise APIError(400, f"invalid messages: {exc}", "invalid_request_error", "invalid_messages") from None
        try:
            strategy = build_strategy(options.strategy or settings.strategy, settings.strategy_params,
                                      n=options.n or settings.n, **{**options.params, **budget})
            request_settings = settings.with_overrides(**chat.sampling_overrides())
            result = await solver.run(messages, strategy, request_settings, on_progress)
        except ConfigError as exc:
            raise APIError(400, str(exc), "invalid_request_error", "invalid_rfprm_option") from None
        except GenerationError as exc:
            metrics.upstream_errors.inc()
            raise upstream_error(exc) from None
        except RfprmError as exc:
            raise APIError(500, str(exc), "server_error") from None
        metrics.record_usage(result)
        return completion_body(result, chat, settings.serve.model_name, request_id or f"chatcmpl-{uuid.uuid4().hex}")

    async def until_done_or_disconnect(work: asyncio.Future, request: Request) -> dict[str, Any]:
        """The solve's result; a client that goes away cancels its upstream work. The server
        says so with an http.disconnect message, so this waits for one instead of polling
        (polling each request 10 times a second cost a third of the proxy's CPU at 256 in
        flight: py-spy)."""

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not work.done():
            work.cancel()
            metrics.cancelled.inc()
            raise APIError(499, "client disconnected", "client_closed_request")
        return work.result()

    async def stream(chat: ChatRequest, ticket: Ticket) -> AsyncIterator[str]:
        """The role chunk at once, a progress chunk per round of the search, then the answer.
        A client that goes away cancels the search (Starlette cancels this generator); the
        stream ends the admitted request's ticket."""
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        head = chunk_head(request_id, int(time.time()), settings.serve.model_name)
        events: asyncio.Queue[Progress] = asyncio.Queue()
        work = asyncio.ensure_future(solve(chat, request_id, events.put_nowait))
        try:
            yield delta_chunk(head, {"role": "assistant", "content": ""})
            while not work.done() or not events.empty():
                next_event = asyncio.ensure_future(events.get())
                await asyncio.wait({work, next_event}, return_when=asyncio.FIRST_COMPLETED)
                if next_event.done():
                    yield progress_chunk(head, next_event.result())
                else:
                    next_event.cancel()
            try:
                body = work.result()
            except APIError as exc:
                ticket.status = exc.status
                yield sse({"error": exc.payload()})
                return
            include_usage = bool((chat.stream_options or {}).get("include_usage"))
            for event in answer_chunks(body, include_usage):
                yield event
            ticket.status = 200
        except asyncio.CancelledError:
            metrics.cancelled.inc()
            ticket.status = 499
            raise
        finally:
            work.cancel()
            finish(ticket)

    return app


def build_solver(settings: Settings, metrics: Metrics) -> ReasoningSolver:
    """A solver whose PRM batches the scoring work of concurrent requests."""
    from rfprm_tts.prm import build_scorer
    from rfprm_tts.serve.batching import BatchingScorer

    scorer = build_scorer(settings.prm)
    if not getattr(scorer, "reads_logprobs", False):  # a confidence verifier runs no model: nothing to batch
        scorer = BatchingScorer(
            scorer,
            window_s=settings.serve.batch_window_ms / 1000,
            max_batch=settings.serve.max_batch,
            on_batch=metrics.observe_batch,
        )
    solver = ReasoningSolver(settings, scorer=scorer)
    solver.generator  # noqa: B018 - build the generator now, not on the first request
    return solver
