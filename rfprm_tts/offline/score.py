"""`rfprm score IN.jsonl -o OUT.jsonl`: score every row's response with the PRM, offline (the
ReasonFlux paper's trajectory selection for fine-tuning starts here; `rfprm select` picks).

Each output row is the input row plus an `rfprm` object: the step scores, the score under
every aggregation, the overflow note and the PRM tokens it took, or an `error` for a row that
could not be scored (the run goes on). A response with `<think>...</think>` is scored as its
thinking steps plus the final answer as one last step (the ReasonFlux input).

Long runs resume: rows are written in chunks, in input order, each chunk flushed and fsynced;
run the same command again and it continues after the last whole row (a torn last line, from
a kill mid-write, is cut). The scoring settings are kept beside the output
(OUT.jsonl.settings.json) and a resume under other settings is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfprm_tts.errors import ConfigError, Interrupted
from rfprm_tts.offline.responses import score_responses
from rfprm_tts.prm.protocol import Scorer
from rfprm_tts.runtime.files import (
    OutputLock,
    check_input,
    check_output,
    jsonl_lines,
    parse_row,
    write_atomically,
)
from rfprm_tts.runtime.resumable import JsonlAppender, differences, last_whole_line, whole_rows
from rfprm_tts.settings import Settings
from rfprm_tts.text import require_unicode

QUESTION_FIELDS = ("question", "problem", "prompt")
RESPONSE_FIELDS = ("response", "completion", "output", "solution")


@dataclass(frozen=True)
class Fields:
    """Where a row keeps its parts. None: the first of the usual names the row has."""

    question: str | None = None
    response: str | None = None
    steps: str | None = None  # a list of step strings, instead of a response to cut
    id: str = "id"  # checked on resume: the last row written must be the same input row

    def read(self, row: dict[str, Any]) -> tuple[str, str | list[str]]:
        """(question, the response, or its list of steps)."""
        question = pick(row, self.question, QUESTION_FIELDS, "question")
        if self.steps is not None:
            steps = row.get(self.steps)
            if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
                raise ValueError(f"field {self.steps!r} must be a non-empty list of strings")
            return question, [require_unicode(step, f"field {self.steps!r}") for step in steps]
        return question, pick(row, self.response, RESPONSE_FIELDS, "response")


def pick(row: dict[str, Any], name: str | None, usual: tuple[str, ...], what: str) -> str:
    names = (name,) if name else usual
    for n in names:
        if isinstance(row.get(n), str) and row[n].strip():
            return require_unicode(row[n], f"field {n!r}")  # a ConfigError is a ValueError: an error row
    flag = f"--{what}-field"
    raise ValueError(
        f"no {what}: the row has no non-empty text field {' or '.join(map(repr, names))} (name it with {flag})"
    )


def fingerprint(settings: Settings) -> dict[str, Any]:
    """What decides the scores: a resume under anything else would mix two scorings."""
    prm = settings.prm
    return {
        "model": prm.model,
        "format": prm.format,
        "dtype": prm.dtype,
        "max_length": prm.max_length,
        "overflow": prm.overflow,
        "window_overlap": prm.window_overlap,
        "alpha": prm.alpha,
        "step_separator": settings.step_separator,
    }


def check_settings(out: Path, settings: Settings) -> None:
    """Refuse to resume `out` under other scoring settings (or one not written by rfprm score)."""
    kept = Path(f"{out}.settings.json")
    now = fingerprint(settings)
    if out.exists() and out.stat().st_size > 0:
        if not kept.exists():
            raise ConfigError(
                f"{out} exists but {kept} does not, so it cannot be resumed safely: "
                "move it away, or pass --restart to score from the start"
            )
        try:
            before = json.loads(kept.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(
                f"{kept} cannot be read, so {out} cannot be resumed safely: move both away, "
                "or pass --restart to score from the start"
            ) from None
        changed = differences(before, now)
        if changed:
            what = "; ".join(changed)
            raise ConfigError(
                f"{out} was scored under other settings ({what}): resuming would mix two scorings. "
                "Use those settings, another output file, or --restart"
            )


def check_same_input(last_input: dict[str, Any] | str, out: Path, done: int, id_field: str) -> None:
    """Refuse to resume when the row `out` ended with is not the input's row at that place
    (the input changed, or another file was given): by the id field when rows have one."""
    try:
        last = json.loads(last_whole_line(out))
    except ValueError:
        raise ConfigError(
            f"the last whole row of {out} is not JSON, so it cannot be resumed safely: move it away, "
            "or pass --restart to score from the start"
        ) from None
    if not isinstance(last, dict):
        last = {}
    if isinstance(last_input, dict) and id_field in last_input and last_input.get(id_field) != last.get(id_field):
        raise ConfigError(
            f"{out} ends with {id_field}={last.get(id_field)!r} but row {done} of the input has "
            f"{id_field}={last_input.get(id_field)!r}: the input is not the one this output was scored "
            "from. Give the same input, another output file, or --restart"
        )


@dataclass
class Summary:
    """What a run did: rows written this run (scored + errors), where it resumed, PRM tokens."""

    rows: int = 0
    scored: int = 0
    errors: int = 0
    resumed_after: int = 0
    prm_tokens: int = 0
    seconds: float = 0.0
    first_error: str | None = None


def score_chunk(scorer: Scorer, chunk: list[tuple[int, dict | str]], fields: Fields, settings: Settings) -> list[dict]:
    """The output rows of one chunk, in order (one scorer call for all its good rows)."""
    parsed = [read_row(number, row, fields) for number, row in chunk]
    good = [p for p in parsed if not isinstance(p, str)]
    scored = iter(score_responses(scorer, good, settings.step_separator, settings.prm.alpha))
    out = []
    for (number, row), item in zip(chunk, parsed):
        raw = row if isinstance(row, dict) else {"line": number}
        if isinstance(item, str):
            out.append({**raw, "rfprm": {"error": item}})
            continue
        s = next(scored)
        if s.error is not None:
            out.append({**raw, "rfprm": {"error": s.error, "prm_tokens": s.prm_tokens}})
            continue
        out.append(
            {
                **raw,
                "rfprm": {
                    "step_scores": s.step_scores,
                    "scores": s.scores,
                    "steps": s.steps,
                    "prm_note": s.prm_note,
                    "prm_tokens": s.prm_tokens,
                },
            }
        )
    return out


def read_row(number: int, row: dict[str, Any] | str, fields: Fields) -> tuple[str, str | list[str]] | str:
    """A parsed row's question and answer, or why it cannot be scored (`line N: why`; a row
    that did not parse is that already)."""
    if isinstance(row, str):
        return row
    try:
        return fields.read(row)
    except ValueError as exc:
        return f"line {number}: {exc}"


def check_run(settings: Settings, source: str | Path, out: str | Path, fields: Fields, restart: bool) -> int:
    """Everything that can refuse a run, reading only, so that a command asks before it loads a
    PRM: the input (a file with a row the fields can read), the output (not the input), and
    on a resume the output's settings and its last row. Returns the input's rows."""
    source = check_input(source, "a JSONL file with a question and a response per row")
    out = check_output(out, source)
    resuming = not restart and out.exists() and out.stat().st_size > 0
    if resuming:
        check_settings(out, settings)
    done = whole_rows(out, cut_torn_line=False) if resuming else 0
    total, readable, first_error, last_written = 0, False, None, None
    for index, (number, line) in enumerate(jsonl_lines(source, "the input")):
        total += 1
        if index == done - 1:
            last_written = (number, line)  # the input row the output ends with
        if not readable:
            read = read_row(number, parse_row(number, line), fields)
            readable = not isinstance(read, str)
            first_error = first_error or (read if isinstance(read, str) else None)
    if total == 0:
        raise ConfigError(f"{source} has no rows; give a JSONL file with a question and a response per row")
    if not readable:
        raise ConfigError(
            f"no row of {source} can be scored (first: {first_error}); fix the file or name its fields "
            "(--question-field, --response-field)"
        )
    if done > total:
        raise ConfigError(
            f"{out} holds {done} rows but {source} has {total}: the input is not the one this output was "
            "scored from. Give the same input, another output file, or --restart"
        )
    if last_written is not None:
        check_same_input(parse_row(*last_written), out, done, fields.id)
    return total


def score_file(
    scorer: Scorer,
    settings: Settings,
    source: str | Path,
    out: str | Path,
    fields: Fields = Fields(),
    chunk_rows: int = 64,
    restart: bool = False,
    progress: bool = True,
) -> Summary:
    """Score `source` into `out` (see the module's docstring), resuming what `out` holds.
    Ctrl-C stops after the last whole chunk written (`Interrupted` says how many rows are kept)."""
    from tqdm import tqdm

    source = check_input(source, "a JSONL file with a question and a response per row")
    out = check_output(out, source)
    with OutputLock(out):
        if restart and out.exists():
            out.unlink()
        total = check_run(settings, source, out, fields, restart=False)  # before cutting a torn line
        summary = Summary(resumed_after=whole_rows(out))
        write_atomically(Path(f"{out}.settings.json"), json.dumps(fingerprint(settings), indent=2) + "\n")
        started = time.perf_counter()
        try:
            with (
                JsonlAppender(out) as output,
                tqdm(
                    total=total, initial=summary.resumed_after, unit="row", desc="rfprm score", disable=not progress
                ) as bar,
            ):
                chunk: list[tuple[int, dict | str]] = []

                def flush() -> None:
                    rows = score_chunk(scorer, chunk, fields, settings)
                    output.write(rows)
                    for r in rows:
                        if "error" in r["rfprm"]:
                            summary.errors += 1
                            summary.first_error = summary.first_error or r["rfprm"]["error"]
                        summary.prm_tokens += r["rfprm"].get("prm_tokens", 0)
                    summary.rows += len(rows)
                    bar.update(len(rows))
                    bar.set_postfix_str(
                        f"{summary.prm_tokens / max(time.perf_counter() - started, 1e-9):,.0f} PRM tokens/s"
                    )
                    chunk.clear()

                for index, (number, line) in enumerate(jsonl_lines(source, "the input")):
                    if index < summary.resumed_after:
                        continue  # written already (check_run matched the last of them): not even parsed
                    chunk.append((number, parse_row(number, line)))
                    if len(chunk) == chunk_rows:
                        flush()
                if chunk:
                    flush()
        except KeyboardInterrupt:  # counted on disk: Ctrl-C can land between a chunk's write and its tally
            raise Interrupted(f"{whole_rows(out)} rows saved in {out}; rerun the same command to resume") from None
    summary.scored = summary.rows - summary.errors
    summary.seconds = time.perf_counter() - started
    return summary
