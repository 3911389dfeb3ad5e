"""Where settings come from, read by hand so every value keeps its source.

pydantic-settings would read the environment, `.env` and `rfprm.toml` for us, but it cannot say
which file line or variable a bad value came from, it validates every line of an app's `.env`
(`OPENAI_API_KEY=...` is not ours) and prints the values it rejects. Here each source becomes
a nested dict plus a map from each key path to where it was set; unknown keys are refused with
the closest valid name at every level; and errors name the setting and its source, never the
value of anything that could be a secret.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import tomllib
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.files import decode_text

PREFIX = "RFPRM_"
CONFIG_VARIABLE = "RFPRM_CONFIG"  # the TOML file's path: not a setting itself
Path_ = tuple[str, ...]


@dataclass
class Layer:
    """One source's values (nested like the settings) and where each key path was set."""

    values: dict[str, Any] = field(default_factory=dict)
    where: dict[Path_, str] = field(default_factory=dict)

    def set(self, path: Path_, value: Any, where: str) -> None:
        node = self.values
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # `generator = 1` then `[generator] x = 2`: the later wins
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        self.where[path] = where


def read_layers(model: type[BaseModel]) -> list[Layer]:
    """The environment, `.env` and the TOML file, highest priority first."""
    toml_path = os.environ.get(CONFIG_VARIABLE)
    if toml_path is not None and not os.path.isfile(toml_path):
        raise ConfigError(
            f"{CONFIG_VARIABLE} points at {toml_path!r}, which is not a file; point it at your rfprm.toml or unset it"
        )
    return [
        _environment(model, dict(os.environ), "in the environment"),
        _dotenv(model, Path(".env")),
        _toml(model, Path(toml_path or "rfprm.toml")),
    ]


def merged(layers: Sequence[Layer]) -> tuple[dict[str, Any], dict[Path_, str]]:
    """Values of all layers (the first layer wins a key), and where each came from."""
    values: dict[str, Any] = {}
    where: dict[Path_, str] = {}
    for layer in reversed(layers):
        _deep_update(values, layer.values)
        where.update(layer.where)
    return values, where


def _deep_update(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value


# ---------------------------------------------------------------- the model's shape


def _unwrap(annotation: Any) -> list[Any]:
    """The types a field accepts (Optional and unions spread out)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [t for arg in get_args(annotation) for t in _unwrap(arg) if t is not type(None)]
    return [annotation]


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The nested settings model a field holds, if it holds one."""
    for t in _unwrap(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _needs_json(annotation: Any) -> bool:
    """Lists, dicts and sections come from a variable as JSON; scalars as plain text."""
    return any(
        get_origin(t) in (list, dict, tuple) or t in (list, dict, tuple) or section_model(t) is not None
        for t in _unwrap(annotation)
    )


def choices(annotation: Any) -> list[str] | None:
    """The allowed values of a Literal field (or of a union of Literals)."""
    values: list[str] = []
    for t in _unwrap(annotation):
        if get_origin(t) is not Literal:
            return None
        values += [str(v) for v in get_args(t)]
    return values


def check_path(model: type[BaseModel], path: Path_, where: str) -> Any:
    """The annotation of the field at `path`, or a ConfigError naming the unknown key and the
    closest valid one. Below a free-form dict field (strategy_params, extra_body) anything goes."""
    current: type[BaseModel] | None = model
    annotation: Any = None
    for depth, part in enumerate(path):
        if current is None:  # inside a dict-valued field
            return None
        fields = current.model_fields
        if part not in fields:
            dotted = ".".join(path[: depth + 1])
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            hint = (
                f"did you mean '{'.'.join((*path[:depth], close[0]))}'?"
                if close
                else f"valid names{' in [' + '.'.join(path[:depth]) + ']' if depth else ''}: {', '.join(fields)}"
            )
            raise ConfigError(f"unknown setting '{dotted}' ({where}); {hint}")
        annotation = fields[part].annotation
        current = section_model(annotation)
        if (
            current is None
            and depth < len(path) - 1
            and not any(get_origin(t) is dict or t is dict for t in _unwrap(annotation))
        ):
            raise ConfigError(
                f"setting '{'.'.join(path[: depth + 1])}' is a single value, not a section "
                f"({where}); set it as {'.'.join(path[: depth + 1])} = VALUE"
            )
    return annotation


# ---------------------------------------------------------------- the three sources


def _environment(
    model: type[BaseModel], variables: dict[str, str], place: str, line: dict[str, int] | None = None
) -> Layer:
    """`RFPRM_SECTION__FIELD=value` variables (names are case-insensitive, like pydantic-settings');
    any other variable is none of our business."""
    layer = Layer()
    for name, text in variables.items():
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper == CONFIG_VARIABLE or text is None:
            continue
        where = f"{name} {place}" + (f" line {line[name]}" if line else "")
        path = tuple(upper[len(PREFIX) :].lower().split("__"))
        if not all(path):
            raise ConfigError(
                f"{where} is not a setting name: sections and fields are joined by "
                "one double underscore, e.g. RFPRM_GENERATOR__TEMPERATURE"
            )
        annotation = check_path(model, path, where)
        value: Any = text
        if _needs_json(annotation):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                example = (
                    '\'["A", "B"]\''
                    if any(get_origin(t) in (list, tuple) for t in _unwrap(annotation))
                    else '\'{"name": "value"}\''
                )
                raise ConfigError(f"{where} must be JSON, e.g. {name}={example}; its value is not valid JSON") from None
        layer.set(path, value, where)
    return layer


def _read_text(path: Path, what: str) -> str | None:
    """A config file's text, None when there is none; one clear error when it is unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not {what}; remove or rename it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; fix its permissions or remove it") from None
    return decode_text(data, path)


def _dotenv(model: type[BaseModel], path: Path) -> Layer:
    """Our variables in `.env`. Other lines (an app's own keys, even malformed ones) are ignored."""
    from dotenv.parser import parse_stream

    text = _read_text(path, "the .env file")
    if text is None:
        return Layer()
    variables: dict[str, str] = {}
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        mentions_us = re.match(r"\s*(export\s+)?" + PREFIX, binding.original.string, re.I)
        if binding.error and mentions_us:
            raise ConfigError(
                f"{path} line {binding.original.line} is not NAME=VALUE; fix that line "
                "(quote values with spaces or '#')"
            )
        if binding.key is not None and binding.value is not None:
            variables[binding.key] = binding.value
            lines[binding.key] = binding.original.line
    return _environment(model, variables, f"in {path}", lines)


def _toml(model: type[BaseModel], path: Path) -> Layer:
    text = _read_text(path, "the TOML file")
    if text is None:
        return Layer()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix that line") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to be a settings file; fix it") from None
    lines = _toml_lines(text)
    layer = Layer()

    def walk(node: dict[str, Any], prefix: Path_) -> None:
        for key, value in node.items():
            path_ = (*prefix, key)
            where = f"in {path}" + (f" line {lines[path_]}" if path_ in lines else "")
            annotation = check_path(model, path_, where)
            if isinstance(value, dict) and section_model(annotation) is not None:
                walk(value, path_)
            else:
                layer.set(path_, value, where)

    walk(data, ())
    return layer


def _toml_lines(text: str) -> dict[Path_, int]:
    """Best-effort line of each `key =` under its `[section]` header (for error messages)."""
    lines: dict[Path_, int] = {}
    section: Path_ = ()
    for number, line in enumerate(text.splitlines(), 1):
        if header := re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line):
            section = tuple(part.strip().strip('"') for part in header.group(1).split("."))
            lines.setdefault(section, number)
        elif key := re.match(r"\s*([A-Za-z0-9_.\-\"' ]+?)\s*=", line):
            path = (*section, *(part.strip().strip("\"'") for part in key.group(1).split(".")))
            lines.setdefault(path, number)
    return lines


def given_paths(
    model: type[BaseModel], values: dict[str, Any], where: str = "given as an argument"
) -> dict[Path_, str]:
    """Explicit values (arguments, per-solve overrides) obey the same unknown-key rule; returns
    where each of their key paths was set."""
    paths: dict[Path_, str] = {}

    def walk(node: dict[str, Any], prefix: Path_) -> None:
        for key, value in node.items():
            path = (*prefix, str(key))
            annotation = check_path(model, path, where)
            paths[path] = where
            if isinstance(value, dict) and section_model(annotation) is not None:
                walk(value, path)

    walk(values, ())
    return paths


# ---------------------------------------------------------------- errors without values


def describe(model: type[BaseModel], exc: ValidationError, where: dict[Path_, str]) -> str:
    """One line for a settings ValidationError: each bad setting, where it was set and what it
    must be. Never the value: a key pasted into the wrong field is still a key."""
    problems: dict[Path_, str] = {}
    for err in exc.errors():
        path, annotation = _field_path(model, err["loc"])
        if err["type"] == "extra_forbidden" and len(err["loc"]) > len(
            path
        ):  # name the unknown key itself, not the section holding it
            path = (*path, str(err["loc"][len(path)]))
        if path in problems:
            continue  # one line per setting (a union reports once per member)
        source = next((where[path[:i]] for i in range(len(path), 0, -1) if path[:i] in where), "a default")
        allowed = choices(annotation) if annotation is not None else None
        said = err["msg"].removeprefix("Value error, ")  # a validator's own words
        message = f"must be one of {', '.join(allowed)}" if allowed else said[:1].lower() + said[1:]
        if err["type"] == "model_type" and path:  # `selector = "demo"`: a section given as one value
            keys = section_model(annotation)
            example = " with model = ... under it" if keys is not None and "model" in keys.model_fields else ""
            message = f"is a section of keys: write them under [{'.'.join(path)}]{example}"
        problems[path] = f"{'.'.join(path) or 'settings'} ({source}): {message}"
    return "invalid settings: " + "; ".join(problems.values())


def _field_path(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Path_, Any]:
    """The settings path in an error location (pydantic adds union members and list indices)
    and that field's annotation."""
    path: list[str] = []
    current: type[BaseModel] | None = model
    annotation: Any = None
    keyed: type[BaseModel] | None = None  # the model under each key of a dict of sections (serve.routes)
    for part in loc:
        if keyed is not None and isinstance(part, str):
            path.append(part)
            current, keyed = keyed, None
            continue
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            break
        path.append(part)
        annotation = current.model_fields[part].annotation
        current = section_model(annotation)
        if current is None and get_origin(annotation) is dict:
            keyed = section_model(get_args(annotation)[1])
    return tuple(path), annotation
