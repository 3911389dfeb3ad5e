"""The data that flows through a solve: steps, trajectories, candidates, usage, results.

All are pydantic models, so a result is JSON-serialisable with `result.model_dump_json()`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from rfprm_tts.text import DEFAULT_STEP_SEPARATOR, extract_answer, split_steps, split_thinking

# How the CLI and the page show a solve that found no answer.
NO_ANSWER = "(none found)"
Writer = Literal["draft", "target"]  # the model that wrote a step: settings.draft, or the generator
Role = Literal["target", "draft", "selector"]  # the model a generation request went to (settings.<role>)
Model = Literal["target", "draft", "selector", "prm"]  # a model whose compute a solve counts


class TopLogprob(TypedDict):
    """A likely token at one position: its text, UTF-8 bytes and log-probability (OpenAI's shape)."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    """A sampled token, and the `sampling.top_logprobs` most likely tokens at its position."""

    top_logprobs: list[TopLogprob]


def top_logprob(token: str, logprob: float) -> TopLogprob:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8", "replace"))}


class Step(BaseModel):
    """One reasoning step. `part` says where it came from: a plain response, the
    `<think>` block of a reasoning model, or the final answer that follows it."""

    text: str
    part: Literal["response", "thinking", "answer"] = "response"


class Trajectory(BaseModel):
    """A question and one generated response, cut into the steps a PRM scores."""

    question: str
    text: str
    thinking: str | None = None
    final: str = ""
    steps: list[Step] = Field(default_factory=list)

    @classmethod
    def from_response(cls, question: str, text: str, separator: str = DEFAULT_STEP_SEPARATOR) -> Trajectory:
        """Cut a response into steps. With `<think>...</think>`, the steps are the thinking
        steps followed by the whole final answer as one last step (the ReasonFlux input)."""
        thinking, final = split_thinking(text)
        if thinking is None:
            steps = [Step(text=s) for s in split_steps(text, separator)]
        else:
            steps = [Step(text=s, part="thinking") for s in split_steps(thinking, separator)]
            if final:
                steps.append(Step(text=final, part="answer"))
        return cls(question=question, text=text, thinking=thinking, final=final, steps=steps)

    @property
    def step_texts(self) -> list[str]:
        return [step.text for step in self.steps]

    @property
    def ends_with_answer_step(self) -> bool:
        """The last step is the final answer after `<think>` (reasonflux weighs it apart)."""
        return bool(self.steps) and self.steps[-1].part == "answer"

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def answer(self) -> str | None:
        """The extracted final answer (last \\boxed{}, then fallbacks), or None; extracted once
        (a vote, a grade and the result all read it; a trajectory's text does not change)."""
        return extract_answer(self.text)


class Usage(BaseModel):
    """Compute spent by a solve. Tokens are as the backends reported them (prompt tokens
    include prefixes re-sent to continue a partial answer). FLOPs are estimates,
    2 x parameters x tokens, present when the model's parameter count is known."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    probe_tokens: int = 0  # generated tokens that only probed for an answer (early exit): counted in generated_tokens
    # generated tokens of streamed samples past the point where their thinking stopped (made while the
    # deciding probe ran, before the stream closed): counted in generated_tokens
    overrun_tokens: int = 0
    prm_tokens: int = 0
    generator_calls: int = 0
    prm_calls: int = 0
    # a speculative search's draft model (settings.draft), counted apart from the generator's figures
    draft_prompt_tokens: int = 0
    draft_generated_tokens: int = 0
    draft_calls: int = 0
    # genselect's selector model (settings.selector), apart; a selector that is the generator counts as it
    selector_prompt_tokens: int = 0
    selector_generated_tokens: int = 0
    selector_calls: int = 0
    wall_time_s: float = 0.0
    generator_flops: float | None = None
    prm_flops: float | None = None
    draft_flops: float | None = None
    selector_flops: float | None = None
    token_budget: int | None = None  # the solve's token budget, when it had one
    budget_counts: Literal["generated", "total"] | None = None  # what the budget counted
    budget_exhausted: bool = False  # the search stopped short or sent fewer samples for it

    def count_generation(self, by: Role, prompt_tokens: int, generated_tokens: int, calls: int) -> None:
        """A generation request's cost, on the counters of the model that served it."""
        if by == "draft":
            self.draft_prompt_tokens += prompt_tokens
            self.draft_generated_tokens += generated_tokens
            self.draft_calls += calls
        elif by == "selector":
            self.selector_prompt_tokens += prompt_tokens
            self.selector_generated_tokens += generated_tokens
            self.selector_calls += calls
        else:
            self.prompt_tokens += prompt_tokens
            self.generated_tokens += generated_tokens
            self.generator_calls += calls

    @property
    def side_generated_tokens(self) -> int:
        """Tokens the draft and the selector generated: spent as the generator's are."""
        return self.draft_generated_tokens + self.selector_generated_tokens

    def estimate_flops(self, parameters: Mapping[Model, int | None]) -> None:
        """2 x parameters x tokens for each model whose parameter count is known (None: unknown)."""

        def flops(model: Model, tokens: int) -> float | None:
            count = parameters.get(model)
            return 2.0 * count * tokens if count else None

        self.generator_flops = flops("target", self.prompt_tokens + self.generated_tokens)
        self.prm_flops = flops("prm", self.prm_tokens)
        self.draft_flops = flops("draft", self.draft_prompt_tokens + self.draft_generated_tokens)
        self.selector_flops = flops("selector", self.selector_prompt_tokens + self.selector_generated_tokens)


class Candidate(BaseModel):
    """One sampled trajectory with its PRM step scores and aggregate score.

    `state` says what a search may do with it: "open" (a partial answer to continue),
    "finished" (a complete answer), or "failed" (generation failed, or the PRM could not score
    it: `error` says why; it never wins). A trajectory longer than the PRM's context has
    `prm_note` saying how it was scored (prm.overflow); the steps left unscored have None scores.
    """

    trajectory: Trajectory
    step_scores: list[float | None] = Field(default_factory=list)
    score: float | None = None
    prm_note: str | None = None
    finish_reason: str | None = None
    generated_tokens: int | None = None
    tokens_estimated: bool = False  # generated_tokens is a share of a response's total
    logprobs: list[float] | None = None  # of the generated tokens, when generator.logprobs is on
    step_models: list[Writer] | None = None  # who wrote each step, in a speculative search
    token_logprobs: list[TokenLogprob] | None = None  # the same tokens as text (OpenAI's shape), for a whole sample
    tool_calls: list[dict[str, Any]] | None = None  # the tool calls the sample ended with (OpenAI's shape)
    error: str | None = None

    @property
    def answer(self) -> str | None:
        return self.trajectory.answer

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def state(self) -> Literal["open", "finished", "failed"]:
        if self.error is not None:
            return "failed"
        return "open" if self.finish_reason == "partial" else "finished"


class SearchNode(BaseModel):
    """One candidate of a search tree (`SolveResult.tree`): the text it added to its parent
    (None: the question), its scores (aggregate, and its last step's), its state, its answer
    when finished, and whether it lies on the chosen answer's path."""

    id: int
    parent: int | None
    text: str
    score: float | None = None
    step_score: float | None = None
    state: Literal["open", "finished", "failed"]
    answer: str | None = None
    generated_tokens: int | None = None
    error: str | None = None
    chosen: bool = False
    written_by: Writer | None = None  # in a speculative search: the model that wrote this node's text
    visits: int | None = None  # in a tree search (mcts): the node's visits and mean backed-up value
    value: float | None = None


class SolveResult(BaseModel):
    """What `solve()` returns: the answer, the chosen candidate, every candidate ranked best
    first (failed ones last), the compute spent, and the strategy that chose: its parameters
    (with the aggregation used), the details of how it decided (votes, rounds, ...), and the
    search tree: every candidate made on the way (`rfprm view` draws it).
    `question` is what the PRM scored (the last user message); `messages` what the generator
    saw."""

    question: str
    messages: list[dict[str, Any]] = Field(default_factory=list)
    answer: str | None
    best: Candidate | None
    candidates: list[Candidate]
    usage: Usage
    strategy: str
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    tree: list[SearchNode] = Field(default_factory=list)

    def params_text(self, hide: Collection[str] = ()) -> str:
        """The strategy's parameters as `name=value, ...` on one line (strings quoted, so a prompt's
        newlines show as `\\n`), leaving out `hide` and the unset token budget."""
        unset = self.strategy_params.get("token_budget") is None
        return ", ".join(
            f"{k}={json.dumps(v) if isinstance(v, str) else v}"
            for k, v in self.strategy_params.items()
            if v is not None and k not in hide and not (unset and k == "budget_counts")
        )
