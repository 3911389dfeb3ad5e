"""`rfprm view RESULT.json`: a solve's page."""

from __future__ import annotations

import argparse
import os
from typing import IO

from rfprm_tts.cli.arguments import Commands, write_page
from rfprm_tts.errors import RfprmError
from rfprm_tts.runtime.files import check_output, read_bytes
from rfprm_tts.trajectory import SolveResult


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "view",
        help="a self-contained HTML page of a solve: the search tree with its "
        "PRM scores, the chosen path, the answer groups and the usage",
    )
    parser.add_argument("result", help="a solve's JSON (rfprm solve --json > RESULT.json)")
    parser.add_argument("-o", "--out", help="the page to write (default: RESULT.html beside it)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)"
    )


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from pydantic import ValidationError

    path = args.out or os.path.splitext(args.result)[0] + ".html"
    check_output(path, args.result)
    data = read_bytes(args.result, "a solve's JSON (rfprm solve QUESTION --json > RESULT.json)", limit=1 << 30)
    try:
        result = SolveResult.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RfprmError(
            f"{args.result} is not a solve result ({exc.error_count()} problems, first: {first['msg']}); "
            "write one with: rfprm solve QUESTION --json > RESULT.json"
        ) from None
    write_page(result, path)
    print(path, file=out)
    return 0
