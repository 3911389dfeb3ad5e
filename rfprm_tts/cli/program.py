"""The `rfprm` command line: `rfprm solve "question"`, `rfprm bench ...` (and `rfprm bench report DIR`),
`rfprm serve`, `rfprm eval-prm FILE`, `rfprm view RESULT.json`, `rfprm score IN -o OUT`,
`rfprm select SCORED -o KEPT`, `rfprm fit-aggregation SCORED -o MODEL.json`.

stdout carries only each command's result (`rfprm solve --json | jq` works); logs, progress
and whatever a library or an engine process prints go to stderr, quiet unless `-v`."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import IO

from rfprm_tts import __version__
from rfprm_tts.cli import bench, eval_prm, fit_aggregation, score, select, serve, solve, view
from rfprm_tts.cli.arguments import Parser
from rfprm_tts.errors import RfprmError

# `rfprm bench report` and `rfprm bench merge` take other arguments than `rfprm bench`: their
# own parsers, chosen by the first two words (so `rfprm bench --dataset ...` keeps working).
SUB_COMMANDS = {("bench", "report"): bench.report_parser, ("bench", "merge"): bench.merge_parser}


def results_only_stdout(verbose: bool) -> IO[str]:
    """Keep stdout for results: from here on, file descriptor 1 (what libraries, C code and
    child processes such as vLLM's engine write to) is stderr. Returns a file on the real
    stdout for the result. vLLM's logger is sent to stderr too, and quieted unless verbose."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    sys.stdout.flush()
    result = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return result


# The commands, in the order --help lists them: each module adds its parser and runs it.
COMMANDS = {
    "solve": solve,
    "bench": bench,
    "serve": serve,
    "view": view,
    "score": score,
    "select": select,
    "eval-prm": eval_prm,
    "fit-aggregation": fit_aggregation,
}

# Each command's function, by the words that name it (SUB_COMMANDS' pairs included).
HANDLERS: dict[str, Callable[[argparse.Namespace, IO[str]], int]] = {
    **{name: module.run for name, module in COMMANDS.items()},
    "bench report": bench.report,
    "bench merge": bench.merge,
}


def build_parser() -> Parser:
    parser = Parser(prog="rfprm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rfprm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its name: what --help shows, and what the tests walk to cover
    every command."""
    root = build_parser()
    subparsers = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return {**subparsers.choices, **{" ".join(words): build() for words, build in SUB_COMMANDS.items()}}


def parse(argv: list[str]) -> argparse.Namespace:
    words = tuple(argv[:2])
    if len(words) == 2 and words[0] == "bench" and not words[1].startswith("-") and words not in SUB_COMMANDS:
        close = difflib.get_close_matches(words[1], [w for _, w in SUB_COMMANDS], n=1)
        raise RfprmError(
            f"unknown bench subcommand {words[1]!r}"
            + (
                f"; did you mean 'rfprm bench {close[0]}'?"
                if close
                else "; rfprm bench takes options (--dataset ... --out ...), or: report DIR, merge OUT DIR..."
            )
        )
    if words in SUB_COMMANDS:
        args = SUB_COMMANDS[words]().parse_args(argv[2:])
        args.command, args.verbose = " ".join(words), False
    else:
        args = build_parser().parse_args(argv)
    args.argv = argv
    return args


def run(argv: list[str]) -> int:
    args = parse(argv)
    out = results_only_stdout(args.verbose)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s", stream=sys.stderr
    )
    if not args.verbose:  # transformers' and the hub's bars ("Loading weights") only with -v
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    code = HANDLERS[args.command](args, out)
    out.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever happens, the user sees one line, not a traceback: `error: ...`
    (exit 2) for a mistake they can fix, `interrupted: ...` (exit 130) for Ctrl-C; only a bug of
    ours prints its traceback, with a line saying so."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except RfprmError as exc:
        from rfprm_tts.settings import without_passwords

        print(f"error: {without_passwords(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not print a traceback now
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rfprm ... | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        return 0
    except Exception:  # everything not ours to explain is a bug to report
        traceback.print_exc()
        from rfprm_tts import __version__

        print(
            f"rfprm {__version__}: the error above is a bug in rfprm-tts, not in what you gave it; please report "
            "it with the command you ran and the lines above",
            file=sys.stderr,
        )
        return 1
