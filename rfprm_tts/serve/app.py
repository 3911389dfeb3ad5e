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

Hostile clients are expected: admission.py reads a body (time and size limits) before the
request takes a place under the per-key and overall limits, and bounds the wait for one;
protocol.py validates everything a request carries before any work starts (a request's content
is a 400, never a 500); errors are OpenAI-style objects that tell the client what it can act
on, the operator's detail going to the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rfprm_tts.chat import to_messages
from rfprm_tts.errors import ConfigError, GenerationError, PRMInputTooLongError
from rfprm_tts.offline.responses import score_responses
from rfprm_tts.rewards import RewardModel, openrlhf
from rfprm_tts.search.context import Progress
from rfprm_tts.serve.admission import Admission, ClientGone, read_body
from rfprm_tts.serve.metrics import Metrics
from rfprm_tts.serve.protocol import (
    DONE,
    APIError,
    ChatCall,
    ScoreRequest,
    answer_chunks,
    chunk_head,
    completion_body,
    delta_chunk,
    invalid,
    parse_chat,
    parse_model,
    progress_chunk,
    sse,
)
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver

log = logging.getLogger(__name__)

# Bodies larger than this are parsed and validated on a worker thread: a megabyte of JSON
# takes tens of milliseconds, which every other request on the event loop would wait for.
PARSE_ON_LOOP_BYTES = 64 * 1024


def internal_error() -> APIError:
    """A bug of the proxy's, as the client sees it (the traceback goes to the log)."""
    return APIError(
        500,
        "the proxy failed to answer this request; retry, and tell its operator if it persists",
        "server_error",
        "internal_error",
    )


@dataclass
class Ticket:
    """One request: its key, its body, when it started, the status to record, its place under
    the limits (released when it ends), and whether a stream took over ending it."""

    key: int
    started: float
    body: bytes = b""
    status: int = 500
    place: AsyncExitStack = field(default_factory=AsyncExitStack)
    streaming: bool = False


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
            "would spend your upstream's tokens. Give clients a key (--api-key-file PATH, one key a "
            "line, or RFPRM_SERVE__API_KEYS='[\"KEY\"]'; --api-key KEY shows in ps), listen on "
            "127.0.0.1, or pass --allow-no-auth (RFPRM_SERVE__ALLOW_NO_AUTH=true) on a network you trust"
        )


def create_app(settings: Settings, solver: ReasoningSolver | None = None) -> FastAPI:
    """The proxy app. Without a `solver`, one is built from `settings` with the PRM batched
    across requests (serve.batch_window_ms, serve.max_batch)."""
    limits = settings.serve
    admission = Admission(
        [k.get_secret_value() for k in limits.api_keys],
        limits.max_concurrent_per_key,
        limits.max_concurrent,
        limits.queue_wait_s,
    )
    check_exposure(settings)
    metrics = Metrics()

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

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; recorded as 499, not as a failure

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown paths and methods, as OpenAI-style errors too."""
        return APIError(
            exc.status_code, str(exc.detail), "invalid_request_error", "not_found" if exc.status_code == 404 else None
        ).response()

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        """A bug of the proxy's (the traceback is logged): still an error object."""
        return internal_error().response()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not limits.metrics_public:
            admission.identify(request.headers.get("authorization"))
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        admission.identify(request.headers.get("authorization"))
        return {
            "object": "list",
            "data": [{"id": limits.model_name, "object": "model", "created": 0, "owned_by": "rfprm-tts"}],
        }

    @asynccontextmanager
    async def admitted(request: Request) -> AsyncIterator[Ticket]:
        """Auth, then the body (read before the request takes a place, so a client that sends
        half a body holds none), then a place under the limits. On exit the request is ended,
        unless its ticket was handed to a stream (which ends it when it ends)."""
        ticket = Ticket(admission.identify(request.headers.get("authorization")), time.perf_counter())
        metrics.start()
        try:
            ticket.body = await read_body(request, limits.max_body_bytes, limits.body_timeout_s)
            await ticket.place.enter_async_context(admission.place(ticket.key))
            yield ticket
        except ClientGone:
            ticket.status = 499
            metrics.cancelled.inc()
            raise
        except APIError as exc:
            ticket.status = exc.status
            raise
        finally:
            if not ticket.streaming:
                await finish(ticket)

    async def finish(ticket: Ticket) -> None:
        """The request is over: free its place and record it."""
        await ticket.place.aclose()
        metrics.finish(ticket.status, time.perf_counter() - ticket.started)

    async def parsed(parse: Callable[[], Any], size: int) -> Any:
        """`parse()`, on a worker thread when the body is big enough to hold up the event loop."""
        return await asyncio.to_thread(parse) if size > PARSE_ON_LOOP_BYTES else parse()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        async with admitted(request) as ticket:
            budget_header = request.headers.get("x-rfprm-token-budget")
            call = await parsed(lambda: parse_chat(ticket.body, settings, budget_header), len(ticket.body))
            if call.chat.stream:
                ticket.streaming = True
                return StreamingResponse(stream(call, ticket), media_type="text/event-stream")
            body = await until_done_or_disconnect(asyncio.ensure_future(solve(call)), request)
            ticket.status = 200
            return JSONResponse(body)

    async def guarded(request: Request, work: Callable[[bytes], Any]) -> Response:
        """A JSON endpoint whose `work(body)` runs on a worker thread (it parses and scores)
        and returns the JSON to answer."""
        async with admitted(request) as ticket:
            try:
                body = await asyncio.to_thread(work, ticket.body)
            except ValueError as exc:
                raise invalid(f"invalid request: {exc}", "invalid_body") from None
            ticket.status = 200
            return JSONResponse(body)

    @app.post("/v1/prm/score")
    async def prm_score(request: Request) -> Response:
        def work(raw: bytes) -> dict[str, Any]:
            items = parse_model(ScoreRequest, raw).items
            results = score_responses(
                solver.scorer,
                [(i.question, i.steps or i.response) for i in items],
                settings.step_separator,
                settings.prm.alpha,
            )
            return {
                "results": [asdict(r) for r in results],
                "usage": {"prm_tokens": sum(r.prm_tokens for r in results)},
            }

        return await guarded(request, work)

    @app.post("/v1/rewards/openrlhf")
    async def openrlhf_rewards(request: Request) -> Response:
        return await guarded(
            request,
            lambda raw: openrlhf.answer(
                parse_model(openrlhf.OpenRLHFRequest, raw), RewardModel(settings, scorer=solver.scorer)
            ),
        )

    async def solve(
        call: ChatCall, request_id: str | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> dict[str, Any]:
        """The search's answer as a completion body. Every failure is an APIError: the
        request's fault a 400, the upstream's a 502/504, the proxy's own a 500 (logged)."""
        chat = call.chat
        try:
            messages = to_messages(chat.messages)
        except ConfigError as exc:
            raise invalid(f"invalid messages: {exc}", "invalid_messages", "messages") from None
        try:
            request_settings = settings.with_overrides(**chat.sampling_overrides())
            result = await solver.run(messages, call.strategy, request_settings, on_progress)
        except ConfigError as exc:
            raise invalid(str(exc), "invalid_rfprm_option") from None
        except GenerationError as exc:
            metrics.upstream_errors.inc()
            raise upstream_error(exc) from None
        except PRMInputTooLongError as exc:
            raise invalid(
                f"the question and its answers do not fit this server's PRM: {exc}",
                "context_length_exceeded",
                "messages",
            ) from None
        except Exception:  # a bug, or an RfprmError the request did not cause
            log.exception("request %s failed", request_id)
            raise internal_error() from None
        metrics.record_usage(result)
        return completion_body(result, chat, limits.model_name, request_id or f"chatcmpl-{uuid.uuid4().hex}")

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

    async def stream(call: ChatCall, ticket: Ticket) -> AsyncIterator[str]:
        """The role chunk at once, a progress chunk per round of the search, then the answer
        or an error event, then [DONE], always. A client that goes away cancels the search
        (Starlette cancels this generator); the stream ends the admitted request's ticket."""
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        head = chunk_head(request_id, int(time.time()), limits.model_name)
        events: asyncio.Queue[Progress] = asyncio.Queue()
        work = asyncio.ensure_future(solve(call, request_id, events.put_nowait))
        try:
            yield delta_chunk(head, {"role": "assistant", "content": ""})
            while not work.done() or not events.empty():
                next_event = asyncio.ensure_future(events.get())
                await asyncio.wait({work, next_event}, return_when=asyncio.FIRST_COMPLETED)
                if next_event.done():
                    yield progress_chunk(head, next_event.result())
                else:
                    next_event.cancel()
            include_usage = bool((call.chat.stream_options or {}).get("include_usage"))
            failed: APIError | None = None
            try:
                ending = answer_chunks(work.result(), include_usage)
                ticket.status = 200
            except APIError as exc:
                failed = exc
            except Exception:  # a bug: the stream has begun, so it ends with the error in it
                log.exception("request %s failed", request_id)
                failed = internal_error()
            if failed is not None:
                ticket.status = failed.status
                ending = [sse({"error": failed.payload()})]
            for event in ending:
                yield event
            yield DONE
        except asyncio.CancelledError:
            metrics.cancelled.inc()
            ticket.status = 499
            raise
        finally:
            work.cancel()
            await finish(ticket)

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
