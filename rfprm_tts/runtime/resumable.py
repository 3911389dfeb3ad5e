"""An append-only JSONL output that a rerun continues: `rfprm bench`'s rows.jsonl and
`rfprm score`'s OUT.jsonl.

Each append is one write of whole lines to a file opened for appending, then fsync: a crash
leaves at worst a torn last line, which `whole_rows` cuts off before a resume. What decided the
rows (the settings) is kept beside them, and `differences` names what a resume would change.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rfprm_tts.runtime.files import append_all, jsonl

log = logging.getLogger(__name__)


def whole_rows(path: Path, *, cut_torn_line: bool = True) -> int:
    """The whole rows in `path` (read in blocks: it may be large), after cutting a torn last line
    (`cut_torn_line=False`: only counting, for a check that must not write)."""
    if not path.exists():
        return 0
    rows = whole = size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            rows += block.count(b"\n")
            if (last := block.rfind(b"\n")) >= 0:
                whole = size + last + 1
            size += len(block)
    if whole < size and cut_torn_line:
        log.warning("cutting a torn last line from %s (a run was killed mid-write)", path)
        with open(path, "r+b") as f:
            f.truncate(whole)
    return rows


def last_whole_line(path: Path, block: int = 1 << 20) -> bytes:
    """The last newline-terminated line of `path`, without its newline (a torn line after it is
    not one); read backwards in blocks, however long the lines. b"" when there is none."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        tail = b""
        while True:
            start = max(0, end - block)
            f.seek(start)
            tail = f.read(end - start) + tail
            end = start
            last = tail.rfind(b"\n")
            before = tail.rfind(b"\n", 0, max(last, 0))
            if last >= 0 and (before >= 0 or start == 0):
                return tail[before + 1 : last]
            if start == 0:
                return b""


class JsonlAppender:
    """`with JsonlAppender(path) as out: out.write(rows)`: whole lines, appended and fsynced."""

    def __init__(self, path: Path, sort_keys: bool = False) -> None:
        self.path, self.sort_keys = path, sort_keys
        self._fd = -1

    def __enter__(self) -> JsonlAppender:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        append_all(self._fd, jsonl(rows, sort_keys=self.sort_keys), self.path)

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def differences(before: Any, now: Any, path: str = "") -> list[str]:
    """Each setting that differs between two JSON values, named by its dotted path with both values."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            d
            for key in sorted(set(before) | set(now), key=str)
            for d in differences(before.get(key), now.get(key), f"{path}.{key}" if path else str(key))
        ]
    if before == now:
        return []
    if re.search(r"key|token|secret|password|url", path, re.I):  # may hold credentials: name it only
        return [f"{path} changed"]
    return [f"{path or 'the run'}: {json.dumps(before)[:60]} then, {json.dumps(now)[:60]} now"]
