"""rfprm_tts.runtime.files on its own: reading users' JSONL, refusing outputs that destroy inputs,
writing every byte, one writer per output. Plus properties over arbitrary bytes."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfprm_tts.bench.store import RunStore
from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.files import (
    OutputLock,
    WriteError,
    append_all,
    check_output,
    iter_lines,
    jsonl_lines,
    parse_row,
    write_atomically,
)


def test_a_bare_carriage_return_inside_a_line_does_not_split_it(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"q": "a\rb"}\r\n{"q": "c"}\n\n')
    rows = [parse_row(n, line) for n, line in jsonl_lines(path, "x")]
    assert rows == [{"q": "a\rb"}, {"q": "c"}]


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"\xff{}", "is not UTF-8"),
        (b"[1]", "is not a JSON object"),
        (b"{", "is not JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "nests JSON too deeply"),
        (b'{"n": ' + b"1" * 5000 + b"}", "cannot be read"),
    ],
)
def test_a_bad_line_is_a_reason_not_an_exception(line, reason):
    assert reason in parse_row(3, line) and parse_row(3, line).startswith("line 3 ")


def test_utf16_files_are_named_with_the_fix(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes('{"q": 1}\n'.encode("utf-16"))
    with pytest.raises(ConfigError, match="UTF-16.*iconv"):
        list(jsonl_lines(path, "x"))


def test_outputs_that_are_inputs_are_refused(tmp_path):
    given_ = tmp_path / "in.jsonl"
    given_.write_text("{}\n")
    (tmp_path / "link").symlink_to(given_)
    os.link(given_, tmp_path / "hard")
    for out in (given_, tmp_path / "link", tmp_path / "hard"):
        with pytest.raises(ConfigError, match="would destroy the input"):
            check_output(out, given_)
    assert check_output(tmp_path / "new.jsonl", given_) == tmp_path / "new.jsonl"
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output(given_, folder=True)


class ShortWrites:
    """os.write that writes at most 5 bytes a call, then fails with ENOSPC after `limit` bytes."""

    def __init__(self, limit: int):
        self.limit, self.written = limit, 0
        self.real = os.write

    def __call__(self, fd: int, data) -> int:
        if self.written >= self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        count = self.real(fd, bytes(data[: min(5, self.limit - self.written)]))
        self.written += count
        return count


def test_every_byte_is_written_though_the_os_writes_fewer(tmp_path, monkeypatch):
    """The bench store used to ignore os.write's count: rows went missing on a short write."""
    monkeypatch.setattr(os, "write", ShortWrites(limit=10**6))
    store = RunStore(tmp_path, {"dataset": "d"})
    rows = [{"problem_id": str(i), "strategy": "s", "n": 1, "text": "x" * 30} for i in range(20)]
    store.append(rows)
    assert store.rows() == rows


def test_a_full_disk_is_a_write_error_that_keeps_what_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "write", ShortWrites(limit=12))
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    with pytest.raises(WriteError, match="No space left on device.*kept"):
        append_all(fd, b"0123456789abcdefghij", path)
    os.close(fd)
    assert path.read_bytes() == b"0123456789ab"


def test_write_atomically_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "page.html"
    path.write_text("old")
    monkeypatch.setattr(os, "write", ShortWrites(limit=2))
    with pytest.raises(WriteError):
        write_atomically(path, "new content")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["page.html"]  # no temp file left


def test_one_writer_per_output(tmp_path):
    out = tmp_path / "out.jsonl"
    with OutputLock(out), pytest.raises(ConfigError, match=f"process {os.getpid()}"):
        OutputLock(out).__enter__()
    with OutputLock(out):  # released, and the lock file gone with it
        pass
    assert not (tmp_path / "out.jsonl.lock").exists()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_any_bytes_read_as_rows_or_reasons(lines):
    """Whatever a file holds, each line is a row or a reason; the line count is kept."""
    data = b"\n".join(lines)
    split = list(iter_lines(io.BytesIO(data)))
    pieces = data.split(b"\n")
    pieces = pieces[:-1] if pieces[-1] == b"" else pieces  # a last "\n" ends a line, it does not start one
    expected = [line[:-1] if line.endswith(b"\r") else line for line in pieces]
    assert split == expected
    for number, line in enumerate(split, 1):
        row = parse_row(number, line)
        assert isinstance(row, dict) or row.startswith(f"line {number} ")


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=10,
        ),
    )
)
def test_any_json_object_round_trips(row):
    line = json.dumps(row, ensure_ascii=False).encode("utf-8", "backslashreplace")
    assert parse_row(1, line) == row


ROW = st.fixed_dictionaries(
    {"question": st.text(max_size=30), "response": st.text(max_size=60)},
    optional={"id": st.integers(), "extra": st.text(max_size=5)},
)
LINE = ROW.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "backslashreplace")) | st.binary(max_size=40)


def text(value: object) -> bool:
    """Non-blank Unicode text (no lone surrogate, which no file can hold)."""
    try:
        return isinstance(value, str) and value.strip() != "" and bool(value.encode("utf-8"))
    except UnicodeEncodeError:
        return False


@settings(max_examples=60, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=12), st.integers(1, 5))
def test_score_file_keeps_every_line_in_order_whatever_the_lines(tmp_path_factory, lines, chunk):
    """Any JSONL, good rows and junk mixed: one output row per non-blank line, in input order,
    each input row's fields unchanged, junk as error rows; never an exception."""
    from helpers.fakes import DigitScorer
    from rfprm_tts.offline.score import score_file
    from rfprm_tts.settings import Settings

    folder = tmp_path_factory.mktemp("score")
    source = folder / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    if source.read_bytes().startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 mark: the whole file is refused
        with pytest.raises(ConfigError, match="UTF-16"):
            score_file(DigitScorer(), Settings(), source, folder / "out.jsonl", progress=False)
        return
    expected = [parse_row(n, line) for n, line in jsonl_lines(source, "x")]
    if not expected:
        return
    if not any(isinstance(row, dict) and text(row.get("question")) and text(row.get("response")) for row in expected):
        with pytest.raises(ConfigError, match="can be scored"):  # nothing to score: refused, nothing written
            score_file(DigitScorer(), Settings(), source, folder / "out.jsonl", progress=False)
        assert not (folder / "out.jsonl").exists()
        return
    score_file(DigitScorer(), Settings(), source, folder / "out.jsonl", chunk_rows=chunk, progress=False)
    out = [json.loads(x) for x in (folder / "out.jsonl").read_text().splitlines()]
    assert len(out) == len(expected)
    for row, given_ in zip(out, expected):
        if isinstance(given_, dict):
            assert {k: row[k] for k in given_} == given_
        assert ("error" in row["rfprm"]) != (
            isinstance(given_, dict)
            and given_["question"].strip() != ""
            and given_["response"].strip() != ""
            and "step_scores" in row["rfprm"]
        )


def test_write_atomically_gives_the_mode_open_would_or_keeps_the_old_files(tmp_path):
    """The temporary file is private (mkstemp's 0600); the page a user shares must not be."""
    fresh, kept = tmp_path / "page.html", tmp_path / "script.sh"
    old = os.umask(0o022)
    try:
        write_atomically(fresh, "<p>hi</p>")
        kept.write_text("old")
        kept.chmod(0o750)
        write_atomically(kept, "new")
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o750 and kept.read_text() == "new"


NO_NEWLINE = st.binary(max_size=30).filter(lambda b: b"\n" not in b)


@settings(max_examples=80, deadline=None)
@given(st.lists(NO_NEWLINE, max_size=6), NO_NEWLINE, st.integers(1, 64))
def test_the_last_whole_line_is_found_across_blocks_before_a_torn_one(tmp_path_factory, lines, torn, block):
    from rfprm_tts.runtime.resumable import last_whole_line

    path = tmp_path_factory.mktemp("tail") / "out.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines) + torn)
    assert last_whole_line(path, block) == (lines[-1] if lines else b"")


def test_an_output_longer_than_its_input_is_not_resumed(tmp_path):
    """Rows past the input's end: another input was scored into it (a resume would score nothing)."""
    from helpers.fakes import DigitScorer
    from rfprm_tts.offline.score import score_file
    from rfprm_tts.settings import Settings

    rows = [{"id": i, "question": "Compute 1 + 1.", "response": "\\boxed{2}"} for i in range(3)]
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "short.jsonl").write_text(json.dumps(rows[0]) + "\n")
    score_file(DigitScorer(), Settings(), tmp_path / "long.jsonl", tmp_path / "out.jsonl", progress=False)
    before = (tmp_path / "out.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="holds 3 rows but .* has 1"):
        score_file(DigitScorer(), Settings(), tmp_path / "short.jsonl", tmp_path / "out.jsonl", progress=False)
    assert (tmp_path / "out.jsonl").read_bytes() == before
