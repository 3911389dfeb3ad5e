"""`rfprm bench merge OUT DIR...`: the run directories of a sharded run (job arrays, one
`rfprm bench --num-shards K --shard-index I` per task) joined into one run directory, as if
the run had not been sharded.

It refuses what would make the merged figures wrong: shards that ran other settings (the
field that differs is named), a shard given twice or missing, and work a shard has not
finished (resume that shard with its own command first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rfprm_tts.bench.store import RunStore, row_key
from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.resumable import differences

PER_SHARD = ("shard", "problems", "problem_ids", "command")  # what shards of one run differ in


def merge_runs(out_dir: str | Path, shard_dirs: list[str | Path]) -> RunStore:
    stores = [RunStore(d) for d in shard_dirs]
    configs = [store.config("problem_ids", "strategies", "budgets") for store in stores]
    for store, config in zip(stores, configs):
        shard = config.get("shard")
        if not (
            isinstance(shard, dict) and isinstance(shard.get("index"), int) and isinstance(shard.get("count"), int)
        ):
            raise ConfigError(
                f"{store.dir} is not a shard of a run (its run.json has no shard): "
                "run rfprm bench with --num-shards K --shard-index I"
            )
    _check_same_settings(stores, configs)
    count = configs[0]["shard"]["count"]
    by_index: dict[int, RunStore] = {}
    for store, config in zip(stores, configs):
        index = config["shard"]["index"]
        if index in by_index:
            raise ConfigError(f"shard {index} of {count} is given twice: {by_index[index].dir} and {store.dir}")
        by_index[index] = store
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise ConfigError(f"shards {missing} of {count} are missing: run them, then merge all {count}")

    ordered = [by_index[i] for i in range(count)]
    shard_ids = [configs[stores.index(store)]["problem_ids"] for store in ordered]
    # shard i holds problems i, i + K, ...: the unsharded order interleaves them
    problem_ids = [shard_ids[j % count][j // count] for j in range(sum(map(len, shard_ids)))]
    base = configs[0]
    rows = []
    for store, ids in zip(ordered, shard_ids):
        rows += _finished_rows(store, ids, base["strategies"], base["budgets"])
    position = {pid: i for i, pid in enumerate(problem_ids)}
    strategies = base["strategies"]
    rows.sort(key=lambda r: (position[r["problem_id"]], strategies.index(r["strategy"]), r["n"]))

    config = {k: v for k, v in base.items() if k not in PER_SHARD}
    config.update(
        problems=[problem_ids[0], problem_ids[-1], len(problem_ids)],
        problem_ids=problem_ids,
        command="rfprm bench merge " + " ".join(str(d) for d in [out_dir, *shard_dirs]),
    )
    merged = RunStore(out_dir, config)
    if merged.rows():
        raise ConfigError(f"{merged.dir} already holds rows: merge into a new directory")
    merged.append(rows)
    return merged


def _check_same_settings(stores: list[RunStore], configs: list[dict[str, Any]]) -> None:
    base = configs[0]
    for store, config in zip(stores[1:], configs[1:]):
        differ = differences(
            {k: v for k, v in base.items() if k not in PER_SHARD},
            {k: v for k, v in config.items() if k not in PER_SHARD},
        )
        if config["shard"]["count"] != base["shard"]["count"]:
            differ.append("shard count")
        if differ:
            raise ConfigError(
                f"{store.dir} ran other settings than {stores[0].dir} ({'; '.join(differ)}): "
                "every shard must be the same run"
            )


def _finished_rows(store: RunStore, problem_ids: list[str], strategies: list[str], budgets: list[int]) -> list[dict]:
    rows = store.rows()
    have = {row_key(r) for r in rows}
    if len(have) != len(rows):
        raise ConfigError(f"{store.dir}/rows.jsonl holds a row twice: the directory was edited; rerun that shard")
    want = {(pid, s, n) for pid in problem_ids for s in strategies for n in budgets}
    unfinished = sorted(want - have)
    if unfinished:
        raise ConfigError(
            f"{store.dir} has not finished {len(unfinished)} of its {len(want)} rows (e.g. {unfinished[0]}): "
            "resume that shard with its own command, then merge"
        )
    return rows
