"""BatchWorker (runtime/batch_worker.py): what concurrent callers submit goes to one worker
thread in batches. A first item that blocks until released holds the worker, so what is
queued meanwhile, and so each batch, is known."""

import threading

import pytest

from rfprm_tts.runtime.batch_worker import BatchWorker

WAIT_S = 10.0  # a bound on waits that return at once when the worker is right


class Recorder:
    """run_batch: doubles each number; "hold" waits until released; a negative number fails
    the batch it is in."""

    def __init__(self):
        self.batches: list[list] = []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if "hold" in items:
            self.started.set()
            assert self.release.wait(WAIT_S)
        if any(isinstance(i, int) and i < 0 for i in items):
            raise ValueError(f"negative: {items}")
        return [i * 2 for i in items]


def held(worker: BatchWorker, run: Recorder):
    """Submit "hold" and wait until the worker runs it."""
    future = worker.submit("hold")
    assert run.started.wait(WAIT_S)
    return future


def test_what_is_queued_meanwhile_goes_in_one_batch_in_order():
    run, sizes = Recorder(), []
    worker = BatchWorker(run, on_batch=lambda items, size: sizes.append((items, size)))
    first = held(worker, run)
    futures = [worker.submit(i) for i in (1, 2, 3)]
    run.release.set()
    assert [f.result(WAIT_S) for f in futures] == [2, 4, 6] and first.result(WAIT_S) == "holdhold"
    assert run.batches == [["hold"], [1, 2, 3]] and sizes == [(1, 1), (3, 3)]
    worker.close()


def test_a_batch_holds_at_most_max_size_counted_by_size():
    """Sizes 2, 3, 1, 7 with max_size 5: [2, 3], then [1] (1 + 7 is over), then 7, over max_size
    itself, alone."""
    run = Recorder()
    worker = BatchWorker(run, max_size=5, size=lambda item: 1 if item == "hold" else item)
    held(worker, run)
    futures = [worker.submit(i) for i in (2, 3, 1, 7)]
    run.release.set()
    assert [f.result(WAIT_S) for f in futures] == [4, 6, 2, 14]
    assert run.batches[1:] == [[2, 3], [1], [7]]
    worker.close()


def test_an_item_that_fails_its_batch_fails_alone():
    run = Recorder()
    worker = BatchWorker(run)
    held(worker, run)
    good, bad, other = (worker.submit(i) for i in (1, -1, 3))
    run.release.set()
    with pytest.raises(ValueError, match=r"negative: \[-1\]"):
        bad.result(WAIT_S)
    assert (good.result(WAIT_S), other.result(WAIT_S)) == (2, 6)
    assert run.batches[1:] == [[1, -1, 3], [1], [-1], [3]]  # the batch, then each item alone
    worker.close()


def test_close_finishes_what_is_queued_and_then_refuses_more():
    run = Recorder()
    worker = BatchWorker(run)
    held(worker, run)
    queued = worker.submit(4)
    cancelled = worker.submit(5)
    assert cancelled.cancel()
    closing = threading.Thread(target=worker.close)
    closing.start()
    run.release.set()
    closing.join(WAIT_S)
    assert not closing.is_alive() and queued.result(0) == 8
    assert run.batches == [["hold"], [4]]  # a future cancelled while queued is never run
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(6)
