"""The generator protocol: what every backend (HTTP, transformers, vLLM) provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class GenerationRequest:
    """Sample `n` continuations of the answer to `question`.

    `prefix` is a partial assistant answer to continue (no second generation prompt);
    `stop` and `max_tokens` override the backend's defaults for this request (a step-level
    search stops at the step separator). Sampling temperature etc. are backend settings.
    """

    question: str
    n: int = 1
    prefix: str = ""
    stop: list[str] | None = None
    max_tokens: int | None = None


@dataclass
class Completion:
    """One sampled continuation. A failed sample has `error` set and empty text."""

    text: str
    finish_reason: str | None = None
    tokens: int | None = None  # generated tokens, when the backend reports them per sample
    error: str | None = None
    stop_reason: str | None = None  # the stop string that ended it, when the backend says
    logprobs: list[float] | None = None  # per generated token, when asked (generator.logprobs)


@dataclass
class GenerationResult:
    """The completions of one request and what they cost, as the backend reported it."""

    completions: list[Completion] = field(default_factory=list)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    calls: int = 0


@runtime_checkable
class Generator(Protocol):
    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def aclose(self) -> None: ...
