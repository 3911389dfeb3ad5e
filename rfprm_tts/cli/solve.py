"""`rfprm solve QUESTION`: one question, PRM-guided search, the answer and its account."""

from __future__ import annotations

import argparse
import logging
from typing import IO, TYPE_CHECKING

from rfprm_tts.cli.arguments import Commands, add_backend_arguments, at_least, solve_overrides, write_page
from rfprm_tts.runtime.files import check_output
from rfprm_tts.trajectory import SolveResult

if TYPE_CHECKING:
    from rfprm_tts.search.context import Progress


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("solve", help="solve one question with PRM-guided search")
    parser.add_argument("question", help="the question to solve")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--html", metavar="OUT.html", help="also write the search as a page (see rfprm view)")
    parser.add_argument("--strategy", help="search strategy (default: best_of_n)")
    parser.add_argument("-n", "--n", type=at_least(1), help="sample budget N")
    add_backend_arguments(parser)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.settings import Settings

    if args.html:
        check_output(args.html)  # before the solve, so its answer is never lost to a bad path
    settings = Settings.load().with_overrides(**solve_overrides(args))
    from rfprm_tts.solver import ReasoningSolver  # torch and transformers: after the quick checks

    with ReasoningSolver(settings) as solver:
        result = solver.solve(args.question, on_progress=log_progress if args.verbose else None)
    if args.html:
        write_page(result, args.html)
    print(result.model_dump_json(indent=2) if args.json else format_result(result), file=out)
    return 0


def format_result(result: SolveResult) -> str:
    lines = [f"Answer: {result.answer if result.answer is not None else '(none found)'}"]
    lines.append(f"Strategy: {result.strategy} ({result.params_text()})")
    best = result.best
    if best is not None:
        score = "n/a" if best.score is None else f"{best.score:.4f}"
        lines.append(f"Chosen trajectory (aggregate score {score}); PRM score per step:")
        for step, step_score in zip(best.trajectory.steps, best.step_scores):
            text = step.text.replace("\n", "\n         ")
            shown = "  -  " if step_score is None else f"{step_score:.3f}"  # unscored (prm.overflow)
            lines.append(f"  [{shown}] {text}")
    ok = sum(c.ok for c in result.candidates)
    lines.append(f"Candidates: {len(result.candidates)} ({len(result.candidates) - ok} failed)")
    u = result.usage
    lines.append(
        f"Usage: {u.prompt_tokens} prompt + {u.generated_tokens} generated tokens in "
        f"{u.generator_calls} generator call(s); {u.prm_tokens} PRM tokens in {u.prm_calls} "
        f"PRM call(s); {u.wall_time_s:.2f} s"
    )
    return "\n".join(lines)


def log_progress(progress: Progress) -> None:
    best = "-" if progress.best_score is None else f"{progress.best_score:.3f}"
    logging.getLogger("rfprm").info(
        "round %d %s: %d candidates, %d open, %d finished, best %s; %d generated + %d PRM tokens, %.1f s",
        progress.round,
        progress.phase,
        progress.candidates,
        progress.open,
        progress.finished,
        best,
        progress.generated_tokens,
        progress.prm_tokens,
        progress.elapsed_s,
    )
