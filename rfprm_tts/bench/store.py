"""A benchmark run on disk: `run.json` (what was asked) and `rows.jsonl` (one graded row per
problem, strategy and budget), appended as rows finish so a crash loses no finished row.

rows.jsonl is a resumable JSONL output (runtime/resumable.py): a torn last line, from a crash
mid-write, is cut off when the run is reopened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.files import jsonl_lines, parse_row, read_bytes, write_atomically
from rfprm_tts.runtime.resumable import JsonlAppender, differences, whole_rows

ROWS, CONFIG = "rows.jsonl", "run.json"
Key = tuple[str, str, int]  # problem id, strategy, budget
GROWS = ("budgets", "strategies", "command")  # what a resumed run may change


def row_key(row: dict[str, Any]) -> Key:
    return (row["problem_id"], row["strategy"], row["n"])


class RunStore:
    def __init__(self, out_dir: str | Path, config: dict[str, Any] | None = None):
        """Open a run directory. With `config` (a new or resumed run) it must match what the
        directory was started with; without it (reports) any run is read."""
        self.dir = Path(out_dir)
        self.rows_path = self.dir / ROWS
        if config is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._check_config(config)
            whole_rows(self.rows_path)

    def _check_config(self, config: dict[str, Any]) -> None:
        """A resumed run must use the same dataset and settings; it may add strategies and
        budgets (and be started by a different command line)."""
        path = self.dir / CONFIG
        if path.is_file():
            before = self.config()
            changed = differences(
                {k: v for k, v in before.items() if k not in GROWS}, {k: v for k, v in config.items() if k not in GROWS}
            )
            if changed:
                raise ConfigError(
                    f"{self.dir} holds a run with other settings ({'; '.join(changed)}); "
                    "resume it with the same settings, or pass a new --out directory"
                )
            config = {
                **config,
                "budgets": sorted({*before.get("budgets", []), *config.get("budgets", [])}),
                "strategies": list(dict.fromkeys([*before.get("strategies", []), *config.get("strategies", [])])),
            }
        write_atomically(path, json.dumps(config, indent=2, sort_keys=True))

    def config(self, *required: str) -> dict[str, Any]:
        """What the run was started with (run.json), holding every `required` key."""
        path = self.dir / CONFIG
        if not path.is_file():
            return {}
        config = parse_row(1, read_bytes(path, "a run's run.json"))
        missing = [key for key in required if isinstance(config, dict) and key not in config]
        if isinstance(config, str) or missing:
            raise ConfigError(
                f"{path} was not written by rfprm bench, or was edited "
                f"({config if isinstance(config, str) else 'no ' + ', '.join(missing)}); "
                "restore it, or rerun that benchmark into a new --out folder"
            )
        return config

    def rows(self) -> list[dict[str, Any]]:
        """Every finished row; a torn last line (a run killed mid-write) is skipped."""
        if not self.rows_path.is_file():
            if not self.dir.is_dir():
                raise ConfigError(
                    f"{self.dir} is not a benchmark run directory; give the --out folder of an rfprm bench run"
                )
            return []
        rows = []
        lines = list(jsonl_lines(self.rows_path, "a run's rows.jsonl"))
        for number, line in lines:
            row = parse_row(number, line)
            if isinstance(row, dict):
                rows.append(row)
            elif number != lines[-1][0]:
                raise ConfigError(
                    f"{self.rows_path}: {row}; the file was edited or corrupted: restore it, "
                    "or start a new --out directory"
                )
        return rows

    def done(self) -> set[Key]:
        return {row_key(row) for row in self.rows()}

    def append(self, rows: list[dict[str, Any]]) -> None:
        with JsonlAppender(self.rows_path, sort_keys=True) as out:
            out.write(rows)
