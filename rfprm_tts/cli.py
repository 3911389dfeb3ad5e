"""The `rfprm` command line: `rfprm solve "question"`, `rfprm bench ...` (and `rfprm bench report DIR`),
`rfprm serve`, `rfprm eval-prm FILE`, `rfprm view RESULT.json`, `rfprm score IN -o OUT`,
`rfprm select SCORED -o KEPT`.

stdout carries only each command's result (`rfprm solve --json | jq` works); logs, progress
and whatever a library or an engine process prints go to stderr, quiet unless `-v`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NoReturn

from rfprm_tts.errors import Interrupted, RfprmError
from rfprm_tts.files import check_input, check_output, jsonl, read_bytes, write_atomically
from rfprm_tts.trajectory import SolveResult

if TYPE_CHECKING:
    from rfprm_tts.context import Progress
    from rfprm_tts.settings import Settings


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
        "system_prompt": "generator__system_prompt",
        "prm": "prm__model",
        "aggregation": "prm__aggregation",
        "device": "prm__device",
    }
    overrides = {key: getattr(args, name) for name, key in mapping.items() if getattr(args, name, None) is not None}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise RfprmError(f"--param expects NAME=VALUE, got {item!r}")
        overrides[name] = _parse_value(value)
    return overrides


def _parse_value(value: str) -> Any:
    """JSON where the value is JSON (3, 0.5, true, [0.5, 0.25], {"a": 1}), else the text itself."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


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


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `solve` and `bench` that choose the strategy, generator and PRM."""
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="strategy parameter; VALUE is JSON where it parses (4, 0.5, true, '[0.5,0.25]'), else text")
    parser.add_argument("--backend", choices=["transformers", "openai", "vllm"], help="generator backend")
    parser.add_argument("--model", help="generator model name or path ('demo' = bundled)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api", choices=["chat", "completions"], help="which OpenAI API to call")
    parser.add_argument("--temperature", type=finite, help="sampling temperature")
    parser.add_argument("--max-tokens", type=at_least(1), help="most tokens per completion")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--system-prompt", help="system message before the question")
    parser.add_argument("--prm", help="PRM name or path ('demo' = bundled)")
    parser.add_argument(
        "--aggregation",
        help="last, min, mean, prod, reasonflux, or auto (default: the PRM checkpoint's own choice, else reasonflux)",
    )
    parser.add_argument("--device", help="PRM device: auto, cpu, cuda")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)")


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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (`error: ...; see 'rfprm X --help'`), exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> Parser:
    parser = Parser(prog="rfprm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    solve = commands.add_parser("solve", help="solve one question with PRM-guided search")
    solve.add_argument("question", help="the question to solve")
    solve.add_argument("--json", action="store_true", help="print the full result as JSON")
    solve.add_argument("--html", metavar="OUT.html", help="also write the search as a page (see rfprm view)")
    solve.add_argument("--strategy", help="search strategy (default: best_of_n)")
    solve.add_argument("-n", "--n", type=at_least(1), help="sample budget N")
    add_backend_arguments(solve)

    bench = commands.add_parser(
        "bench", help="accuracy vs compute of strategies on a dataset (`rfprm bench report DIR` redraws a run; "
        "`rfprm bench merge OUT DIR...` joins shards)"
    )
    bench.add_argument("--dataset", required=True,
                       help="math500, aime24, aime25, amc23, gsm8k, gpqa_diamond, demo, a hub name or a .jsonl path")
    bench.add_argument("--choice-seed", type=int, default=0, help="multiple choice (gpqa_diamond): the seed that orders the choices")
    bench.add_argument("--data-dir", help="folder with <name>.jsonl files for the named datasets (offline)")
    bench.add_argument("--field", action="append", metavar="FIELD=NAME", help="map question/answer/id to a file's field names")
    bench.add_argument("--start", type=at_least(0), default=0, help="first problem (after shuffling)")
    bench.add_argument("--end", type=at_least(0), help="problem index to stop before")
    bench.add_argument("--limit", type=at_least(1), help="at most this many problems")
    bench.add_argument("--shuffle-seed", type=int, help="shuffle the problems with this seed first")
    bench.add_argument("--num-shards", type=at_least(1), default=1, help="split the problems into K shards (job arrays)")
    bench.add_argument("--shard-index", type=at_least(0), default=0,
                       help="run shard I of --num-shards: problems I, I+K, ...; merge with `rfprm bench merge OUT DIR...`")
    bench.add_argument("--strategies", nargs="+", default=["majority_vote", "best_of_n", "weighted_best_of_n"],
                       help="strategies to compare, by registered name (default majority_vote best_of_n weighted_best_of_n)")
    bench.add_argument("--budgets", nargs="+", type=at_least(1), default=[1, 2, 4, 8, 16], help="sample budgets N (default 1 2 4 8 16)")
    bench.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    bench.add_argument("--concurrency", type=at_least(1), default=4, help="problems solved at once (per replica with Ray)")
    bench.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local: one solver in this process; ray: replicas on a Ray cluster (pip install 'rfprm-tts[ray]')")
    bench.add_argument("--ray-address", help="Ray cluster to join: auto or HOST:PORT (default: RAY_ADDRESS, else a new local Ray)")
    bench.add_argument("--replicas", type=at_least(1), help="Ray actors, each with its own generator and PRM (default 1)")
    bench.add_argument("--cpus-per-replica", type=finite, help="CPUs Ray reserves per replica (default 1)")
    bench.add_argument("--gpus-per-replica", type=finite, help="GPUs Ray reserves per replica (default: 1 if the cluster has GPUs, else 0)")
    add_backend_arguments(bench)

    serve = commands.add_parser("serve", help="OpenAI-compatible proxy: PRM-chosen answers from any upstream")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--strategy", help="default search strategy (a request's rfprm.strategy overrides)")
    serve.add_argument("-n", "--n", type=at_least(1), help="default sample budget (a request's rfprm.n overrides)")
    serve.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                       help="a key clients must send as 'Authorization: Bearer KEY' (repeatable); it shows in ps: "
                       "prefer --api-key-file or RFPRM_SERVE__API_KEYS='[\"KEY\"]'; never printed")
    serve.add_argument("--api-key-file", metavar="PATH",
                       help="a file of keys clients may send, one a line ('#' comments): keeps them out of ps and "
                       "shell history")
    serve.add_argument("--allow-no-auth", action="store_true", default=None,
                       help="serve beyond loopback without API keys (only on a network you trust)")
    add_backend_arguments(serve)

    view = commands.add_parser("view", help="a self-contained HTML page of a solve: the search tree with its "
                               "PRM scores, the chosen path, the answer groups and the usage")
    view.add_argument("result", help="a solve's JSON (rfprm solve --json > RESULT.json)")
    view.add_argument("-o", "--out", help="the page to write (default: RESULT.html beside it)")
    view.add_argument("-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)")

    score = commands.add_parser("score", help="score every row's response with the PRM (resumable JSONL in, JSONL out)")
    score.add_argument("input", help="JSONL: a question and a response (or a list of steps) per row")
    score.add_argument("-o", "--out", required=True, help="the scored JSONL (run again to resume it)")
    score.add_argument("--question-field", help="default: question, problem or prompt, the first a row has")
    score.add_argument("--response-field", help="default: response, completion, output or solution")
    score.add_argument("--steps-field", help="a field holding a list of steps, instead of a response to cut")
    score.add_argument("--id-field", default="id", help="rows' id (default id): a resume checks it lines up")
    score.add_argument("--chunk-rows", type=at_least(1), default=64, help="rows scored and written together (default 64)")
    score.add_argument("--restart", action="store_true", help="discard OUT and score from the start")
    score.add_argument("--json", action="store_true", help="print the summary as JSON")
    score.add_argument("--prm", help="PRM name or path ('demo' = bundled)")
    score.add_argument("--format", help="prm.format: auto, step_tag, math_shepherd, rlhflow, skywork, ...")
    score.add_argument("--alpha", type=finite, help="prm.alpha, the reasonflux aggregation's weight")
    score.add_argument("--device", help="PRM device: auto, cpu, cuda")
    score.add_argument("-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)")

    pick = commands.add_parser("select", help="keep the best-scored rows of an rfprm score output (for fine-tuning)")
    pick.add_argument("input", help="the output of rfprm score")
    pick.add_argument("-o", "--out", required=True, help="the kept rows (JSONL, input order)")
    pick.add_argument("--by", default="reasonflux", help="the aggregation to rank by (default reasonflux)")
    size = pick.add_mutually_exclusive_group()
    size.add_argument("--top-k", type=at_least(1), help="keep the K best per group (or overall with --per global)")
    size.add_argument("--top-frac", type=finite, help="keep this share of each group (rounded up)")
    pick.add_argument("--per", choices=["group", "global"], default="group", help="rank within groups or the whole file")
    pick.add_argument("--group-field", help="rows with the same value form a group (default: the question)")
    pick.add_argument("--min-score", type=finite, help="drop rows scoring below this")
    pick.add_argument("--require-correct", action="store_true", help="keep only rows whose answer equals the gold field")
    pick.add_argument("--gold-field", default="answer", help="the gold answer's field (default answer)")
    pick.add_argument("--response-field", help="default: response, completion, output or solution")
    pick.add_argument("--json", action="store_true", help="print the summary as JSON")
    pick.add_argument("-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)")

    evaluate = commands.add_parser(
        "eval-prm", help="ProcessBench's figures (first-error accuracy, F1) and within-problem AUROC of a verifier"
    )
    evaluate.add_argument("file", help="JSONL with problem, steps, label (first wrong step, -1 if none), optional "
                          "subset per row; 'demo' = the bundled demo-world file")
    evaluate.add_argument("--field", action="append", metavar="FIELD=NAME", help="map problem/steps/label/subset to other names")
    evaluate.add_argument("--threshold", type=finite, help="a step below it is wrong (default 0.5, a 2-label PRM's argmax)")
    evaluate.add_argument("--tune-on", metavar="SUBSET", help="use the threshold with the best F1 on this subset "
                          "(ProcessBench tunes on gsm8k) for every subset")
    evaluate.add_argument("--out", help="write each row with its step scores and predicted first error (JSONL)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--prm", help="PRM name or path ('demo' = bundled)")
    evaluate.add_argument("--format", help="prm.format: auto, step_tag, math_shepherd, rlhflow, skywork, ...")
    evaluate.add_argument("--aggregation", help="for the AUROC: last, min, mean, prod, reasonflux, or auto")
    evaluate.add_argument("--device", help="PRM device: auto, cpu, cuda")
    evaluate.add_argument("-v", "--verbose", action="store_true", help="log progress (progress bars show on a terminal anyway)")
    return parser


def prm_settings(**given: Any) -> Settings:
    """Settings from the environment and config, with the PRM options the user gave."""
    from rfprm_tts.settings import Settings

    return Settings.load().with_overrides(**{f"prm__{k}": v for k, v in given.items() if v is not None})


def write_page(result: SolveResult, path: str) -> None:
    from rfprm_tts.view import render_html

    write_atomically(path, render_html(result))
    print(f"wrote {path} ({len(result.tree)} search nodes)", file=sys.stderr)


def view_main(args: argparse.Namespace, out: IO[str]) -> int:
    from pydantic import ValidationError

    path = args.out or os.path.splitext(args.result)[0] + ".html"
    check_output(path, args.result)
    data = read_bytes(args.result, "a solve's JSON (rfprm solve QUESTION --json > RESULT.json)", limit=1 << 30)
    try:
        result = SolveResult.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RfprmError(f"{args.result} is not a solve result ({exc.error_count()} problems, first: {first['msg']}); "
                         "write one with: rfprm solve QUESTION --json > RESULT.json") from None
    write_page(result, path)
    print(path, file=out)
    return 0


def score_main(args: argparse.Namespace, out: IO[str]) -> int:
    from dataclasses import asdict

    if args.steps_field and args.response_field:
        raise RfprmError("--steps-field and --response-field both say where the answer is: give one")
    check_output(args.out, check_input(args.input, "a JSONL file with a question and a response per row"))
    settings = prm_settings(model=args.prm, format=args.format, alpha=args.alpha, device=args.device)
    from rfprm_tts.prm import build_scorer  # torch and transformers: after the quick checks
    from rfprm_tts.score_file import Fields, score_file

    scorer = build_scorer(settings.prm)
    try:
        summary = score_file(scorer, settings, args.input, args.out, Fields(args.question_field, args.response_field,
                             args.steps_field, args.id_field), chunk_rows=args.chunk_rows, restart=args.restart,
                             progress=show_progress(args))
    finally:
        scorer.close()
    rate = summary.rows / summary.seconds if summary.seconds else 0.0
    print(json.dumps(asdict(summary)) if args.json else
          f"{summary.rows} rows scored into {args.out} ({summary.errors} with errors; resumed after "
          f"{summary.resumed_after}); {summary.prm_tokens:,} PRM tokens in {summary.seconds:.1f} s, {rate:.1f} rows/s",
          file=out)
    if summary.rows and not summary.scored:
        raise RfprmError(f"no row of {args.input} could be scored (first: {summary.first_error}); fix the file or "
                         "name its fields (--question-field, --response-field), then rerun with --restart")
    return 0


def select_main(args: argparse.Namespace, out: IO[str]) -> int:
    from dataclasses import asdict

    from rfprm_tts.select_file import Rule, select_file

    rule = Rule(by=args.by, top_k=args.top_k, top_frac=args.top_frac, per=args.per, min_score=args.min_score,
                require_correct=args.require_correct, gold_field=args.gold_field, group_field=args.group_field,
                response_field=args.response_field)
    summary = select_file(args.input, args.out, rule)
    print(json.dumps(asdict(summary)) if args.json else summary.table(), file=out)
    return 0


def eval_prm_main(args: argparse.Namespace, out: IO[str]) -> int:
    if args.threshold is not None and args.tune_on is not None:
        raise RfprmError("--threshold and --tune-on both choose the threshold: give one")
    if args.out:
        check_output(args.out, args.file)
    settings = prm_settings(model=args.prm, format=args.format, aggregation=args.aggregation, device=args.device)
    from rfprm_tts.eval_prm import evaluate, read_rows, report_json  # torch and transformers: after the quick checks
    from rfprm_tts.prm import build_scorer

    rows = read_rows(args.file, dict(item.partition("=")[::2] for item in args.field or []))
    scorer = build_scorer(settings.prm)
    try:
        report, predictions = evaluate(scorer, rows, aggregation=settings.prm.aggregation, alpha=settings.prm.alpha,
                                       threshold=args.threshold, tune_on=args.tune_on, progress=show_progress(args))
    finally:
        scorer.close()
    if args.out:
        write_atomically(args.out, jsonl(predictions))
    print(report_json(report) if args.json else report.table(), file=out)
    return 0


def merge_parser() -> Parser:
    parser = Parser(prog="rfprm bench merge", description="join the run directories of a sharded run")
    parser.add_argument("out", help="the merged run directory to write")
    parser.add_argument("shards", nargs="+", help="every shard's run directory")
    return parser


def merge_main(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.bench import merge_runs, write_report

    for shard in args.shards:
        if not os.path.isdir(shard):
            raise RfprmError(f"{shard} is not a folder; give each shard's --out folder")
    check_output(args.out, *args.shards, folder=True)
    merge_runs(args.out, args.shards)
    write_report(args.out, out=out)
    print(f"wrote {args.out}/summary.md", file=out)
    return 0


def report_parser() -> Parser:
    parser = Parser(
        prog="rfprm bench report",
        description="rebuild a run's summary and plots from its rows; several runs: one plot, a line per run and strategy",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories")
    parser.add_argument("--out", help="with several runs: the folder for the joint summary and plots")
    return parser


def report_main(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.bench import write_comparison, write_report

    if len(args.dirs) == 1 and args.out is None:
        write_report(args.dirs[0])
        target = args.dirs[0]
    elif args.out is None:
        raise RfprmError("several runs make one report: say where with --out DIR")
    else:
        check_output(args.out, *args.dirs, folder=True)
        write_comparison(args.dirs, args.out)
        target = args.out
    print(f"wrote {target}/summary.md", file=out)
    return 0


# `rfprm bench report` and `rfprm bench merge` take other arguments than `rfprm bench`: their
# own parsers, chosen by the first two words (so `rfprm bench --dataset ...` keeps working).
SUB_COMMANDS = {("bench", "report"): report_parser, ("bench", "merge"): merge_parser}


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


def bench_executor(args: argparse.Namespace) -> Any:
    """None (run_bench's local default) or the Ray executor the options ask for."""
    ray_options = {"--ray-address": args.ray_address, "--replicas": args.replicas,
                   "--cpus-per-replica": args.cpus_per_replica, "--gpus-per-replica": args.gpus_per_replica}
    if args.executor == "local":
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            raise RfprmError(f"{', '.join(given)} only apply to --executor ray; add it, or drop them")
        return None
    from rfprm_tts.bench.ray_executor import RayExecutor

    return RayExecutor(
        args.replicas or 1, address=args.ray_address, concurrency=args.concurrency,
        cpus_per_replica=1.0 if args.cpus_per_replica is None else args.cpus_per_replica, gpus_per_replica=args.gpus_per_replica,
    )


def bench_main(args: argparse.Namespace, out: IO[str]) -> int:
    import asyncio
    import shlex

    from rfprm_tts.settings import Settings, without_passwords

    fields = dict(item.partition("=")[::2] for item in args.field or [])
    check_output(args.out, *[p for p in (args.dataset, args.data_dir) if p and os.path.exists(p)], folder=True)
    settings = Settings.load().with_overrides(**_solve_overrides(args))
    from rfprm_tts.bench import load_problems, run_bench, write_report  # torch and transformers: after the quick checks

    problems = load_problems(
        args.dataset, data_dir=args.data_dir, fields=fields, start=args.start, end=args.end,
        limit=args.limit, shuffle_seed=args.shuffle_seed, num_shards=args.num_shards, shard_index=args.shard_index,
        choice_seed=args.choice_seed,
    )
    config = {
        "dataset": args.dataset, "problems": [problems[0].id, problems[-1].id, len(problems)],
        "problem_ids": [p.id for p in problems], "command": without_passwords("rfprm " + shlex.join(args.argv)),
    }
    if args.num_shards > 1:
        config["shard"] = {"index": args.shard_index, "count": args.num_shards}
    if problems[0].choices:
        config["choice_seed"] = args.choice_seed
    logging.getLogger("rfprm").info("%d problems, strategies %s, budgets %s -> %s", len(problems), args.strategies,
                                    sorted(set(args.budgets)), args.out)
    try:
        asyncio.run(run_bench(problems, args.strategies, args.budgets, settings, args.out,
                              concurrency=args.concurrency, run_config=config, executor=bench_executor(args),
                              progress=show_progress(args)))
    except KeyboardInterrupt:
        from rfprm_tts.bench.store import RunStore

        saved = len(RunStore(args.out).rows()) if os.path.isdir(args.out) else 0
        raise Interrupted(f"{saved} rows saved in {args.out}; rerun the same command to resume") from None
    write_report(args.out, out=out)
    print(f"wrote {args.out}/summary.md", file=out)
    return 0


def solve_main(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.settings import Settings

    if args.html:
        check_output(args.html)  # before the solve, so its answer is never lost to a bad path
    settings = Settings.load().with_overrides(**_solve_overrides(args))
    from rfprm_tts.solver import ReasoningSolver  # torch and transformers: after the quick checks

    with ReasoningSolver(settings) as solver:
        result = solver.solve(args.question, on_progress=log_progress if args.verbose else None)
    if args.html:
        write_page(result, args.html)
    print(result.model_dump_json(indent=2) if args.json else format_result(result), file=out)
    return 0


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal, or with -v (a log file gets them only when asked)."""
    return bool(args.verbose or sys.stderr.isatty())


def log_progress(progress: Progress) -> None:
    best = "-" if progress.best_score is None else f"{progress.best_score:.3f}"
    logging.getLogger("rfprm").info(
        "round %d %s: %d candidates, %d open, %d finished, best %s; %d generated + %d PRM tokens, %.1f s",
        progress.round, progress.phase, progress.candidates, progress.open, progress.finished, best,
        progress.generated_tokens, progress.prm_tokens, progress.elapsed_s)


def serve_main(args: argparse.Namespace, out: IO[str]) -> int:
    from rfprm_tts.serve.admission import read_key_file
    from rfprm_tts.settings import Settings

    overrides = _solve_overrides(args)
    keys = [*(args.api_keys or []), *(read_key_file(args.api_key_file) if args.api_key_file else [])]
    given = {"host": args.host, "port": args.port, "api_keys": keys or None, "allow_no_auth": args.allow_no_auth}
    overrides.update({f"serve__{k}": v for k, v in given.items() if v is not None})
    settings = Settings.load().with_overrides(**overrides)
    check_port_free(settings.serve.host, settings.serve.port)
    from rfprm_tts.serve import serve  # torch and transformers: after the quick checks

    serve(settings)
    return 0


def check_port_free(host: str, port: int) -> None:
    """Refuse a taken port before the models load (uvicorn would load them, then fail to bind)."""
    import socket

    if port == 0:
        return
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise RfprmError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port, or stop what "
                         "is using it") from None


# Each command's function, by the words that name it (SUB_COMMANDS' pairs included).
HANDLERS: dict[str, Callable[[argparse.Namespace, IO[str]], int]] = {
    "solve": solve_main, "bench": bench_main, "bench report": report_main, "bench merge": merge_main,
    "serve": serve_main, "view": view_main, "score": score_main, "select": select_main, "eval-prm": eval_prm_main,
}


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
        raise RfprmError(f"unknown bench subcommand {words[1]!r}" + (f"; did you mean 'rfprm bench {close[0]}'?" if close
                         else "; rfprm bench takes options (--dataset ... --out ...), or: report DIR, merge OUT DIR..."))
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
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
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
    except Exception:  # noqa: BLE001 - everything not ours to explain is a bug to report
        traceback.print_exc()
        from rfprm_tts import __version__

        print(f"rfprm {__version__}: the error above is a bug in rfprm-tts, not in what you gave it; please report "
              "it with the command you ran and the lines above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
