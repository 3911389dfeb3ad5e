"""`rfprm solve QUESTION`: one question, PRM-guided search, the answer and its account."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from typing import IO, TYPE_CHECKING

from rfprm_tts.cli.arguments import Commands, add_backend_arguments, at_least, solve_overrides, write_page
from rfprm_tts.errors import RfprmError
from rfprm_tts.runtime.files import check_output, read_bytes
from rfprm_tts.search.thinking import ThinkingControl
from rfprm_tts.trajectory import NO_ANSWER, SolveResult

if TYPE_CHECKING:
    from rfprm_tts.search.progress import Progress


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("solve", help="solve one question with PRM-guided search")
    parser.add_argument("question", nargs="?", help="the question to solve ('-': read it from standard input)")
    parser.add_argument(
        "--messages",
        metavar="FILE",
        help="a chat conversation instead of a question: a JSON list of {role, content} messages ('-': stdin)",
    )
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--html", metavar="OUT.html", help="also write the search as a page (see rfprm view)")
    parser.add_argument("--strategy", help="search strategy: {strategies} (default: best_of_n)")
    parser.add_argument("-n", "--n", type=at_least(1), help="sample budget N")
    add_backend_arguments(parser)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.settings import Settings

    if (args.question is None) == (args.messages is None):
        raise RfprmError("give a question, or --messages FILE with a conversation (not both); see 'rfprm solve --help'")
    if args.html:
        check_output(args.html)  # before the solve, so its answer is never lost to a bad path
    settings = Settings.load().with_overrides(**solve_overrides(args))
    from rfprm_tts.solver import ReasoningSolver  # torch and transformers: after the quick checks

    prompt = read_prompt(args)
    with ReasoningSolver(settings) as solver:
        result = solver.solve(prompt, on_progress=log_progress if args.verbose else None)
    if args.html:
        write_page(result, args.html)
    print(result_json(result) if args.json else format_result(result), file=out)
    if settings.generator.model in ("demo", "demo-think") and settings.generator.backend == "transformers":
        # after the answer: a failed solve stays one error line
        note_outside_demo_world(result.question, settings.generator.model)
    return 0


def result_json(result: SolveResult) -> str:
    """The result as JSON with every float at 6 significant digits: a float32 PRM score carries
    about 7, a wall time is good to the microsecond at best, and `2.6291126219999796` is noise."""
    return json.dumps(round_floats(result.model_dump(mode="json")), indent=2, ensure_ascii=False)


def round_floats(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: round_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [round_floats(item) for item in value]
    return value


def read_prompt(args: argparse.Namespace) -> str | list[dict[str, object]]:
    """The question (`-`: standard input), or the conversation in --messages; the solver checks
    a conversation's roles and contents."""
    if args.messages is None:
        return sys.stdin.read().strip() if args.question == "-" else args.question
    where = "standard input" if args.messages == "-" else args.messages
    data = (
        sys.stdin.buffer.read() if args.messages == "-" else read_bytes(args.messages, "a JSON list of chat messages")
    )
    try:
        messages = json.loads(data)
    except ValueError as exc:
        raise RfprmError(
            f"--messages: {where} is not JSON ({exc}); give a list of {{role, content}} messages"
        ) from None
    if not isinstance(messages, list):
        raise RfprmError(f"--messages: {where} holds one JSON value, not a list of {{role, content}} messages")
    return messages


def note_outside_demo_world(question: str, model: str) -> None:
    """One line on stderr when a bundled demo model gets a question it was never taught: its
    answer would look like a bug on first contact."""
    if model == "demo-think":
        from rfprm_tts.demo.thinking import within_world

        taught = "1 to 4 operations"
    else:
        from rfprm_tts.demo.arithmetic import within_world

        taught = "2 to 4 operations"
    if not within_world(question):
        print(
            f"note: the bundled {model} model only does integer arithmetic like 'Compute 7 + 5 * 3 - 4.' "
            f"({taught}, numbers up to 30), so its answer here means nothing; point --model "
            "(or --backend openai --base-url URL) at a real model",
            file=sys.stderr,
        )


def why_no_answer(result: SolveResult) -> str:
    """Why a solve found no answer, when its candidates say: cut at the token limit before
    answering, or finished without a final answer."""
    if result.answer is not None:
        return ""
    unanswered = [c for c in result.candidates if c.ok and c.answer is None]
    cut = sum(c.finish_reason == "length" for c in unanswered)
    if cut:
        return (
            f": {cut} of {len(result.candidates)} candidates were cut at the token limit before an answer "
            "(raise --max-tokens / generator.max_tokens)"
        )
    if unanswered:
        return f": {len(unanswered)} of {len(result.candidates)} candidates ended without a final \\boxed{{}} answer"
    return ""


def format_result(result: SolveResult) -> str:
    lines = [f"Answer: {result.answer if result.answer is not None else NO_ANSWER}{why_no_answer(result)}"]
    lines.append(
        f"Strategy: {result.strategy} ({result.params_text(hide=ThinkingControl.idle_knobs(result.strategy_params))})"
    )
    best = result.best
    if best is not None and best.step_scores:
        score = "n/a" if best.score is None else f"{best.score:.4f}"
        writers = best.step_models or []
        by = "; (draft) marks the draft model's steps" if "draft" in writers else ""
        lines.append(f"Chosen trajectory (aggregate score {score}); PRM score per step{by}:")
        for i, (step, step_score) in enumerate(zip(best.trajectory.steps, best.step_scores)):
            text = step.text.replace("\n", "\n         ")
            shown = "  -  " if step_score is None else f"{step_score:.3f}"  # unscored (prm.overflow)
            mark = "(draft) " if i < len(writers) and writers[i] == "draft" else ""
            lines.append(f"  [{shown}] {mark}{text}")
    elif best is not None:  # a strategy that scores nothing (majority_vote): the steps alone
        lines.append("Chosen trajectory (not scored: this strategy uses no PRM):")
        lines += ["  " + step.text.replace("\n", "\n  ") for step in best.trajectory.steps]
    failed = Counter(c.error for c in result.candidates if c.error is not None)
    why = "; ".join(f"{n} {reason}" for reason, n in failed.most_common())
    lines.append(f"Candidates: {len(result.candidates)} ({sum(failed.values())} failed{': ' + why if why else ''})")
    u = result.usage
    lines.append(
        f"Usage: {u.prompt_tokens} prompt + {u.generated_tokens} generated tokens in "
        f"{u.generator_calls} generator call(s); {u.prm_tokens} PRM tokens in {u.prm_calls} "
        f"PRM call(s); {u.wall_time_s:.2f} s"
    )
    if u.draft_calls:
        lines.append(
            f"Draft: {u.draft_prompt_tokens} prompt + {u.draft_generated_tokens} generated tokens in "
            f"{u.draft_calls} call(s); {result.details.get('accepted', result.details.get('draft_accepted', 0))} "
            "step(s) accepted"
        )
    d = result.details
    if d.get("selector_calls"):  # genselect: its own selector model, or the generator (counted above)
        who = (
            f"{u.selector_prompt_tokens} prompt + {u.selector_generated_tokens} generated tokens in "
            f"{u.selector_calls} call(s)"
            if u.selector_calls
            else f"the generator, {d['selector_calls']} call(s)"
        )
        why_not = f"; {d['selector_failures']} failed: {d['selector_error']}" if d.get("selector_failures") else ""
        lines.append(f"Selector: {who}; {d['unreadable_picks']} of {d['selector_picks']} pick(s) unreadable{why_not}")
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
