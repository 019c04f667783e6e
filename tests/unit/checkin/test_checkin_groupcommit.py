"""GroupCommit: overlapping submissions share a batch, a lone one runs at once, outcomes reach their threads."""

from __future__ import annotations

import threading
import time

import pytest
from fleet_checkin.groupcommit import GroupCommit


class Recorder:
    """A run_batch that records its batches and can hold the first one until released."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[list] = []
        self.running = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items):
        self.batches.append(list(items))
        self.running.set()
        self.release.wait(5)
        return [ValueError(f"bad {item}") if str(item).startswith("bad") else item * 2 for item in items]


def submit_in_thread(group, item, results):
    def run():
        try:
            results[item] = group.submit(item)
        except Exception as exc:
            results[item] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_lone_submission_runs_at_once_in_its_own_batch():
    recorder = Recorder()
    group = GroupCommit(recorder, max_batch=8)

    assert group.submit(21) == 42
    assert group.submit(4) == 8
    assert recorder.batches == [[21], [4]]


def test_submissions_that_arrive_during_a_batch_share_the_next_one():
    recorder = Recorder(hold_first=True)
    group = GroupCommit(recorder, max_batch=8)
    results: dict = {}
    first = submit_in_thread(group, 1, results)
    assert recorder.running.wait(5)
    waiting = [submit_in_thread(group, item, results) for item in (2, 3, 4)]
    wait_until(lambda: len(group._queue) == 3)

    recorder.release.set()
    for thread in (first, *waiting):
        thread.join(5)

    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == [2, 3, 4]
    assert len(recorder.batches) == 2
    assert results == {1: 2, 2: 4, 3: 6, 4: 8}


def test_batches_are_capped_and_every_waiter_is_served():
    recorder = Recorder(hold_first=True)
    group = GroupCommit(recorder, max_batch=2)
    results: dict = {}
    first = submit_in_thread(group, 0, results)
    assert recorder.running.wait(5)
    waiting = [submit_in_thread(group, item, results) for item in range(1, 6)]
    wait_until(lambda: len(group._queue) == 5)

    recorder.release.set()
    for thread in (first, *waiting):
        thread.join(5)

    assert [len(batch) for batch in recorder.batches] == [1, 2, 2, 1]
    assert results == {item: item * 2 for item in range(6)}


def test_an_error_outcome_is_raised_only_in_its_own_thread():
    recorder = Recorder(hold_first=True)
    group = GroupCommit(recorder, max_batch=8)
    results: dict = {}
    first = submit_in_thread(group, 1, results)
    assert recorder.running.wait(5)
    waiting = [submit_in_thread(group, item, results) for item in ("bad-a", 7)]
    wait_until(lambda: len(group._queue) == 2)

    recorder.release.set()
    for thread in (first, *waiting):
        thread.join(5)

    assert isinstance(results["bad-a"], ValueError)
    assert str(results["bad-a"]) == "bad bad-a"
    assert results[7] == 14


def test_a_failing_run_batch_fails_its_whole_batch_and_the_group_carries_on():
    calls = []

    def run_batch(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("driver bug")
        return items

    group = GroupCommit(run_batch, max_batch=4)

    with pytest.raises(RuntimeError, match="driver bug"):
        group.submit("x")
    assert group.submit("y") == "y"


def test_a_run_batch_with_the_wrong_number_of_outcomes_is_an_error():
    group = GroupCommit(lambda items: [], max_batch=4)

    with pytest.raises(RuntimeError, match="returned 0 outcomes for 1 items"):
        group.submit("x")


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="at least 1, not 0"):
        GroupCommit(lambda items: items, max_batch=0)


def test_many_threads_all_get_their_own_answers():
    group = GroupCommit(lambda items: [item * 2 for item in items], max_batch=5)
    results: dict = {}
    threads = [submit_in_thread(group, item, results) for item in range(200)]
    for thread in threads:
        thread.join(5)

    assert results == {item: item * 2 for item in range(200)}
