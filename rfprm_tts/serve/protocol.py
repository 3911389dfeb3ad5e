"""The proxy's wire format, the requests' side: request models, their parsing and validation
(errors.py has the error objects, responses.py the answers' bodies and stream events).

Everything a client sends is checked here, before any work starts, so a request's content
gets a 400 naming the field at fault, never a 500: JSON nesting and number sizes are bounded,
strings must be valid Unicode (a lone surrogate cannot be encoded for the upstream or the
tokenizer), and `rfprm.params` is validated by the strategy's own parameter model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import JSONFormat, ToolSpec, ToolVote
from rfprm_tts.serve.errors import APIError, invalid
from rfprm_tts.serve.routes import RouteTable
from rfprm_tts.serve.shapes import FunctionTool, NamedToolChoice, ResponseFormat, tool_spec
from rfprm_tts.settings import Settings
from rfprm_tts.solver import check_whole_answers
from rfprm_tts.strategies.base import Strategy, build_strategy, settings_n, strategy_class

MAX_JSON_DEPTH = 32  # far deeper than any chat request; bounds every recursive walk after parsing
SEED_LIMIT = 2**63  # seeds are int64 upstream; the search adds the sample's index to it
_BUDGET_HEADER = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes '²'


class RfprmOptions(BaseModel):
    """Per-request search options (the body's `rfprm` object)."""

    model_config = ConfigDict(extra="forbid")
    strategy: str | None = None
    n: int | None = Field(None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    token_budget: int | None = Field(None, ge=1)
    budget_counts: Literal["generated", "total"] | None = None
    thinking_budget: int | None = Field(None, ge=1)
    return_candidates: bool = False
    tool_vote: ToolVote = "hierarchical"


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

    @property
    def answer(self) -> str | list[str]:
        """The response, or its steps (the validator gave the item exactly one)."""
        if self.steps is not None:
            return self.steps
        assert self.response is not None
        return self.response


class ScoreRequest(BaseModel):
    """`POST /v1/prm/score`: `{"items": [{"question": ..., "response": ...} or {"question": ...,
    "steps": [...]}]}`; the answer: `{"results": [{"step_scores", "scores" (every aggregation),
    "steps", "prm_note", "prm_tokens", "error"}], "usage": {"prm_tokens"}}`."""

    model_config = ConfigDict(extra="forbid")
    items: list[ScoreItem] = Field(min_length=1)


class ChatRequest(BaseModel):
    """The chat-completions fields the proxy reads; other fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, min_length=1, max_length=256)
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=SEED_LIMIT)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    rfprm: RfprmOptions = Field(default_factory=RfprmOptions)
    # Read only to refuse them (see `refuse_unhonoured`): a 200 without them would mislead.
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @property
    def token_limit(self) -> int | None:
        """The cap on each answer (max_completion_tokens, or the older max_tokens)."""
        return self.max_completion_tokens or self.max_tokens

    def sampling_overrides(self) -> dict[str, Any]:
        """The request's sampling fields, as per-solve overrides of the generator settings."""
        given = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "max_tokens": self.token_limit,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
            "logprobs": self.logprobs or None,
            "top_logprobs": self.top_logprobs or None,
        }
        return {f"generator__{name}": value for name, value in given.items() if value is not None}


@dataclass
class ChatCall:
    """A validated chat request: the route it asked for (its model name and settings), the
    strategy built for it, and the tools or JSON format it gives."""

    chat: ChatRequest
    model: str
    settings: Settings
    strategy: Strategy
    tools: ToolSpec | None = None
    json_format: JSONFormat | None = None


def load_json(body: bytes) -> Any:
    """The body as JSON, refusing what would make later steps fail: bad syntax, integers past
    Python's digit limit (a ValueError in json.loads), nesting deeper than MAX_JSON_DEPTH (a
    RecursionError past about 1,000 levels), and strings that are not valid Unicode."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise invalid(f"the body's JSON is nested more than {MAX_JSON_DEPTH} levels deep", "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and the int digit limit are ValueErrors
        raise invalid(f"the body is not valid JSON: {exc}", "invalid_json") from None
    check_values(data)
    return data


def check_values(data: Any) -> None:
    """Walk the parsed body (iteratively: no recursion for a hostile depth) and refuse nesting
    past MAX_JSON_DEPTH and strings that cannot be encoded as UTF-8 (lone surrogates, which
    JSON's \\ud800 escapes can produce), naming the field."""
    todo: list[tuple[str, Any, int]] = [("", data, 0)]
    while todo:
        where, value, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            raise invalid(f"the body's JSON is nested more than {MAX_JSON_DEPTH} levels deep", "invalid_json")
        if isinstance(value, dict):
            todo.extend((f"{where}.{key}" if where else str(key), item, depth + 1) for key, item in value.items())
            texts = list(value)  # the keys; the values are checked as they come off `todo`
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value))
            texts = []
        else:
            texts = [value] if isinstance(value, str) else []
        for text in texts:
            try:
                text.encode()
            except UnicodeEncodeError:
                raise invalid(
                    f"{where or 'the body'} is not valid Unicode (a lone surrogate escape)",
                    "invalid_unicode",
                    param=where or None,
                ) from None


def validation_error(exc: ValidationError) -> APIError:
    """A pydantic error as a 400 naming the first field at fault. A field that takes one of
    several shapes (tool_choice: a name or an object) is reported by the shape that got
    furthest into the value, without pydantic's tags for the shapes in the path."""
    errors = exc.errors()
    same_field = [e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]]
    first = max(same_field, key=lambda e: len(e["loc"]))  # the first of the deepest
    where = ".".join(str(p) for p in first["loc"] if not _union_tag(p))
    if not where:  # the body itself: not a JSON object
        return invalid(f"the body must be a JSON object: {first['msg']}", "invalid_body")
    return invalid(f"invalid field {where}: {first['msg']}", "invalid_field", param=where)


def _union_tag(part: str | int) -> bool:
    """pydantic's name for a member of a union in an error's path: `literal['a','b']`, `str`,
    `NamedToolChoice`; field names are lower-case identifiers."""
    return isinstance(part, str) and (not part.isidentifier() or part[:1].isupper() or part in UNION_TAGS)


UNION_TAGS = {"str", "int", "float", "bool", "list", "dict"}


def parse_chat(body: bytes, routes: RouteTable, budget_header: str | None = None) -> ChatCall:
    """A chat-completions body, validated within the server's limits, with the route its model
    names (a 404 for a name the proxy does not serve) and the strategy built for it."""
    try:
        chat = ChatRequest.model_validate(load_json(body))
    except ValidationError as exc:
        raise validation_error(exc) from None
    settings = routes.settings(chat.model)
    limits = settings.serve
    if not chat.tools and chat.tool_choice not in (None, "none", "auto"):
        raise invalid(
            "tool_choice asks for a tool call, but the request offers no tools; give tools, or leave tool_choice out",
            "unsupported_field",
            "tool_choice",
        )
    refuse_unhonoured(chat)
    if chat.top_logprobs and not chat.logprobs:
        raise invalid("top_logprobs needs logprobs: true", "invalid_logprobs", "top_logprobs")
    try:
        n = chat.rfprm.n or settings_n(settings, chat.rfprm.strategy)
    except ConfigError as exc:  # an unknown rfprm.strategy, where the server's n is left to the strategy
        raise invalid(str(exc), "invalid_rfprm_option", "rfprm.strategy") from None
    if chat.n > n:
        raise invalid(
            f"n={chat.n} asks for more choices than the search's {n} samples (rfprm.n); raise rfprm.n or lower n",
            "invalid_n",
            "n",
        )
    if n > limits.max_n:
        raise invalid(f"rfprm.n={n} is over this server's limit of {limits.max_n}", "n_too_large", "rfprm.n")
    max_tokens = chat.token_limit
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise invalid(
            f"max_tokens={max_tokens} is over this server's limit of {limits.max_tokens}",
            "max_tokens_too_large",
            "max_tokens",
        )
    tools = tool_spec(chat)
    rf = chat.response_format
    json_format = JSONFormat(rf.model_dump(exclude_none=True)) if rf is not None and rf.type != "text" else None
    # an agent sends reasoning_effort by habit; its budget would turn on thinking controls, which tools exclude
    effort = None if tools or json_format else chat.reasoning_effort
    strategy = request_strategy(chat.rfprm, settings, n, budget_header, effort)
    if tools is not None or json_format is not None:
        field = "tools" if tools is not None else "response_format"
        try:
            check_whole_answers(strategy)
        except ConfigError as exc:
            raise invalid(str(exc), f"invalid_{field}", field) from None
    if chat.logprobs:
        try:
            check_whole_answers(strategy, "logprobs (the chosen sample's tokens)")
        except ConfigError as exc:
            raise invalid(str(exc), "invalid_logprobs", "logprobs") from None
    return ChatCall(chat, chat.model or routes.default, settings, strategy, tools, json_format)


def refuse_unhonoured(chat: ChatRequest) -> None:
    """A 400 naming the field for what a client relies on and the proxy cannot do (yet): the
    deprecated `functions`, sampling penalties and biases, output other than text; where a
    200 without it would mislead. Fields that do not change the answer (user, metadata,
    store, ...) are accepted and not used; so are their neutral values (a penalty of 0)."""
    extra = chat.model_extra or {}
    asked = {
        "functions": bool(chat.functions),  # the deprecated form of tools
        "function_call": chat.function_call not in (None, "none", "auto"),
        **{penalty: extra.get(penalty) not in (None, 0) for penalty in ("presence_penalty", "frequency_penalty")},
        "logit_bias": bool(extra.get("logit_bias")),
        "modalities": extra.get("modalities") not in (None, ["text"]),
        **{field: extra.get(field) is not None for field in ("audio", "prediction", "web_search_options")},
    }
    for field, given in asked.items():
        if given:
            raise invalid(
                f"{field} is not supported by this proxy yet (it would answer without it); leave {field} out, "
                "or send this request to the upstream model directly",
                "unsupported_field",
                field,
            )


def thinking_cap(options: RfprmOptions, effort: str | None, settings: Settings, name: str) -> dict[str, Any]:
    """The request's thinking budget as a strategy parameter: rfprm.thinking_budget, else its
    reasoning_effort through serve.reasoning_effort. An effort is dropped for a strategy without
    thinking controls (clients send it by habit); an explicit thinking budget is not."""
    efforts = settings.serve.reasoning_effort
    if effort is not None and effort not in efforts:
        raise invalid(
            f"reasoning_effort {effort!r} is not one of this server's: {', '.join(efforts)}",
            "invalid_reasoning_effort",
            "reasoning_effort",
        )
    if options.thinking_budget is None and (effort is None or efforts[effort] is None):
        return {}
    try:
        controls = "max_thinking_tokens" in strategy_class(name).Params.model_fields
    except ConfigError as exc:
        raise invalid(str(exc), "invalid_rfprm_option", "rfprm.strategy") from None
    if options.thinking_budget is not None:
        if not controls:
            raise invalid(
                f"rfprm.thinking_budget needs a strategy that samples whole answers; {name!r} does not",
                "invalid_rfprm_option",
                "rfprm.thinking_budget",
            )
        return {"max_thinking_tokens": options.thinking_budget}
    return {"max_thinking_tokens": efforts[effort]} if controls and effort is not None else {}


def request_strategy(
    options: RfprmOptions, settings: Settings, n: int, budget_header: str | None, effort: str | None = None
) -> Strategy:
    """The strategy of the request, its parameters validated by the strategy's own model:
    `rfprm.params` first, then the `rfprm` object's own fields (which win), then the token
    budget: the smallest the request gave (rfprm.token_budget, rfprm.params, the header), else
    the route's (its strategy_params), else the server's limit; over the limit is refused. The
    thinking budget: see `thinking_cap`."""
    for field, instead in (("n", "rfprm.n"), ("name", "rfprm.strategy")):
        if field in options.params:
            raise invalid(
                f"rfprm.params.{field} is not a strategy parameter; give it as {instead}",
                "invalid_rfprm_option",
                f"rfprm.params.{field}",
            )
    name = options.strategy or settings.strategy
    own = {"budget_counts": options.budget_counts} if options.budget_counts else {}
    own |= thinking_cap(options, effort, settings, name)
    strategy = build(name, settings, n=n, **{**options.params, **own})
    limit = settings.serve.max_token_budget
    in_params = strategy.params.token_budget if "token_budget" in options.params else None  # validated
    asked = [b for b in (options.token_budget, in_params, header_budget(budget_header)) if b]
    configured = strategy.params.token_budget  # the route's, when the request gave none in params
    budget = min(asked, default=configured if configured is not None else limit)
    if limit is not None and budget is not None and budget > limit:
        raise invalid(
            f"token budget {budget} is over this server's limit of {limit}",
            "token_budget_too_large",
            "rfprm.token_budget",
        )
    return build(name, settings, n=n, **{**options.params, **own, "token_budget": budget})


def build(name: str, settings: Settings, **params: Any) -> Strategy:
    try:
        return build_strategy(name, settings.strategy_params, **params)
    except ConfigError as exc:
        raise invalid(str(exc), "invalid_rfprm_option", "rfprm") from None


def header_budget(header: str | None) -> int | None:
    """The X-Rfprm-Token-Budget header's value: ASCII digits, at most 12 of them."""
    if header is None:
        return None
    value = header.strip()
    if not _BUDGET_HEADER.fullmatch(value) or int(value) < 1:
        raise invalid(
            f"X-Rfprm-Token-Budget must be a positive whole number of tokens, got {header[:40]!r}",
            "invalid_token_budget",
            "X-Rfprm-Token-Budget",
        )
    return int(value)


def parse_model(model: type[BaseModel], body: bytes) -> Any:
    """A JSON endpoint's body (POST /v1/prm/score, /v1/rewards/openrlhf), under the same
    parse limits as chat completions."""
    try:
        return model.model_validate(load_json(body))
    except ValidationError as exc:
        raise validation_error(exc) from None
