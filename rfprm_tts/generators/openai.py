"""Generator backend for any OpenAI-compatible endpoint, on the official `openai` SDK.

Retries follow the shared policy of rfprm_tts.runtime.http_retry. Servers that ignore or reject `n`
(llama.cpp, some proxies) get parallel single requests, each with a seed of its own. A server
is taken to reject `n` only when a 400 for n > 1 is followed by single requests that succeed
(a 400 for the request's content fails them too), and only for N_REJECTED_TTL_S: one request
never changes how every later request is sent.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import openai
from openai import AsyncOpenAI, AsyncStream

from rfprm_tts.chat import Message, render, render_plain
from rfprm_tts.errors import ConfigError, GenerationError, MalformedResponseError
from rfprm_tts.generators.base import Completion, GenerationRequest, GenerationResult, Piece
from rfprm_tts.generators.openai_shapes import (
    chat_message,
    choice_logprobs,
    choice_stop_reason,
    choice_text,
    choice_token_logprobs,
    choice_tool_calls,
    member,
    share_tokens,
    text_or_none,
)
from rfprm_tts.runtime.http_retry import Replicas, describe_failure, retrying
from rfprm_tts.settings import GeneratorSettings, Sampling, without_passwords
from rfprm_tts.text import THINK_CLOSE

log = logging.getLogger(__name__)

T = TypeVar("T")
N_REJECTED_TTL_S = 600.0  # how long a server that rejected n > 1 gets single requests, before n is tried again


class OpenAIGenerator:
    """Samples completions from an OpenAI-compatible server (chat or completions API)."""

    def __init__(self, settings: GeneratorSettings, section: str = "generator"):
        """`section`: the settings it was built from ("generator", "draft", "selector"), which its
        errors name."""
        self.section = section
        if not settings.base_url:
            raise ConfigError(
                "the openai backend needs a base URL: set generator.base_url "
                "(RFPRM_GENERATOR__BASE_URL=http://host:port/v1, or --base-url)"
            )
        self.settings = settings
        self.base_url = settings.base_url
        key = settings.api_key.get_secret_value() if settings.api_key else "EMPTY"
        self.replicas = Replicas([settings.base_url, *settings.replicas], settings.replica_cooldown_s)
        self.clients = [
            AsyncOpenAI(base_url=url, api_key=key, timeout=settings.timeout_s, max_retries=0)
            for url in self.replicas.urls
        ]
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._n_rejected_until = [0.0] * len(self.replicas.urls)  # per server: monotonic time
        self.num_parameters = settings.num_parameters
        self.sampling = settings.sampling()
        self.tokenizer = None  # formats completions prompts; weighs a response's token split
        if settings.tokenizer:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(settings.tokenizer)

    def with_model(self, model: str) -> OpenAIGenerator:
        """This generator asking its servers for another model by name: the same clients,
        request limit and server state (the proxy's passthrough). Close the original, not this."""
        view = copy.copy(self)
        view.settings = self.settings.model_copy(update={"model": model})
        return view

    def completion_prompt(self, messages: list[Message], prefix: str = "") -> str:
        """The completions-API prompt: the chat template applied locally when a tokenizer is
        set (so a prefix is continued inside the assistant turn), else the raw contents."""
        if self.tokenizer is None:
            return render_plain(messages, prefix)
        return render(self.tokenizer, messages, prefix)

    async def _tokenizing(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)`, on a worker thread when a tokenizer is set: tokenizing a long prompt
        or answer takes long enough to hold up every other request on the event loop."""
        return await asyncio.to_thread(work, *args) if self.tokenizer is not None else work(*args)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.n < 1:
            raise ConfigError(f"n must be >= 1, got {request.n}")
        result = GenerationResult()
        sampling = request.resolved(self.sampling)
        server = self.replicas.order(request.question)[0]  # the server the request goes to first
        rejected_n = False
        if request.n > 1 and time.monotonic() >= self._n_rejected_until[server]:
            try:
                result.completions = await self._request(request, sampling, request.n, sampling.seed, result)
            except GenerationError as exc:
                if not isinstance(exc.__cause__, openai.BadRequestError):
                    return self._all_failed(request.n, exc, result)
                rejected_n = True
            if 0 < len(result.completions) < request.n:
                log.info(
                    "%s ignored n (%d of %d); topping up",
                    self.replicas.urls[server],
                    len(result.completions),
                    request.n,
                )
        got = len(result.completions)
        if got < request.n:
            # the samples already drawn used seeds seed .. seed + got - 1 (or one seed for all of
            # them, on a server that honours n): each single request gets a seed of its own
            seeds = [None if sampling.seed is None else sampling.seed + i for i in range(got, request.n)]
            outcomes = await asyncio.gather(
                *(self._request(request, sampling, 1, seed, result) for seed in seeds), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, GenerationError):
                    result.completions.append(Completion(text="", error=str(outcome)))
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    result.completions.extend(outcome)
        if rejected_n and any(c.error is None for c in result.completions):
            log.warning(
                "%s rejected n=%d but answers single requests; sending single requests for %.0f s",
                self.replicas.urls[server],
                request.n,
                N_REJECTED_TTL_S,
            )
            self._n_rejected_until[server] = time.monotonic() + N_REJECTED_TTL_S
        return result

    @property
    def takes_tools(self) -> bool:
        """Tools go over the chat API (the completions API has none)."""
        return self.settings.api == "chat"

    @property
    def stream_thinking(self) -> Literal["auto", "on", "off"]:
        return self.settings.stream_thinking

    @asynccontextmanager
    async def stream(self, request: GenerationRequest) -> AsyncIterator[AsyncIterator[Piece]]:
        """One sample as the server generates it, on the question's first server (opening the
        stream is retried; a stream cut midway is not). Leaving the block closes the
        connection: vLLM then aborts the request, so nothing is generated past that point.
        Opening it takes a place under generator.max_concurrency; the open stream holds none, so
        the probes beside it are never queued behind streams. Reasoning split out by the server
        (`reasoning_content`) is put back as thinking text closed by </think>, as in
        `choice_text`."""
        sampling = request.resolved(self.sampling)
        server = self.replicas.order(request.question)[0]
        s, attempts = self.settings, 0
        try:
            async for attempt in retrying(s.max_retries, s.backoff_s, s.backoff_max_s):
                with attempt:
                    attempts += 1
                    async with self._semaphore:
                        response = await self._send(
                            self.clients[server], request, sampling, 1, sampling.seed, stream=True
                        )
        except openai.OpenAIError as exc:
            raise GenerationError(self._failure(server, request, exc, attempts)) from exc
        try:
            yield self._pieces(response, server)
        finally:
            await response.close()

    async def _pieces(self, response: Any, server: int) -> AsyncIterator[Piece]:
        """The stream's chunks as pieces, token counts from the server's running usage
        (vLLM's continuous_usage_stats), else one per logprob, else one per chunk with text."""
        counted, finished, reasoned = 0, False, False
        try:
            async for chunk in response:
                usage = member(chunk, "usage")
                total, prompt = member(usage, "completion_tokens"), member(usage, "prompt_tokens")
                prompt = prompt if isinstance(prompt, int) else None
                choices = member(chunk, "choices")
                for choice in choices if isinstance(choices, list) else []:
                    delta = member(choice, "delta")  # chat; completions stream `text`
                    text = (member(delta, "content") if delta is not None else member(choice, "text")) or ""
                    if not isinstance(text, str):
                        raise MalformedResponseError(f"a chunk's text is not text (got {str(choice)[:200]!r})")
                    reasoning = member(delta, "reasoning_content") or member(delta, "reasoning")
                    if isinstance(reasoning, str) and reasoning:
                        text, reasoned = reasoning + text, True
                    elif reasoned and text:  # the reasoning ended: that was the close
                        text, reasoned = THINK_CLOSE + text, False
                    logprobs = choice_logprobs(choice)
                    if isinstance(total, int):
                        tokens = total - counted
                    else:
                        tokens = len(logprobs) if logprobs is not None else int(bool(text))
                    counted += tokens
                    finish_reason = text_or_none(member(choice, "finish_reason"))
                    finished = finished or finish_reason is not None
                    yield Piece(
                        text,
                        tokens,
                        finish_reason=finish_reason,
                        stop_reason=choice_stop_reason(choice),
                        prompt_tokens=prompt,
                    )
                if not choices and isinstance(total, int):  # the usage that ends the stream
                    yield Piece("", total - counted, prompt_tokens=prompt)
                    counted = total
        # a cut connection (the SDK raises APIConnectionError), a chunk not JSON or of the wrong shape
        except (openai.OpenAIError, ValueError, MalformedResponseError) as exc:
            if finished:  # the answer is whole; only its usage chunk was lost
                return
            raise GenerationError(describe_failure(exc, self.replicas.urls[server], 1, self.section)) from exc
        if not finished:
            raise GenerationError(
                without_passwords(
                    f"{self.replicas.urls[server]} ended a streamed answer before its finish reason (a cut "
                    "connection, or a server that does not stream); set generator.stream_thinking = 'off' to "
                    "send chunks instead"
                )
            )

    def _failure(self, server: int, request: GenerationRequest, exc: Exception, attempts: int) -> str:
        if request.prefix and self.settings.api == "chat" and isinstance(exc, openai.BadRequestError):
            return cannot_continue(self.replicas.urls[server], exc)
        return describe_failure(exc, self.replicas.urls[server], attempts, self.section)

    def _all_failed(self, n: int, exc: GenerationError, result: GenerationResult) -> GenerationResult:
        result.completions = [Completion(text="", error=str(exc)) for _ in range(n)]
        return result

    async def _request(
        self, request: GenerationRequest, sampling: Sampling, n: int, seed: int | None, result: GenerationResult
    ) -> list[Completion]:
        """One logical request (with retries), on the question's server, else the next one
        that answers (generator.replicas). Adds its usage to `result`."""
        *others, last = self.replicas.order(request.question)
        for server in others:
            try:
                return await self._request_on(server, request, sampling, n, seed, result)
            except GenerationError as exc:
                if isinstance(exc.__cause__, openai.BadRequestError):
                    raise  # a request no server would take
                self.replicas.failed(server)
                log.warning("%s; trying the next server", exc)
        return await self._request_on(last, request, sampling, n, seed, result)

    async def _request_on(
        self,
        server: int,
        request: GenerationRequest,
        sampling: Sampling,
        n: int,
        seed: int | None,
        result: GenerationResult,
    ) -> list[Completion]:
        attempts = 0
        s = self.settings
        try:
            async for attempt in retrying(s.max_retries, s.backoff_s, s.backoff_max_s):
                with attempt:
                    attempts += 1
                    async with self._semaphore:
                        response = await self._send(self.clients[server], request, sampling, n, seed)
                    completions = await self._parse(response, result, sampling.logprobs)
        except (openai.OpenAIError, MalformedResponseError) as exc:
            raise GenerationError(self._failure(server, request, exc, attempts)) from exc
        finally:
            result.calls += 1
        return completions

    async def _send(
        self,
        client: AsyncOpenAI,
        request: GenerationRequest,
        sampling: Sampling,
        n: int,
        seed: int | None,
        stream: bool = False,
    ) -> Any:
        """Posts the request's JSON body through the SDK's client (its auth, headers, timeout
        and errors) but not through its typed models: the response comes back as the JSON the
        server sent (a stream: each chunk's JSON), read by openai_shapes. Checking the body
        against the SDK's parameter types and building its response models, objects read once,
        was half of solve()'s client CPU per question (benchmarks/results/overhead_cpu.md)."""
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "n": n, "temperature": sampling.temperature, "top_p": sampling.top_p}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if seed is not None:
            body["seed"] = seed
        if sampling.logprobs and s.api == "chat":
            body["logprobs"] = True
            if sampling.top_logprobs:
                body["top_logprobs"] = sampling.top_logprobs
        elif sampling.logprobs:  # the completions API: logprobs=k is the sampled token and the top k
            body["logprobs"] = max(1, sampling.top_logprobs)
        if s.api == "completions":
            body["prompt"] = await self._tokenizing(self.completion_prompt, request.messages, request.prefix)
            body["max_tokens"] = sampling.max_tokens
        else:
            messages = [chat_message(m) for m in request.messages]
            if request.prefix:
                # vLLM continues the last assistant message instead of opening a new one.
                messages.append({"role": "assistant", "content": request.prefix})
            body["messages"] = messages
            body["max_completion_tokens"] = sampling.max_tokens
            if request.json_format is not None:
                body["response_format"] = request.json_format.response_format
            if request.tools is not None:  # as the client gave them
                body["tools"] = request.tools.tools
                if request.tools.choice is not None:
                    body["tool_choice"] = request.tools.choice
                if request.tools.parallel is not None:
                    body["parallel_tool_calls"] = request.tools.parallel
        body.update(s.extra_body)
        if stream:  # usage in every chunk where the server can (vLLM), else at the end
            body["stream"] = True
            body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        if request.prefix and s.api == "chat":
            body.update(continue_final_message=True, add_generation_prompt=False)
        path = "/completions" if s.api == "completions" else "/chat/completions"
        try:
            response = await client.post(
                path,
                body=body,
                cast_to=object,
                options={"security": {"bearer_auth": True}},
                stream=stream,
                stream_cls=AsyncStream[object],
            )
            # a body whose content type does not say JSON comes back as its text: read it as JSON
            return json.loads(response) if isinstance(response, str) else response
        except ValueError as exc:  # json.loads (the SDK's or ours) on a body that is not JSON
            raise MalformedResponseError(f"response body is not valid JSON ({exc})") from exc

    async def _parse(self, response: Any, result: GenerationResult, tokens_asked: bool) -> list[Completion]:
        choices = member(response, "choices")
        if not isinstance(choices, list) or not choices:
            raise MalformedResponseError(f"response has no completion choices (got {str(response)[:200]!r})")
        completions = []
        for choice in choices:
            text = choice_text(choice)
            tool_calls = choice_tool_calls(choice)
            if text is None and tool_calls:
                text = ""
            if not isinstance(text, str):
                raise MalformedResponseError(f"a choice has no text (got {str(choice)[:200]!r})")
            completions.append(
                Completion(
                    text=text,
                    finish_reason=text_or_none(member(choice, "finish_reason")),
                    stop_reason=choice_stop_reason(choice),
                    logprobs=choice_logprobs(choice),
                    token_logprobs=choice_token_logprobs(choice) if tokens_asked else None,
                    tool_calls=tool_calls,
                )
            )
        usage = member(response, "usage")
        if usage is not None:
            prompt, generated = member(usage, "prompt_tokens"), member(usage, "completion_tokens")
            if not all(count is None or (isinstance(count, int) and count >= 0) for count in (prompt, generated)):
                raise MalformedResponseError(f"usage counts are not whole numbers (got {str(usage)[:200]!r})")
            result.prompt_tokens += prompt or 0
            result.generated_tokens += generated or 0
            if generated is not None:
                await self._tokenizing(share_tokens, completions, generated, self.tokenizer)
        return completions


def cannot_continue(url: str, exc: openai.BadRequestError) -> str:
    """A chat server that refused to continue a partial answer: what else would."""
    return without_passwords(
        f"{url} refused to continue a partial answer (HTTP 400: {exc.message}); over chat that takes vLLM's "
        "continue_final_message. Set generator.api = 'completions' (and generator.tokenizer for the chat "
        "template) if the server has /v1/completions, or leave out what continues answers: early exit and "
        "thinking budgets (early_exit, min/max_thinking_tokens, finish_first) and step-level strategies"
    )
