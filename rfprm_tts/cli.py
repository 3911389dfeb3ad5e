"""The `rfprm` command line: `rfprm solve "question"`."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rfprm_tts.errors import RfprmError
from rfprm_tts.trajectory import SolveResult


def _solve_overrides(args: argparse.Namespace) -> dict[str, Any]:
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
        "prm": "prm__model",
        "aggregation": "prm__aggregation",
        "device": "prm__device",
    }
    overrides = {key: getattr(args, name) for name, key in mapping.items() if getattr(args, name) is not None}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise RfprmError(f"--param expects NAME=VALUE, got {item!r}")
        overrides[name] = _parse_value(value)
    return overrides


def _parse_value(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def format_result(result: SolveResult) -> str:
    lines = [f"Answer: {result.answer if result.answer is not None else '(none found)'}"]
    params = ", ".join(f"{k}={v}" for k, v in result.strategy_params.items())
    lines.append(f"Strategy: {result.strategy} ({params})")
    best = result.best
    if best is not None:
        score = "n/a" if best.score is None else f"{best.score:.4f}"
        lines.append(f"Chosen trajectory (aggregate score {score}); PRM score per step:")
        for step, step_score in zip(best.trajectory.steps, best.step_scores):
            text = step.text.replace("\n", "\n         ")
            lines.append(f"  [{step_score:.3f}] {text}")
    ok = sum(c.ok for c in result.candidates)
    lines.append(f"Candidates: {len(result.candidates)} ({len(result.candidates) - ok} failed)")
    u = result.usage
    lines.append(
        f"Usage: {u.prompt_tokens} prompt + {u.generated_tokens} generated tokens in "
        f"{u.generator_calls} generator call(s); {u.prm_tokens} PRM tokens in {u.prm_calls} "
        f"PRM call(s); {u.wall_time_s:.2f} s"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfprm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    solve = commands.add_parser("solve", help="solve one question with PRM-guided search")
    solve.add_argument("question", help="the question to solve")
    solve.add_argument("--json", action="store_true", help="print the full result as JSON")
    solve.add_argument("--strategy", help="search strategy (default: best_of_n)")
    solve.add_argument("-n", "--n", type=int, help="sample budget N")
    solve.add_argument("--param", action="append", metavar="NAME=VALUE", help="strategy parameter")
    solve.add_argument("--backend", choices=["transformers", "openai", "vllm"], help="generator backend")
    solve.add_argument("--model", help="generator model name or path ('demo' = bundled)")
    solve.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    solve.add_argument("--api", choices=["chat", "completions"], help="which OpenAI API to call")
    solve.add_argument("--temperature", type=float, help="sampling temperature")
    solve.add_argument("--max-tokens", type=int, help="most tokens per completion")
    solve.add_argument("--seed", type=int, help="sampling seed")
    solve.add_argument("--prm", help="PRM name or path ('demo' = bundled)")
    solve.add_argument("--aggregation", help="last, min, mean, prod or reasonflux")
    solve.add_argument("--device", help="PRM device: auto, cpu, cuda")
    solve.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from rfprm_tts.solver import solve

    try:
        result = solve(args.question, **_solve_overrides(args))
    except RfprmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.model_dump_json(indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
