"""What several commands share: the one-line usage error, checked argument types, the backend options, and settings from what was given."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from rfprm_tts.errors import RfprmError
from rfprm_tts.runtime.files import write_atomically
from rfprm_tts.settings import SIDE_MODELS

if TYPE_CHECKING:
    from rfprm_tts.settings import Settings
    from rfprm_tts.trajectory import SolveResult

# The object `add_subparsers` returns: each command module adds its parser to it.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


class HelpFormatter(argparse.HelpFormatter):
    """Fills `{strategies}` in a help text with the registered strategy names when help is
    shown (importing the strategies would cost every other command 0.15 s)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is not None and "{strategies}" in text:
            from rfprm_tts.strategies import available_strategies

            text = text.replace("{strategies}", ", ".join(available_strategies()))
        return text


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (`error: ...; see 'rfprm X --help'`), exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum` (so `--concurrency 0` cannot hang a run)."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return whole_number


def finite(text: str) -> float:
    """An argparse type: a finite number (nan and inf would poison scores and rankings)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


SIDE_MODEL_HELP = {
    "draft": "draft model name or path (demo-draft: bundled, for --model demo), for speculative_steps, specreason "
    "or a step search's draft_threshold: a cheaper generator that writes steps",
    "selector": "genselect's selector: a model that reads the candidate solutions side by side and names the best "
    "(default: the generator selects)",
}


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `solve` and `bench` that choose the strategy, generator and PRM."""
    parser.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="strategy parameter; VALUE is JSON where it parses (4, 0.5, true, '[0.5,0.25]'), else text",
    )
    parser.add_argument("--backend", choices=["transformers", "openai", "vllm"], help="generator backend")
    parser.add_argument(
        "--model", help="generator model name or path (default demo-think, a bundled world; 'demo' is the other)"
    )
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api", choices=["chat", "completions"], help="which OpenAI API to call")
    parser.add_argument("--temperature", type=finite, help="sampling temperature")
    parser.add_argument("--max-tokens", type=at_least(1), help="most tokens per completion")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--system-prompt", help="system message before the question")
    for role in SIDE_MODELS:
        parser.add_argument(f"--{role}-model", help=SIDE_MODEL_HELP[role])
        parser.add_argument(
            f"--{role}-backend", choices=["transformers", "openai", "vllm"], help=f"the {role} model's backend"
        )
        parser.add_argument(f"--{role}-base-url", help=f"the {role} model's OpenAI-compatible endpoint")
        greedy = " (genselect's one pick is greedy: it samples with --param selections=3, say)"
        parser.add_argument(
            f"--{role}-temperature",
            type=finite,
            help=f"the {role} model's sampling temperature{greedy if role == 'selector' else ''}",
        )
    parser.add_argument("--prm", help="PRM name or path (default demo-think, bundled; 'demo' is the other)")
    parser.add_argument(
        "--aggregation",
        help="last, min, mean, prod, reasonflux, learned:MODEL.json (rfprm fit-aggregation), or auto "
        "(default: the PRM checkpoint's own choice, else reasonflux)",
    )
    parser.add_argument("--device", help="PRM device: auto, cpu, cuda")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)"
    )


SIDE_MODEL_OPTIONS = ("model", "backend", "base_url", "temperature")  # --draft-model, --selector-base-url, ...


def solve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options the user gave, so settings from env/config stay in force otherwise."""
    mapping = {
        "strategy": "strategy",
        "n": "n",
        "backend": "generator__backend",
        "model": "generator__model",
        "base_url": "generator__base_url",
        "api": "generator__api",
        "temperature": "generator__temperature",
        "max_tokens": "generator__max_tokens",
        "seed": "generator__seed",
        "system_prompt": "generator__system_prompt",
        **{f"{role}_{key}": f"{role}__{key}" for role in SIDE_MODELS for key in SIDE_MODEL_OPTIONS},
        "prm": "prm__model",
        "aggregation": "prm__aggregation",
        "device": "prm__device",
    }
    overrides = {key: getattr(args, name) for name, key in mapping.items() if getattr(args, name, None) is not None}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise RfprmError(f"--param expects NAME=VALUE, got {item!r}")
        overrides[name] = parse_value(value)
    return overrides


def parse_value(value: str) -> Any:
    """JSON where the value is JSON (3, 0.5, true, [0.5, 0.25], {"a": 1}), else the text itself."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def prm_settings(**given: Any) -> Settings:
    """Settings from the environment and config, with the PRM options the user gave."""
    from rfprm_tts.settings import Settings

    return Settings.load().with_overrides(**{f"prm__{k}": v for k, v in given.items() if v is not None})


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal, or with -v (a log file gets them only when asked)."""
    return bool(args.verbose or sys.stderr.isatty())


def write_page(result: SolveResult, path: str) -> None:
    """The page of a solve (`rfprm solve --html`, `rfprm view`)."""
    from rfprm_tts.offline.view import render_html

    write_atomically(path, render_html(result))
    print(f"wrote {path} ({len(result.tree)} search nodes)", file=sys.stderr)
