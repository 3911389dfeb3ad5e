"""Answer equivalence: do two final answers say the same thing?

Cheap checks first (normalised strings, plain numbers); math-verify for the rest (fractions,
expressions, intervals, LaTeX forms). math-verify runs in a worker program of its own
(`python -m rfprm_tts.grading.worker`, over a pipe): its timeouts use SIGALRM, which works only
on a main thread, and a worker started as its own program never re-imports the caller's main
module (multiprocessing's spawn does, which breaks a plain script without a `__main__` guard).
So verdicts are the same in a script, under Jupyter, the CLI, pytest and from worker threads.

Workers form a small pool (MAX_WORKERS, started as needed), so one caller's slow comparisons
do not queue every other caller's behind them. A comparison that runs past its time limit, or
that the worker cannot make, is not "equal": `compare` says None (unchecked), and `equivalent`
and `vote` log it and count it (`unchecked_comparisons()`), never silently. A new worker makes
one comparison (imports, parser set-up) before the clock starts, so a slow start is not
mistaken for a stuck comparison. A vote has a time budget for all its comparisons: answers
that only math-verify can compare (a prompt can ask for `\\boxed{9^{9^{9^{k}}}}`) grow its work
as n^2, so past the budget it falls back to spellings, counting each pair it left undecided.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from fractions import Fraction
from typing import NamedTuple

log = logging.getLogger(__name__)
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
WORKER_START_TIMEOUT_S = 120.0
MAX_WORKERS = min(4, os.cpu_count() or 1)  # each is a Python process with sympy loaded (about 150 MB)
VOTE_BUDGET_S = 10.0  # all of one vote's math-verify comparisons


def normalize(answer: str) -> str:
    """A canonical spelling for string comparison: no $, spaces, \\left/\\right, \\text{},
    thousands separators or trailing period; \\dfrac and \\tfrac as \\frac."""
    s = answer.strip().strip("$").strip()
    s = _TEXT_WRAPPERS.sub(r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s


def choice_letter(answer: str | None, letters: str = "ABCD") -> str | None:
    """The letter a multiple-choice answer names: "B", "(B)", "B)", "B. 3.5", "\\text{B}";
    None when it names none."""
    if answer is None:
        return None
    s = _TEXT_WRAPPERS.sub(r"\1", answer).strip().strip("$").strip()
    m = re.match(rf"^\(?([{letters}])\)?(?=$|[).:\s])", s)
    return m.group(1) if m else None


def as_number(answer: str) -> Fraction | None:
    """The exact value of a plain number ("18", "-0.5", "1,234", "3/4"), else None."""
    s = normalize(answer)
    m = re.fullmatch(r"\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if m:
        s = f"{m.group(1)}/{m.group(2)}"
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def compare(a: str | None, b: str | None, timeout_s: float = 5.0) -> bool | None:
    """True when the answers are the same (equal spellings or numbers, else math-verify),
    False when not, None when math-verify could not decide in `timeout_s` (or not run)."""
    verdict = cheap(a, b)
    if verdict is not None or a is None or b is None:
        return verdict
    return _pool.compare(a, b, timeout_s)


def cheap(a: str | None, b: str | None) -> bool | None:
    """`compare` without math-verify: None when only math-verify could tell."""
    if a is None or b is None:
        return False
    if normalize(a) == normalize(b):
        return True
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return x == y
    return None


QUICK_SPELLINGS = 16  # distinct answers whose grouping takes well under a millisecond


def quick_to_group(answers: Iterable[str | None]) -> bool:
    """Is grouping these answers quick: few distinct spellings, compared without math-verify
    (seconds, in a subprocess) because there is one or they are all plain numbers (`cheap`)?"""
    spellings = {normalize(a): a for a in answers if a is not None}
    return len(spellings) <= 1 or (
        len(spellings) <= QUICK_SPELLINGS and all(as_number(a) is not None for a in spellings.values())
    )


def equivalent(a: str | None, b: str | None, timeout_s: float = 5.0) -> bool:
    """`compare` as a yes/no: an unchecked comparison counts as "not equal" (logged, counted)."""
    return compare(a, b, timeout_s) is True


_unchecked = 0
_unchecked_lock = threading.Lock()


def unchecked_comparisons() -> int:
    """How many comparisons in this process math-verify could not decide (each counted as
    "not equal" and logged)."""
    return _unchecked


def _count_unchecked() -> None:
    global _unchecked
    with _unchecked_lock:
        _unchecked += 1


class _Worker:
    """math-verify in a child program, one comparison at a time (the pool lends it to one
    caller at a time); a stuck or dead worker is killed and the next comparison starts anew."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue = queue.Queue()

    def compare(self, a: str, b: str, timeout_s: float) -> bool | None:
        reply, why = self._ask_warm({"a": a, "b": b}, timeout_s)
        if reply is None or "equal" not in reply:
            _count_unchecked()
            why = why or (reply or {}).get("error", "no verdict")
            log.warning("math-verify could not compare %r with %r (%s): counted as not equal", a[:200], b[:200], why)
            return None
        return bool(reply["equal"])

    def _ask_warm(self, request: dict, timeout_s: float) -> tuple[dict | None, str | None]:
        if self._process is None or self._process.poll() is not None:
            reply, why = self._start()
            if reply is None:
                return None, why
        return self._ask(request, timeout_s)

    def _start(self) -> tuple[dict | None, str | None]:
        """A new worker, warmed up by one comparison that is not timed by the caller's limit."""
        self._replies = queue.Queue()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rfprm_tts.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=_read_lines, args=(self._process.stdout, self._replies), daemon=True).start()
        reply, why = self._ask({"a": "x+1", "b": "1+x"}, WORKER_START_TIMEOUT_S)
        if reply is None or not reply.get("equal"):
            return None, why or f"the math-verify worker did not start: {(reply or {}).get('error')}"
        return reply, None

    def _ask(self, request: dict, timeout_s: float) -> tuple[dict | None, str | None]:
        process = self._process
        assert process is not None and process.stdin is not None  # started by _ask_warm, with a pipe
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self._stop()
            return None, f"no verdict in {timeout_s} s"
        except OSError as exc:  # the worker died
            self._stop()
            return None, f"the math-verify worker failed: {exc}"
        if reply is None:
            self._stop()
            return None, "the math-verify worker exited"
        return reply, None

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def _read_lines(stream, replies: queue.Queue) -> None:
    """The worker's replies, one JSON object a line; None when it exits."""
    for line in stream:
        try:
            replies.put(json.loads(line))
        except json.JSONDecodeError:
            continue  # something else wrote to the worker's stdout
    replies.put(None)


class _Pool:
    """Up to MAX_WORKERS workers, each serving one comparison at a time; a caller takes an
    idle one, starts one when none is idle and the pool is not full, else waits for one."""

    def __init__(self, size: int) -> None:
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()  # the warmest first
        self._lock = threading.Lock()
        self._size, self._made = size, 0

    def compare(self, a: str, b: str, timeout_s: float) -> bool | None:
        worker = self._take()
        try:
            return worker.compare(a, b, timeout_s)
        finally:
            self._idle.put(worker)

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle.empty() and self._made < self._size:
                self._made += 1
                return _Worker()
        return self._idle.get()


_pool = _Pool(MAX_WORKERS)


class Vote(NamedTuple):
    """A vote's outcome: the winning answer (its first spelling), the indices of its
    members, and how many comparisons could not be checked (counted as "different")."""

    answer: str | None
    members: list[int]
    unchecked: int = 0


def vote(
    answers: list[str | None],
    weights: list[float] | None = None,
    timeout_s: float = 5.0,
    budget_s: float = VOTE_BUDGET_S,
) -> Vote:
    """Group equivalent answers (`answer_groups`) and pick the group with the largest total
    weight (the count when unweighted); None answers abstain. Ties go to the group seen first."""
    groups, unchecked = answer_groups(answers, timeout_s, budget_s)
    if not groups:
        return Vote(None, [], unchecked)
    weight = (lambda i: 1.0) if weights is None else (lambda i: weights[i])
    best = max(groups, key=lambda g: sum(weight(i) for i in g))
    return Vote(answers[best[0]], best, unchecked)


def answer_groups(
    answers: list[str | None], timeout_s: float = 5.0, budget_s: float = VOTE_BUDGET_S
) -> tuple[list[list[int]], int]:
    """The indices of equivalent answers, grouped in the order first seen (None answers in
    none), and how many comparisons could not be checked. An answer spelled like one seen
    before joins its group without a comparison. The comparisons together get `budget_s`;
    after it only spellings and plain numbers are compared, and each pair that math-verify
    would have been asked about counts as unchecked (different)."""
    groups: list[list[int]] = []
    group_of: dict[str, list[int]] = {}  # normalized spelling -> its group
    unchecked = 0
    deadline = time.monotonic() + budget_s
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        key = normalize(answer)
        if key not in group_of:
            for group in groups:
                left = deadline - time.monotonic()
                verdict = (
                    compare(answers[group[0]], answer, min(timeout_s, left))
                    if left > 0
                    else cheap(answers[group[0]], answer)
                )
                unchecked += verdict is None
                if verdict:
                    group_of[key] = group
                    break
            else:
                group_of[key] = []
                groups.append(group_of[key])
        group_of[key].append(i)
    if time.monotonic() > deadline and unchecked:
        log.warning(
            "a vote over %d answers ran past its %.0f s for comparisons; %d pairs left undecided "
            "(counted as different)",
            len(answers),
            budget_s,
            unchecked,
        )
    return groups, unchecked
