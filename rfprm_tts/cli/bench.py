"""`rfprm bench`: strategies x budgets on a dataset, graded and resumable; `rfprm bench report DIR` and `rfprm bench merge OUT DIR...`, subcommands with parsers of their own."""

from __future__ import annotations

import argparse
import logging
import os
from typing import IO, TYPE_CHECKING

from rfprm_tts.cli.arguments import (
    Commands,
    Parser,
    add_backend_arguments,
    at_least,
    finite,
    show_progress,
    solve_overrides,
)
from rfprm_tts.errors import Interrupted, RfprmError
from rfprm_tts.runtime.files import check_output

if TYPE_CHECKING:
    from rfprm_tts.bench.ray_executor import RayExecutor


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="accuracy vs compute of strategies on a dataset (`rfprm bench report DIR` redraws a run; "
        "`rfprm bench merge OUT DIR...` joins shards)",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help="math500, aime24, aime25, amc23, gsm8k, gpqa_diamond, demo, a hub name or a .jsonl path",
    )
    parser.add_argument(
        "--choice-seed", type=int, default=0, help="multiple choice (gpqa_diamond): the seed that orders the choices"
    )
    parser.add_argument("--data-dir", help="folder with <name>.jsonl files for the named datasets (offline)")
    parser.add_argument(
        "--field", action="append", metavar="FIELD=NAME", help="map question/answer/id to a file's field names"
    )
    parser.add_argument("--start", type=at_least(0), default=0, help="first problem (after shuffling)")
    parser.add_argument("--end", type=at_least(0), help="problem index to stop before")
    parser.add_argument("--limit", type=at_least(1), help="at most this many problems")
    parser.add_argument("--shuffle-seed", type=int, help="shuffle the problems with this seed first")
    parser.add_argument(
        "--num-shards", type=at_least(1), default=1, help="split the problems into K shards (job arrays)"
    )
    parser.add_argument(
        "--shard-index",
        type=at_least(0),
        default=0,
        help="run shard I of --num-shards: problems I, I+K, ...; merge with `rfprm bench merge OUT DIR...`",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["majority_vote", "best_of_n", "weighted_best_of_n"],
        help="strategies to compare, by registered name: {strategies} (default majority_vote best_of_n weighted_best_of_n)",
    )
    parser.add_argument(
        "--budgets", nargs="+", type=at_least(1), default=[1, 2, 4, 8, 16], help="sample budgets N (default 1 2 4 8 16)"
    )
    parser.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    parser.add_argument(
        "--concurrency", type=at_least(1), default=4, help="problems solved at once (per replica with Ray)"
    )
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: one solver in this process; ray: replicas on a Ray cluster (pip install 'rfprm-tts[ray]')",
    )
    parser.add_argument(
        "--ray-address", help="Ray cluster to join: auto or HOST:PORT (default: RAY_ADDRESS, else a new local Ray)"
    )
    parser.add_argument(
        "--replicas", type=at_least(1), help="Ray actors, each with its own generator and PRM (default 1)"
    )
    parser.add_argument("--cpus-per-replica", type=finite, help="CPUs Ray reserves per replica (default 1)")
    parser.add_argument(
        "--gpus-per-replica",
        type=finite,
        help="GPUs Ray reserves per replica (default: 1 if the cluster has GPUs, else 0)",
    )
    add_backend_arguments(parser)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    import asyncio
    import shlex

    from rfprm_tts.settings import Settings, without_passwords

    fields = dict(item.partition("=")[::2] for item in args.field or [])
    check_output(args.out, *[p for p in (args.dataset, args.data_dir) if p and os.path.exists(p)], folder=True)
    settings = Settings.load().with_overrides(**solve_overrides(args))
    from rfprm_tts.bench import load_problems, run_bench, write_report  # torch and transformers: after the quick checks

    problems = load_problems(
        args.dataset,
        data_dir=args.data_dir,
        fields=fields,
        start=args.start,
        end=args.end,
        limit=args.limit,
        shuffle_seed=args.shuffle_seed,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        choice_seed=args.choice_seed,
    )
    config = {
        "dataset": args.dataset,
        "problems": [problems[0].id, problems[-1].id, len(problems)],
        "problem_ids": [p.id for p in problems],
        "command": without_passwords("rfprm " + shlex.join(args.argv)),
    }
    if args.num_shards > 1:
        config["shard"] = {"index": args.shard_index, "count": args.num_shards}
    if problems[0].choices:
        config["choice_seed"] = args.choice_seed
    logging.getLogger("rfprm").info(
        "%d problems, strategies %s, budgets %s -> %s",
        len(problems),
        args.strategies,
        sorted(set(args.budgets)),
        args.out,
    )
    try:
        asyncio.run(
            run_bench(
                problems,
                args.strategies,
                args.budgets,
                settings,
                args.out,
                concurrency=args.concurrency,
                run_config=config,
                executor=bench_executor(args),
                progress=show_progress(args),
            )
        )
    except KeyboardInterrupt:
        from rfprm_tts.bench.store import RunStore

        saved = len(RunStore(args.out).rows()) if os.path.isdir(args.out) else 0
        raise Interrupted(f"{saved} rows saved in {args.out}; rerun the same command to resume") from None
    write_report(args.out, out=out)
    print(f"wrote {args.out}/summary.md", file=out)
    return 0


def bench_executor(args: argparse.Namespace) -> RayExecutor | None:
    """None (run_bench's local default) or the Ray executor the options ask for."""
    ray_options = {
        "--ray-address": args.ray_address,
        "--replicas": args.replicas,
        "--cpus-per-replica": args.cpus_per_replica,
        "--gpus-per-replica": args.gpus_per_replica,
    }
    if args.executor == "local":
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            raise RfprmError(f"{', '.join(given)} only apply to --executor ray; add it, or drop them")
        return None
    from rfprm_tts.bench.ray_executor import RayExecutor

    return RayExecutor(
        args.replicas or 1,
        address=args.ray_address,
        concurrency=args.concurrency,
        cpus_per_replica=1.0 if args.cpus_per_replica is None else args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
    )


def merge_parser() -> Parser:
    parser = Parser(prog="rfprm bench merge", description="join the run directories of a sharded run")
    parser.add_argument("out", help="the merged run directory to write")
    parser.add_argument("shards", nargs="+", help="every shard's run directory")
    return parser


def merge(args: argparse.Namespace, out: IO[str]) -> int:
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


def report(args: argparse.Namespace, out: IO[str]) -> int:
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
