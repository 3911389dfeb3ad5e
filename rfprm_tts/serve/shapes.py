"""The request fields that shape an answer: `tools` / `tool_choice` (an agent's turn) and
`response_format` (structured output), validated so that what reaches the upstream and the
votes (rfprm_tts.search.tool_calls, json_answers) is well formed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rfprm_tts.generators.base import ToolSpec
from rfprm_tts.serve.errors import invalid

if TYPE_CHECKING:
    from rfprm_tts.serve.protocol import ChatRequest


def check_schema(schema: Any, where: str) -> None:
    """A ValueError (a 400 naming the field) unless `schema` is a valid JSON schema: the votes
    check answers and arguments against it."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where} must be a JSON object (a JSON schema)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"{where} is not a valid JSON schema: {exc.message}") from None


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # description, strict: passed on as given
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    parameters: dict[str, Any] | None = None  # a JSON schema, which a call's arguments must match

    @model_validator(mode="after")
    def _valid_schema(self) -> FunctionSpec:
        if self.parameters is not None:
            check_schema(self.parameters, "function.parameters")
        return self


class FunctionTool(BaseModel):
    """One of a request's `tools` (OpenAI's function tools), passed to the upstream as given."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionSpec


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: text, a JSON object, or JSON matching `json_schema.schema`."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type != "json_schema":
            return self
        spec = self.json_schema or {}
        if not isinstance(spec.get("name"), str):
            raise ValueError("a json_schema response_format needs json_schema with a name (and its schema)")
        if spec.get("schema") is not None:
            check_schema(spec["schema"], "json_schema.schema")
        return self


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    """`tool_choice` naming the one function the model must call."""

    type: Literal["function"]
    function: NamedFunction


def tool_spec(chat: ChatRequest) -> ToolSpec | None:
    """The request's tools as the generator passes them on (None without any); a
    tool_choice must name one of them."""
    if not chat.tools:
        return None
    tools = [tool.model_dump(exclude_none=True) for tool in chat.tools]
    choice = chat.tool_choice.model_dump() if isinstance(chat.tool_choice, NamedToolChoice) else chat.tool_choice
    spec = ToolSpec(tools, choice, chat.parallel_tool_calls, chat.rfprm.tool_vote)
    if isinstance(chat.tool_choice, NamedToolChoice) and chat.tool_choice.function.name not in spec.names():
        raise invalid(
            f"tool_choice names {chat.tool_choice.function.name!r}, which is not one of the request's tools",
            "invalid_tool_choice",
            "tool_choice",
        )
    return spec
