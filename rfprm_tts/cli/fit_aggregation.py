"""`rfprm fit-aggregation SCORED -o MODEL.json`: a learned aggregation of step scores, fitted on
answers of known correctness (use it with prm.aggregation = "learned:MODEL.json")."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import IO

from rfprm_tts.cli.arguments import Commands, at_least, finite


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "fit-aggregation",
        help="fit a learned aggregation of step scores on an rfprm score output with known correct answers",
    )
    parser.add_argument("input", help="the output of rfprm score, with a gold answer or a correctness field per row")
    parser.add_argument("-o", "--out", required=True, help="the model file to write (JSON)")
    parser.add_argument(
        "--correct-field",
        help="a true/false field saying whether the row's answer is right (default: grade --gold-field)",
    )
    parser.add_argument("--gold-field", default="answer", help="the gold answer's field (default answer)")
    parser.add_argument("--response-field", help="default: response, completion, output or solution")
    parser.add_argument(
        "--holdout", type=finite, default=0.2, help="share of the questions held out for the comparison (default 0.2)"
    )
    parser.add_argument("--l2", type=finite, default=1.0, help="L2 penalty on the weights, > 0 (default 1.0)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the held-out split (default 0)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.errors import ConfigError
    from rfprm_tts.offline.fit_aggregation import fit_file

    if not 0 <= args.holdout < 1 or args.l2 <= 0:
        raise ConfigError("--holdout takes a share in [0, 1) and --l2 a penalty > 0")
    report = fit_file(
        args.input, args.out, args.correct_field, args.gold_field, args.response_field, args.holdout, args.l2, args.seed
    )
    if args.json:
        print(json.dumps(asdict(report)), file=out)
    else:
        print(report.table(), file=out)
        print(
            f'wrote {args.out}: use it with --aggregation learned:{args.out} (prm.aggregation = "learned:{args.out}")',
            file=out,
        )
    return 0
