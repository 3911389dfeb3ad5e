"""A benchmark run on disk: `run.json` (what was asked) and `rows.jsonl` (one graded row per
problem, strategy and budget), appended as rows finish so a crash loses no finished row.

Each append is one write() of whole lines to a file opened for appending, then fsync. A
crash can at worst leave a torn last line; it is cut off when the run is reopened.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError

log = logging.getLogger(__name__)
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
            self._cut_torn_line()

    def _check_config(self, config: dict[str, Any]) -> None:
        """A resumed run must use the same dataset and settings; it may add strategies and
        budgets (and be started by a different command line)."""
        path = self.dir / CONFIG
        if path.is_file():
            before = json.loads(path.read_text())
            changed = sorted(k for k in set(before) | set(config) if k not in GROWS and before.get(k) != config.get(k))
            if changed:
                raise ConfigError(
                    f"{self.dir} holds a run with other settings ({', '.join(changed)} differ); "
                    "resume it with the same settings, or pass a new --out directory"
                )
            config = {
                **config,
                "budgets": sorted({*before.get("budgets", []), *config.get("budgets", [])}),
                "strategies": list(dict.fromkeys([*before.get("strategies", []), *config.get("strategies", [])])),
            }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def _cut_torn_line(self) -> None:
        if not self.rows_path.is_file():
            return
        data = self.rows_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("cutting a torn last line from %s (a run was killed mid-write)", self.rows_path)
            with open(self.rows_path, "r+b") as f:
                f.truncate(keep)

    def config(self) -> dict[str, Any]:
        path = self.dir / CONFIG
        return json.loads(path.read_text()) if path.is_file() else {}

    def rows(self) -> list[dict[str, Any]]:
        """Every finished row; a torn last line (a run killed mid-write) is skipped."""
        if not self.rows_path.is_file():
            if not self.dir.is_dir():
                raise ConfigError(f"{self.dir} is not a benchmark run directory")
            return []
        rows = []
        lines = self.rows_path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number != len(lines):
                    raise ConfigError(f"{self.rows_path}:{number} is not JSON; the file was edited or corrupted") from None
        return rows

    def done(self) -> set[Key]:
        return {row_key(row) for row in self.rows()}

    def append(self, rows: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode("utf-8")
        fd = os.open(self.rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
