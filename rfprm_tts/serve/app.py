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
answer. `n` asks for that many choices with distinct answers, the chosen one first. The
request's `model` picks a route (routes.py): the default `serve.model_name`, or one of
`serve.routes` with its own upstream, PRM, strategy and budget.

With `stream: true` the response starts at once: a role chunk, then a progress chunk after
every generation round and PRM call of the search (`choices: []`, and an `rfprm` object
`{"event": "progress", "round", "phase", "candidates", "open", "finished", "best_score",
"generated_tokens", "prm_tokens", "elapsed_s"}`, which clients that do not know it skip),
then the chosen answer as standard content chunks.

Beside chat completions, behind the same keys and PRM batching: `POST /v1/prm/score` (the PRM
scores of given responses, see ScoreRequest) and `POST /v1/rewards/openrlhf` (OpenRLHF's
remote reward request; rfprm_tts.rewards.openrlhf).

The rooms, as vLLM's entrypoints split them: protocol.py is the wire format of requests (models,
validation; shapes.py for tools and response_format), errors.py the error objects, responses.py
the answers (bodies and stream events), service.py runs a parsed request without HTTP
(ProxyService), and this module is the router: each route authenticates, reads the body, takes a
place under the limits (admission.py), parses, calls the service and formats its answer (JSON,
or a stream of events).

Hostile clients are expected: admission.py reads a body (time and size limits) before the
request takes a place under the per-key and overall limits, and bounds the wait for one;
protocol.py validates everything a request carries before any work starts (a request's content
is a 400, never a 500); errors are OpenAI-style objects that tell the client what it can act
on, the operator's detail going to the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rfprm_tts.rewards.openrlhf import OpenRLHFRequest
from rfprm_tts.search.progress import Progress
from rfprm_tts.serve.admission import Admission, ClientGone, check_exposure, read_body
from rfprm_tts.serve.errors import APIError
from rfprm_tts.serve.metrics import Metrics
from rfprm_tts.serve.protocol import ChatCall, ScoreRequest, parse_chat, parse_model
from rfprm_tts.serve.responses import DONE, answer_chunks, chunk_head, delta_chunk, progress_chunk, sse
from rfprm_tts.serve.service import ProxyService, internal_error
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver

log = logging.getLogger(__name__)

# Bodies larger than this are parsed and validated on a worker thread: a megabyte of JSON
# takes tens of milliseconds, which every other request on the event loop would wait for.
PARSE_ON_LOOP_BYTES = 64 * 1024

T = TypeVar("T")


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


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody reads it; recorded as 499, not as a failure


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, as OpenAI-style errors too."""
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else None
    return APIError(exc.status_code, str(exc.detail), "invalid_request_error", code).response()


async def bug(request: Request, exc: Exception) -> Response:
    """A bug of the proxy's (the traceback is logged): still an error object."""
    return internal_error().response()


class Router:
    """The proxy's routes over a ProxyService: auth, body, limits and formatting."""

    def __init__(self, settings: Settings, solver: ReasoningSolver | None = None):
        self.settings = settings
        self.limits = settings.serve
        self.admission = Admission(
            [k.get_secret_value() for k in self.limits.api_keys],
            self.limits.max_concurrent_per_key,
            self.limits.max_concurrent,
            self.limits.queue_wait_s,
        )
        check_exposure(settings)
        self.metrics = Metrics()
        self.service = ProxyService(settings, solver, self.metrics)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        await self.service.start()
        yield
        await self.service.aclose()

    def app(self) -> FastAPI:
        app = FastAPI(title="rfprm-tts proxy", lifespan=self.lifespan)
        app.add_exception_handler(APIError, api_error)
        app.add_exception_handler(ClientGone, client_gone)
        app.add_exception_handler(StarletteHTTPException, http_error)
        app.add_exception_handler(Exception, bug)
        app.add_api_route("/health", self.health, methods=["GET"])
        app.add_api_route("/metrics", self.prometheus, methods=["GET"])
        app.add_api_route("/v1/models", self.models, methods=["GET"])
        app.add_api_route("/v1/models/{model:path}", self.model, methods=["GET"])
        app.add_api_route("/v1/chat/completions", self.chat_completions, methods=["POST"])
        app.add_api_route("/v1/prm/score", self.prm_score, methods=["POST"])
        app.add_api_route("/v1/rewards/openrlhf", self.openrlhf_rewards, methods=["POST"])
        return app

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def prometheus(self, request: Request) -> Response:
        if not self.limits.metrics_public:
            self.admission.identify(request.headers.get("authorization"))
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def models(self, request: Request) -> dict[str, Any]:
        """The routes, the default first (a passed-through name is not listed: any name is)."""
        self.admission.identify(request.headers.get("authorization"))
        return {"object": "list", "data": [model_card(name) for name in self.service.routes.names]}

    async def model(self, model: str, request: Request) -> dict[str, Any]:
        self.admission.identify(request.headers.get("authorization"))
        self.service.routes.check(model)
        return model_card(model)

    @asynccontextmanager
    async def admitted(self, request: Request) -> AsyncIterator[Ticket]:
        """Auth, then the body (read before the request takes a place, so a client that sends
        half a body holds none), then a place under the limits. On exit the request is ended,
        unless its ticket was handed to a stream (which ends it when it ends)."""
        ticket = Ticket(self.admission.identify(request.headers.get("authorization")), time.perf_counter())
        self.metrics.start()
        try:
            ticket.body = await read_body(request, self.limits.max_body_bytes, self.limits.body_timeout_s)
            await ticket.place.enter_async_context(self.admission.place(ticket.key))
            yield ticket
        except ClientGone:
            ticket.status = 499
            self.metrics.cancelled.inc()
            raise
        except APIError as exc:
            ticket.status = exc.status
            raise
        finally:
            if not ticket.streaming:
                await self.finish(ticket)

    async def finish(self, ticket: Ticket) -> None:
        """The request is over: free its place and record it."""
        await ticket.place.aclose()
        self.metrics.finish(ticket.status, time.perf_counter() - ticket.started)

    async def chat_completions(self, request: Request) -> Response:
        async with self.admitted(request) as ticket:
            budget_header = request.headers.get("x-rfprm-token-budget")
            body = ticket.body
            call = await parsed(lambda: parse_chat(body, self.service.routes, budget_header), len(body))
            if call.chat.stream:
                ticket.streaming = True
                return StreamingResponse(self.stream(call, ticket), media_type="text/event-stream")
            answer = await self.until_done_or_disconnect(asyncio.ensure_future(self.service.chat(call)), request)
            ticket.status = 200
            return JSONResponse(answer)

    async def prm_score(self, request: Request) -> Response:
        return await self.guarded(request, lambda raw: self.service.score(parse_model(ScoreRequest, raw)))

    async def openrlhf_rewards(self, request: Request) -> Response:
        return await self.guarded(request, lambda raw: self.service.openrlhf(parse_model(OpenRLHFRequest, raw)))

    async def guarded(self, request: Request, work: Callable[[bytes], dict[str, Any]]) -> Response:
        """A JSON endpoint whose `work(body)` runs on a worker thread (it parses and scores)
        and returns the JSON to answer."""
        async with self.admitted(request) as ticket:
            answer = await asyncio.to_thread(work, ticket.body)
            ticket.status = 200
            return JSONResponse(answer)

    async def until_done_or_disconnect(self, work: asyncio.Future[T], request: Request) -> T:
        """The work's result; a client that goes away cancels its upstream work. The server
        says so with an http.disconnect message, so this waits for one instead of polling
        (polling each request 10 times a second cost a third of the proxy's CPU at 256 in
        flight: py-spy)."""

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        either: set[asyncio.Future[Any]] = {work, watcher}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not work.done():
            work.cancel()
            self.metrics.cancelled.inc()
            raise APIError(499, "client disconnected", "client_closed_request")
        return work.result()

    async def stream(self, call: ChatCall, ticket: Ticket) -> AsyncIterator[str]:
        """The role chunk at once, a progress chunk per round of the search, then the answer
        or an error event, then [DONE], always. A client that goes away cancels the search
        (Starlette cancels this generator); the stream ends the admitted request's ticket."""
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        head = chunk_head(request_id, int(time.time()), call.model)
        events: asyncio.Queue[Progress] = asyncio.Queue()
        work = asyncio.ensure_future(self.service.chat(call, request_id, events.put_nowait))
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
            self.metrics.cancelled.inc()
            ticket.status = 499
            raise
        finally:
            work.cancel()
            await self.finish(ticket)


def model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "rfprm-tts"}


async def parsed(parse: Callable[[], T], size: int) -> T:
    """`parse()`, on a worker thread when the body is big enough to hold up the event loop."""
    return await asyncio.to_thread(parse) if size > PARSE_ON_LOOP_BYTES else parse()


def create_app(settings: Settings, solver: ReasoningSolver | None = None) -> FastAPI:
    """The proxy app. Without a `solver`, one is built from `settings` with the PRM batched
    across requests (serve.batch_window_ms, serve.max_batch)."""
    return Router(settings, solver).app()
