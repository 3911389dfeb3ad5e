"""`rfprm eval-prm FILE`: ProcessBench's figures and within-problem AUROC of a verifier."""

from __future__ import annotations

import argparse
from typing import IO

from rfprm_tts.cli.arguments import Commands, finite, prm_settings, show_progress
from rfprm_tts.errors import RfprmError
from rfprm_tts.runtime.files import check_output, jsonl, write_atomically


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "eval-prm", help="ProcessBench's figures (first-error accuracy, F1) and within-problem AUROC of a verifier"
    )
    parser.add_argument(
        "file",
        help="JSONL with problem, steps, label (first wrong step, -1 if none), optional "
        "subset per row; 'demo' = the bundled demo-world file",
    )
    parser.add_argument(
        "--field", action="append", metavar="FIELD=NAME", help="map problem/steps/label/subset to other names"
    )
    parser.add_argument(
        "--threshold", type=finite, help="a step below it is wrong (default 0.5, a 2-label PRM's argmax)"
    )
    parser.add_argument(
        "--tune-on",
        metavar="SUBSET",
        help="use the threshold with the best F1 on this subset (ProcessBench tunes on gsm8k) for every subset",
    )
    parser.add_argument("--out", help="write each row with its step scores and predicted first error (JSONL)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--prm", help="PRM name or path ('demo' = bundled)")
    parser.add_argument("--format", help="prm.format: auto, step_tag, math_shepherd, rlhflow, skywork, ...")
    parser.add_argument("--aggregation", help="for the AUROC: last, min, mean, prod, reasonflux, learned:PATH, or auto")
    parser.add_argument("--device", help="PRM device: auto, cpu, cuda")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)"
    )


def run(args: argparse.Namespace, out: IO[str]) -> int:
    if args.threshold is not None and args.tune_on is not None:
        raise RfprmError("--threshold and --tune-on both choose the threshold: give one")
    if args.out:
        check_output(args.out, args.file)
    settings = prm_settings(model=args.prm, format=args.format, aggregation=args.aggregation, device=args.device)
    # torch and transformers: after the quick checks
    from rfprm_tts.offline.eval_prm import evaluate, read_rows, report_json
    from rfprm_tts.prm import build_scorer

    rows = read_rows(args.file, dict(item.partition("=")[::2] for item in args.field or []))
    scorer = build_scorer(settings.prm)
    try:
        report, predictions = evaluate(
            scorer,
            rows,
            aggregation=settings.prm.aggregation,
            alpha=settings.prm.alpha,
            threshold=args.threshold,
            tune_on=args.tune_on,
            progress=show_progress(args),
        )
    finally:
        scorer.close()
    if args.out:
        write_atomically(args.out, jsonl(predictions))
    print(report_json(report) if args.json else report.table(), file=out)
    return 0
