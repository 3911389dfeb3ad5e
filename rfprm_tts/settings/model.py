"""All configuration, in one pydantic-settings model.

Sources, highest priority first: explicit arguments, environment variables (prefix `RFPRM_`,
nested with `__`, e.g. `RFPRM_GENERATOR__BASE_URL`), a `.env` file, a TOML file
(`rfprm.toml` in the working directory, or the path in `RFPRM_CONFIG`), then the defaults.
The defaults run the bundled demo world on the CPU: no server, no key, no GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rfprm_tts.errors import ConfigError
from rfprm_tts.settings import sources
from rfprm_tts.settings.sections import PER_SOLVE_FIELDS, GeneratorSettings, PRMSettings, ServeSettings
from rfprm_tts.text import DEFAULT_STEP_SEPARATOR

SideRole = Literal["draft", "selector"]  # the generators a strategy may ask besides the generator
SIDE_MODELS: tuple[SideRole, ...] = get_args(SideRole)


class Settings(BaseSettings):
    """Everything a solve needs. See the README's configuration table."""

    # Sources are read by rfprm_tts.settings.sources (see Settings.__init__); these say the same
    # for anyone reading the config: RFPRM_ variables, nested with "__", unknown keys refused.
    model_config = SettingsConfigDict(
        env_prefix="RFPRM_", env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )

    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    draft: GeneratorSettings | None = Field(
        None,
        description="The draft model of the speculative strategies (speculative_steps, specreason, a step search's "
        "draft_threshold): a cheaper generator that writes the steps the judge accepts. The keys of [generator] "
        "([draft] in rfprm.toml, RFPRM_DRAFT__MODEL, --draft-model); None: no draft.",
    )
    selector: GeneratorSettings | None = Field(
        None,
        description="The model genselect asks to pick the best of candidate solutions shown side by side, counted "
        "apart from the generator (usage.selector_*). The keys of [generator] ([selector] in rfprm.toml, "
        "RFPRM_SELECTOR__MODEL, --selector-model); None: the generator picks.",
    )
    prm: PRMSettings = Field(default_factory=PRMSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    strategy: str = Field("best_of_n", description="Search strategy, by registered name.")
    n: int = Field(
        8,
        ge=1,
        description="Sample budget N of the strategy. Left unset, a strategy with its own default keeps it "
        "(speculative_steps and specreason: 1 draft a step).",
    )
    strategy_params: dict[str, Any] = Field(
        default_factory=dict, description="Extra parameters of the strategy (e.g. beam_width)."
    )
    step_separator: str = Field(
        DEFAULT_STEP_SEPARATOR,
        min_length=1,
        description="Splits responses into steps, for generation and PRM scoring alike.",
    )

    @model_validator(mode="after")
    def _n_given_as_a_strategy_parameter(self) -> Settings:
        """`strategy_params = {n = 4}` is the sample budget: it becomes `n`, checked as `n` is."""
        if "n" not in self.strategy_params:
            return self
        n = self.strategy_params.pop("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError("n given in strategy_params must be a whole number >= 1; or set n itself")
        if "n" in self.model_fields_set and n != self.n:
            raise ValueError(f"n is given twice, {self.n} and {n} in strategy_params: keep one")
        self.n = n
        self.model_fields_set.add("n")
        return self

    def __init__(self, **values: Any) -> None:
        """Read the environment, `.env` and the TOML file (under the given values) and validate
        them together; any mistake is one ConfigError naming the setting and where it was set."""
        if _COPYING.get():  # with_overrides: the values are complete and checked there
            super().__init__(**values)
            return
        layers = sources.read_layers(type(self))
        where = {**sources.merged(layers)[1], **sources.given_paths(type(self), values)}
        token = _LAYERS.set(layers)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(sources.describe(type(self), exc, where)) from None
        finally:
            _LAYERS.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _ReadLayers(settings_cls)

    @classmethod
    def load(cls, **values: Any) -> Settings:
        """Build settings from the given values over the environment, `.env` and rfprm.toml."""
        return cls(**values)

    def side_model(self, role: SideRole) -> GeneratorSettings | None:
        """The settings of the draft or the selector (None: not set)."""
        return self.draft if role == "draft" else self.selector

    def models_key(self) -> str:
        """What decides which models a solver loads: the generator and PRM settings less the
        per-solve fields, and the step separator. Secrets count by value (a new key is a new
        client)."""
        data = self.model_dump(mode="json", include={"generator", *SIDE_MODELS, "prm", "step_separator"})
        per_solve: dict[str, Any] = {**PER_SOLVE_FIELDS, **dict.fromkeys(SIDE_MODELS, PER_SOLVE_FIELDS["generator"])}
        for section, fields in per_solve.items():
            if data[section] is None:
                continue
            for name in fields:
                data[section].pop(name)
            key = getattr(self, section).api_key
            data[section]["api_key"] = key.get_secret_value() if key else None
        return json.dumps(data, sort_keys=True)

    def record(self) -> dict[str, Any]:
        """The settings as JSON to keep beside results (a run's run.json): no API key, no
        `serve` section (its keys), and no password inside a URL."""
        keyed = ("generator", *SIDE_MODELS, "prm")
        data = self.model_dump(mode="json", exclude={**{s: {"api_key"} for s in keyed}, "serve": True})
        for section in keyed:
            if data[section] is None:
                continue
            data[section]["base_url"] = _without_password(data[section]["base_url"])
            data[section]["replicas"] = [_without_password(url) for url in data[section]["replicas"]]
        return data

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with overrides applied. Keys are fields (`n=16`), nested fields with `__`
        (`generator__temperature=0.7`, `generator__vllm__enforce_eager=True`), or strategy
        parameters (`beam_width=4`), which the strategy validates."""
        if not overrides:
            return self
        data = self.model_dump()
        where: dict[tuple[str, ...], str] = {}
        given_params: set[str] = set()
        for key, value in overrides.items():
            path = tuple(key.split("__"))
            if len(path) == 1 and key not in type(self).model_fields:
                data["strategy_params"][key] = value
                given_params = {"strategy_params"}
                continue
            sources.check_path(type(self), path, "given as an override")
            node = data
            for part in path[:-1]:
                if node[part] is None:  # a section that is off (draft, selector): set one of its keys, and it is on
                    node[part] = {}
                node = node[part]
            node[path[-1]] = value
            where[path] = "given as an override"
        token = _COPYING.set(True)
        try:
            copy = type(self).model_validate(data)
            # what was set stays set, and the overrides are too (an unset n lets a strategy keep its own)
            copy.__pydantic_fields_set__ = self.model_fields_set | {path[0] for path in where} | given_params
            for name, field in copy:  # the same within each section (a side model's named model, say)
                if isinstance(field, BaseModel):
                    _keep_fields_set(field, self.__dict__[name], {path[1:] for path in where if path[0] == name})
            return copy
        except ValidationError as exc:
            raise ConfigError(sources.describe(type(self), exc, where)) from None
        finally:
            _COPYING.reset(token)


def _keep_fields_set(copy: BaseModel, original: object, paths: set[tuple[str, ...]]) -> None:
    """Mark in `copy` (validated from a whole dump, so every field counts as set) the fields set
    in `original` (None: a section that was off) and those `paths` set now, section by section."""
    given = original.model_fields_set if isinstance(original, BaseModel) else set()
    copy.__pydantic_fields_set__ = given | {path[0] for path in paths if path}
    for name, field in copy:
        if isinstance(field, BaseModel):
            inner = original.__dict__[name] if isinstance(original, BaseModel) else None
            _keep_fields_set(field, inner, {path[1:] for path in paths if path and path[0] == name})


# Set while with_overrides validates a copy: its sources are then the given values alone (not
# the environment, .env and rfprm.toml again: that would cost ~2 ms a solve and read files).
_COPYING: ContextVar[bool] = ContextVar("rfprm_settings_copying", default=False)


def without_passwords(text: str) -> str:
    """`http://user:secret@host/v1` -> `http://user:***@host/v1`, in a URL or a command line."""
    return re.sub(r"(//[^/@:\s]*):[^/@\s]*@", r"\1:***@", text)


def _without_password(url: str | None) -> str | None:
    return None if url is None else without_passwords(url)


# The sources one Settings() call read, for _ReadLayers (pydantic-settings builds the source
# objects itself, so they cannot be handed the layers directly).
_LAYERS: ContextVar[Sequence[sources.Layer]] = ContextVar("rfprm_settings_layers", default=())


class _ReadLayers(PydanticBaseSettingsSource):
    """The environment, `.env` and TOML values that Settings.__init__ read (rfprm_tts.settings.sources)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns every value at once

    def __call__(self) -> dict[str, Any]:
        return sources.merged(_LAYERS.get())[0]
