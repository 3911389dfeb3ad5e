"""Answer equivalence: do two final answers say the same thing?

Cheap checks first (normalised strings, plain numbers); math-verify for the rest (fractions,
expressions, intervals, LaTeX forms). math-verify's own timeout uses SIGALRM, which works
only on the main thread, so comparisons run in a worker process with a time limit; a
comparison that runs past it counts as "not equal" and the worker is replaced. A new worker
makes one comparison (imports, parser set-up) before the clock starts, so a slow start on a
busy machine is not mistaken for a stuck comparison.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import re
import threading
from fractions import Fraction

_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_pool: concurrent.futures.ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
WORKER_START_TIMEOUT_S = 120.0


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


def equivalent(a: str | None, b: str | None, timeout_s: float = 5.0) -> bool:
    """True when the answers are the same: equal spellings or numbers, else math-verify."""
    if a is None or b is None:
        return False
    if normalize(a) == normalize(b):
        return True
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return x == y
    return _math_verify(a, b, timeout_s)


def _math_verify(a: str, b: str, timeout_s: float) -> bool:
    pool = _warm_pool()
    if pool is None:
        return False
    future = pool.submit(_verify_in_worker, a, b)
    try:
        return future.result(timeout=timeout_s)
    except (concurrent.futures.TimeoutError, concurrent.futures.process.BrokenProcessPool):
        _replace_pool(pool)
        return False


def _warm_pool() -> concurrent.futures.ProcessPoolExecutor | None:
    """The worker, started on first use with one warm-up comparison; None (so "not equal")
    when it cannot start in WORKER_START_TIMEOUT_S."""
    global _pool
    with _pool_lock:
        if _pool is None:
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            try:
                pool.submit(_verify_in_worker, "x+1", "1+x").result(timeout=WORKER_START_TIMEOUT_S)
            except (concurrent.futures.TimeoutError, concurrent.futures.process.BrokenProcessPool):
                _stop(pool)
                return None
            _pool = pool
        return _pool


def _replace_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    _stop(pool)


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()  # a stuck comparison cannot be cancelled any other way
    pool.shutdown(wait=False, cancel_futures=True)


def _verify_in_worker(a: str, b: str) -> bool:
    from math_verify import parse, verify

    def read(text: str):
        return parse(text if "$" in text or "\\boxed" in text else f"${text}$")

    return bool(verify(read(a), read(b))) or bool(verify(read(b), read(a)))


def vote(
    answers: list[str | None], weights: list[float] | None = None, timeout_s: float = 5.0
) -> tuple[str | None, list[int]]:
    """Group equivalent answers and pick the group with the largest total weight (the count
    when unweighted). Returns the winning answer (its first spelling) and the indices of its
    members; None answers abstain. Ties go to the group seen first."""
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            if equivalent(answers[group[0]], answer, timeout_s):
                group.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None, []
    weight = (lambda i: 1.0) if weights is None else (lambda i: weights[i])
    best = max(groups, key=lambda g: sum(weight(i) for i in g))
    return answers[best[0]], best
