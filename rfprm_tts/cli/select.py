"""`rfprm select SCORED -o KEPT`: the best-scored rows, for fine-tuning."""

from __future__ import annotations

import argparse
import json
from typing import IO

from rfprm_tts.cli.arguments import Commands, at_least, finite


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("select", help="keep the best-scored rows of an rfprm score output (for fine-tuning)")
    parser.add_argument("input", help="the output of rfprm score")
    parser.add_argument("-o", "--out", required=True, help="the kept rows (JSONL, input order)")
    parser.add_argument("--by", default="reasonflux", help="the aggregation to rank by (default reasonflux)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--top-k", type=at_least(1), help="keep the K best per group (or overall with --per global)")
    size.add_argument("--top-frac", type=finite, help="keep this share of each group (rounded up)")
    parser.add_argument(
        "--per", choices=["group", "global"], default="group", help="rank within groups or the whole file"
    )
    parser.add_argument("--group-field", help="rows with the same value form a group (default: the question)")
    parser.add_argument("--min-score", type=finite, help="drop rows scoring below this")
    parser.add_argument(
        "--require-correct", action="store_true", help="keep only rows whose answer equals the gold field"
    )
    parser.add_argument("--gold-field", default="answer", help="the gold answer's field (default answer)")
    parser.add_argument("--response-field", help="default: response, completion, output or solution")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)"
    )


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from dataclasses import asdict

    from rfprm_tts.offline.select import Rule, select_file

    rule = Rule(
        by=args.by,
        top_k=args.top_k,
        top_frac=args.top_frac,
        per=args.per,
        min_score=args.min_score,
        require_correct=args.require_correct,
        gold_field=args.gold_field,
        group_field=args.group_field,
        response_field=args.response_field,
    )
    summary = select_file(args.input, args.out, rule)
    print(json.dumps(asdict(summary)) if args.json else summary.table(), file=out)
    return 0
