"""Reading users' files and writing our outputs without ever losing what the user gave.

Every command that reads JSONL reads it here: bytes split on "\\n" only (a bare "\\r" inside a
JSON string is not a line break), one line at a time decoded as UTF-8, so one bad line is one
bad row and not a failed run. Every command that writes goes through `check_output` first (an
output that is one of the inputs, or in a folder that is not there, is refused before any work)
and then either `write_atomically` (a whole file, replaced in one step) or `append_all`
(resumable outputs: every byte checked, a write error one line). `OutputLock` keeps a second
run off an output that a first one is still writing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError, RfprmError

MAX_INPUT_BYTES = 2 << 30  # a file to read whole (a result, a dataset) larger than this is refused
JSONL_ERROR_LIMIT = 500  # characters of a line's JSON error kept in an error row


class WriteError(RfprmError):
    """An output could not be written (full disk, read-only folder...): what was written before stays."""


def check_input(path: str | Path, what: str) -> Path:
    """`path` as a regular file we can read, or one clear error (a folder, a FIFO or a device
    such as /dev/zero would hang or never end)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; give {what}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; give {what}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} is a folder; give {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file (a pipe or a device); save it to a file and give that")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"cannot read {path}: permission denied; give {what} you can read")
    return path


def check_output(out: str | Path, *inputs: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work, an output that would destroy an input (the same path, a hard
    link or a symlink to it) or that cannot be written where it is."""
    out = Path(out)
    for given in inputs:
        if out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise ConfigError(
                f"the output {out} is the input {given}: writing it would destroy the input; choose another output path"
            )
    if folder:
        for given in inputs:
            if Path(given).resolve().is_relative_to(out.resolve()):
                raise ConfigError(
                    f"the input {given} is inside the output folder {out}: the run would write over it; "
                    "choose another output folder"
                )
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file, not a folder; give a folder for the run (it is created if missing)")
        parent = out if out.exists() else out.parent
    else:
        if out.is_dir():
            raise ConfigError(f"{out} is a folder; give a file path for the output")
        parent = out.parent
    parent = parent if str(parent) else Path(".")
    if not parent.exists() and not folder:
        raise ConfigError(f"the folder {parent} does not exist; create it (mkdir -p {parent}) or choose another output")
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write in {existing} (read-only, or permission denied); choose an output in a "
            "folder you can write to"
        )
    return out


def read_bytes(path: str | Path, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A whole input file, refusing ones that are not regular files or are over `limit`."""
    path = check_input(path, what)
    if path.stat().st_size > limit:
        raise ConfigError(
            f"{path} is {path.stat().st_size:,} bytes, over the {limit:,} this command reads; give a smaller file"
        )
    return path.read_bytes()


def refuse_utf16(head: bytes, path: str | Path) -> None:
    """A UTF-16 byte-order mark at the start of a file is named with the conversion to make."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(
            f"{path} is UTF-16 text; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8 IN > OUT) and give that"
        )


def decode_text(data: bytes, path: str | Path) -> str:
    """UTF-8 text (a BOM allowed), or one clear error naming the line, or the encoding to convert from."""
    refuse_utf16(data, path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line} is not UTF-8 text; convert the file to UTF-8 and give that") from None


def jsonl_lines(path: str | Path, what: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of each non-blank line, read in blocks (the file may be large)."""
    path = check_input(path, what)
    with open(path, "rb") as f:
        refuse_utf16(f.read(2), path)
        f.seek(0)
        for number, line in enumerate(iter_lines(f), 1):
            if line.strip():
                yield number, line


def iter_lines(f: Any) -> Iterator[bytes]:
    """Lines of a binary file split on b"\\n" alone, without it (and without a "\\r" before it)."""
    pending = b""
    while block := f.read(1 << 20):
        pending += block
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line[:-1] if line.endswith(b"\r") else line
    if pending:
        yield pending[:-1] if pending.endswith(b"\r") else pending


def parse_row(number: int, line: bytes) -> dict[str, Any] | str:
    """The JSON object on a line, or why it is not one (never an exception: nesting too deep,
    a number too long, bytes that are not UTF-8 are all reasons)."""
    try:
        text = line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError:
        return f"line {number} is not UTF-8 text"
    try:
        row = json.loads(text, strict=False)  # raw control characters (a bare "\r") inside strings, as some tools write
    except json.JSONDecodeError as exc:
        return f"line {number} is not JSON: {exc}"[:JSONL_ERROR_LIMIT]
    except RecursionError:
        return f"line {number} nests JSON too deeply to read"
    except ValueError as exc:  # an integer past Python's digit limit
        return f"line {number} cannot be read: {exc}"[:JSONL_ERROR_LIMIT]
    return row if isinstance(row, dict) else f"line {number} is not a JSON object"


def read_jsonl(path: str | Path, what: str) -> list[dict[str, Any]]:
    """Every row of a JSONL file, or one clear error naming the first line that is not a row."""
    rows = []
    for number, line in jsonl_lines(path, what):
        row = parse_row(number, line)
        if isinstance(row, str):
            raise ConfigError(f"{path}: {row}; fix or remove that line")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} has no rows; give {what}")
    return rows


# Characters that JSON may hold raw but that line-splitting readers (Python's str.splitlines,
# older JavaScript) treat as line breaks: written escaped, so one row stays one line everywhere.
_LINE_BREAKS = {ord("\x85"): "\\u0085", ord("\u2028"): "\\u2028", ord("\u2029"): "\\u2029"}


def jsonl(rows: Iterable[dict[str, Any]], sort_keys: bool = False) -> bytes:
    """Rows as JSONL bytes: readable UTF-8, one line a row, a lone surrogate written as the
    escape it was read from (so nothing the user gave changes)."""
    text = "".join(
        json.dumps(row, ensure_ascii=False, sort_keys=sort_keys).translate(_LINE_BREAKS) + "\n" for row in rows
    )
    return text.encode("utf-8", "backslashreplace")


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write a whole file so that a failure leaves the old one (or none), never half of it."""
    path = Path(path)
    data = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        append_all(fd, data, path)
        os.close(fd)
        fd = -1
        if path.exists() and not path.is_file():  # /dev/stdout, a FIFO: write through, not replace
            with open(path, "wb") as f:
                f.write(data)
            os.unlink(tmp)
            return
        # mkstemp makes the file private (0600): give it the mode open() would, or the old file's
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask, read from /proc where Linux shows it (os.umask can only read it by
    setting it, which would change it for every thread for a moment); else through os.umask."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def append_all(fd: int, data: bytes, path: str | Path) -> None:
    """Write every byte (os.write may write fewer than asked) and fsync; a failure is a
    WriteError that says what is kept."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "the OS wrote no bytes")
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        raise WriteError(
            f"cannot write {path}: {exc.strerror or exc}; what was written before is kept: "
            "free space or fix the folder, then rerun the same command"
        ) from None


class OutputLock:
    """An exclusive lock on an output (a `.lock` file beside it, holding the owner's process id),
    held while a run writes it, so that a second run on the same output is refused."""

    def __init__(self, out: str | Path, folder: bool = False):
        """`folder`: the output is a run folder (created if missing); the lock file goes inside."""
        out = Path(out)
        if folder:
            out.mkdir(parents=True, exist_ok=True)
        self.path = out / ".rfprm.lock" if folder else out.with_name(out.name + ".lock")
        self.out = out
        self.fd = -1

    def __enter__(self) -> OutputLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError(
                    f"another rfprm run (process {owner}) is writing {self.out}; wait for it to "
                    "finish, or choose another output"
                ) from None
            if os.path.exists(self.path) and os.path.samestat(os.fstat(fd), os.stat(self.path)):
                break  # the file is still the one we locked (a finishing run may unlink it)
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)
        os.close(self.fd)
