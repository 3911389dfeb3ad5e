"""The generator protocol: what every backend (HTTP, transformers, vLLM) provides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from rfprm_tts.chat import Message, Prompt, question_of, to_messages
from rfprm_tts.settings import Sampling
from rfprm_tts.trajectory import TokenLogprob

ToolVote = Literal["hierarchical", "tool_name", "tool_args"]


@dataclass(frozen=True)
class ToolSpec:
    """The tools a request offers the model, as the client gave them (OpenAI's `tools`,
    `tool_choice`, `parallel_tool_calls`): a sample may then end in tool calls."""

    tools: list[dict[str, Any]]
    choice: str | dict[str, Any] | None = None
    parallel: bool | None = None
    vote: ToolVote = "hierarchical"  # how calls are voted on: rfprm_tts.search.tool_calls

    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools}


@dataclass(frozen=True)
class JSONFormat:
    """A request's structured output (OpenAI's `response_format` of type json_object or
    json_schema, kept as the client gave it): each answer is a JSON value, an object for
    json_object, valid against `schema` when one is given."""

    response_format: dict[str, Any]

    @property
    def schema(self) -> dict[str, Any] | None:
        spec = self.response_format.get("json_schema") or {}
        return spec.get("schema") if isinstance(spec, dict) else None


@dataclass(init=False)
class GenerationRequest:
    """Sample `n` continuations of the assistant's answer to a conversation.

    `messages` is the conversation (a question string is taken as one user message; it is
    kept as checked chat messages); `prefix` is a partial assistant answer to continue (no
    second generation prompt).
    `sampling` is how to sample (None: the backend's settings); `stop` adds stop strings and
    `max_tokens` lowers the token limit for this request (a step-level search stops at the
    step separator and gives a step what the answer has left). With `sampling.seed` set, the
    request's samples use seeds seed, seed + 1, ..., seed + n - 1. `tools`: what the model may
    call, `json_format`: the answer's JSON format (both for the openai backend's chat API).
    """

    messages: list[Message]
    n: int = 1
    prefix: str = ""
    stop: list[str] | None = None
    max_tokens: int | None = None
    sampling: Sampling | None = None
    tools: ToolSpec | None = None
    json_format: JSONFormat | None = None

    def __init__(
        self,
        messages: Prompt,
        n: int = 1,
        prefix: str = "",
        stop: list[str] | None = None,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
        tools: ToolSpec | None = None,
        json_format: JSONFormat | None = None,
    ) -> None:
        self.messages = to_messages(messages)
        self.n, self.prefix, self.stop, self.max_tokens, self.sampling = n, prefix, stop, max_tokens, sampling
        self.tools, self.json_format = tools, json_format

    @property
    def question(self) -> str:
        return question_of(self.messages)

    def resolved(self, default: Sampling) -> Sampling:
        """The sampling this request runs with: its own (else `default`), its stop strings
        added and its token limit applied."""
        sampling = self.sampling or default
        max_tokens = min(sampling.max_tokens, self.max_tokens or sampling.max_tokens)
        return sampling.model_copy(update={"stop": (*sampling.stop, *(self.stop or [])), "max_tokens": max_tokens})


@dataclass
class Completion:
    """One sampled continuation. A failed sample has `error` set and empty text."""

    text: str
    finish_reason: str | None = None
    tokens: int | None = None  # generated tokens, when the backend reports them per sample
    tokens_estimated: bool = False  # `tokens` is a share of a response's total (see openai_shapes.share_tokens)
    error: str | None = None
    stop_reason: str | None = None  # the stop string that ended it, when the backend says
    logprobs: list[float] | None = None  # per generated token, when asked (generator.logprobs)
    token_logprobs: list[TokenLogprob] | None = None  # the same tokens as text, in OpenAI's shape
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI's shape, when the sample ended calling tools


@dataclass
class GenerationResult:
    """The completions of one request and what they cost, as the backend reported it."""

    completions: list[Completion] = field(default_factory=list)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    calls: int = 0


@runtime_checkable
class Generator(Protocol):
    """A backend that samples completions. Optional: `num_parameters` (see SizedGenerator)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def aclose(self) -> None: ...


@dataclass
class Piece:
    """One piece of a streamed sample as it arrives. `tokens`: the generated tokens it holds
    (the server's running count where it sends one, else one per piece; the last piece
    corrects the sum to the server's total when the stream ends with usage). The last piece
    has `finish_reason`; `prompt_tokens` comes with usage, when the server sends it."""

    text: str
    tokens: int = 1
    finish_reason: str | None = None
    stop_reason: str | None = None
    prompt_tokens: int | None = None


@runtime_checkable
class StreamingGenerator(Generator, Protocol):
    """A generator that can stream one sample, so a caller can close it the moment it has
    seen enough (the server then stops generating). `stream_thinking`: when it is set to
    (generator.stream_thinking)."""

    @property
    def stream_thinking(self) -> Literal["auto", "on", "off"]: ...

    def stream(self, request: GenerationRequest) -> AbstractAsyncContextManager[AsyncIterator[Piece]]: ...


@runtime_checkable
class ToolCallingGenerator(Generator, Protocol):
    """A generator that can offer the model tools and ask for JSON answers
    (`GenerationRequest.tools`, `.json_format`); `takes_tools`: whether it is set up to."""

    @property
    def takes_tools(self) -> bool: ...


@runtime_checkable
class SizedGenerator(Generator, Protocol):
    """A generator that knows its parameter count, for FLOP estimates (None: unknown, as is
    a generator without the member: a solve then reports no generator FLOPs)."""

    @property
    def num_parameters(self) -> int | None: ...


@dataclass(frozen=True)
class SideModel:
    """A model a strategy asks besides the generator (the draft, the selector), and how it samples."""

    generator: Generator
    sampling: Sampling
    system_prompt: str | None = None  # of a side model asked with prompts of its own (the selector)
