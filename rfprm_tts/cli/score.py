"""`rfprm score IN -o OUT`: every row's response scored by the PRM, resumable."""

from __future__ import annotations

import argparse
import json
from typing import IO

from rfprm_tts.cli.arguments import Commands, at_least, finite, prm_settings, show_progress
from rfprm_tts.errors import RfprmError


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "score", help="score every row's response with the PRM (resumable JSONL in, JSONL out)"
    )
    parser.add_argument("input", help="JSONL: a question and a response (or a list of steps) per row")
    parser.add_argument("-o", "--out", required=True, help="the scored JSONL (run again to resume it)")
    parser.add_argument("--question-field", help="default: question, problem or prompt, the first a row has")
    parser.add_argument("--response-field", help="default: response, completion, output or solution")
    parser.add_argument("--steps-field", help="a field holding a list of steps, instead of a response to cut")
    parser.add_argument("--id-field", default="id", help="rows' id (default id): a resume checks it lines up")
    parser.add_argument(
        "--chunk-rows", type=at_least(1), default=64, help="rows scored and written together (default 64)"
    )
    parser.add_argument("--restart", action="store_true", help="discard OUT and score from the start")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--prm", help="PRM name or path ('demo' = bundled)")
    parser.add_argument("--format", help="prm.format: auto, step_tag, math_shepherd, rlhflow, skywork, ...")
    parser.add_argument("--alpha", type=finite, help="prm.alpha, the reasonflux aggregation's weight")
    parser.add_argument("--device", help="PRM device: auto, cpu, cuda")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)"
    )


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from dataclasses import asdict

    if args.steps_field and args.response_field:
        raise RfprmError("--steps-field and --response-field both say where the answer is: give one")
    settings = prm_settings(model=args.prm, format=args.format, alpha=args.alpha, device=args.device)
    from rfprm_tts.offline.score import Fields, check_run, score_file

    fields = Fields(args.question_field, args.response_field, args.steps_field, args.id_field)
    check_run(settings, args.input, args.out, fields, args.restart)  # a refusal before minutes of loading
    from rfprm_tts.prm import build_scorer  # torch and transformers: after the quick checks

    scorer = build_scorer(settings.prm)
    try:
        summary = score_file(
            scorer,
            settings,
            args.input,
            args.out,
            fields,
            chunk_rows=args.chunk_rows,
            restart=args.restart,
            progress=show_progress(args),
        )
    finally:
        scorer.close()
    rate = summary.rows / summary.seconds if summary.seconds else 0.0
    print(
        json.dumps(asdict(summary))
        if args.json
        else f"{summary.rows} rows scored into {args.out} ({summary.errors} with errors; resumed after "
        f"{summary.resumed_after}); {summary.prm_tokens:,} PRM tokens in {summary.seconds:.1f} s, {rate:.1f} rows/s",
        file=out,
    )
    if summary.rows and not summary.scored:
        raise RfprmError(
            f"no row of {args.input} could be scored (first: {summary.first_error}); fix the file or "
            "name its fields (--question-field, --response-field), then rerun with --restart"
        )
    return 0
