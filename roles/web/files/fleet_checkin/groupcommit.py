"""Group commit: requests that arrive while a transaction is in flight share the next one.

A database charges most of a small transaction per statement and per COMMIT
(the binlog and redo log syncs), not per row. So while one thread's
transaction runs, the threads that arrive for the same shard queue up; when it
ends, the first of them leads one transaction for everything queued by then.
There is no timer: a lone request is sent at once, and batches only grow as
far as the load makes requests overlap, so a light load pays no latency for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Entry:
    item: Any
    done: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # this entry's thread runs the next batch
    outcome: Any = None


class GroupCommit:
    """Runs submitted items through `run_batch` in batches of at most `max_batch`.

    `run_batch(items)` returns one outcome per item, in order: a result, or an
    exception instance that is raised in that item's thread. An exception
    raised by `run_batch` itself is raised in every thread of the batch.
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_batch: int):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._leading = False

    def submit(self, item: Any) -> Any:
        """Run `item` in the next batch and return its result (or raise its error)."""
        entry = _Entry(item)
        with self._lock:
            self._queue.append(entry)
            if not self._leading:
                self._leading = entry.leads = True
        if not entry.leads:
            entry.done.wait()  # set when the item ran, or when this thread is handed the lead
        if entry.leads:
            self._lead()
        if isinstance(entry.outcome, BaseException):
            raise entry.outcome
        return entry.outcome

    def _lead(self) -> None:
        # The leader's own entry is first in the queue: nobody leads while
        # the queue holds entries, so a new leader arrives to an empty one,
        # and a handed-over lead goes to the oldest waiting entry.
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            outcomes = list(self._run_batch([entry.item for entry in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"run_batch returned {len(outcomes)} outcomes for {len(batch)} items")
        except BaseException as exc:  # every waiter must learn the outcome, whatever it is
            outcomes = [exc] * len(batch)
        for entry, outcome in zip(batch, outcomes, strict=True):
            entry.outcome = outcome
            entry.leads = False
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.done.set()
            else:
                self._leading = False
        for entry in batch:
            entry.done.set()
