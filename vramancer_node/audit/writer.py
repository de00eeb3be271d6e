"""A dedicated thread that runs blocking jobs one at a time for trio tasks.

Theory of operation
-------------------
LMDB allows one write transaction at a time, and a commit with ``sync=True`` blocks on
``fsync`` for milliseconds, so the audit store's writes must leave the trio thread and
must never run concurrently.  :class:`WriterThread` is one ``threading.Thread`` that
takes jobs from an unbounded ``queue.SimpleQueue`` in submission order; the number of
jobs in it is bounded by its callers (one batch at a time from the writer task, plus
occasional checkpoint and cosignature jobs).  A trio task submits a job with
:meth:`WriterThread.run_sync` and sleeps until the thread hands the result (or the
exception) back through the run's :class:`trio.lowlevel.TrioToken`.

Unlike ``trio.to_thread.run_sync``, which may pick any cached worker thread, every job
runs on the same thread: the store is confined to it, which keeps its in-memory head
free of locks.

Resource handling
-----------------
The thread is a daemon thread (a hung disk must not keep the process alive after the
daemon's nursery has ended).  :meth:`WriterThread.stop` queues a sentinel behind every
job already submitted and joins the thread.

Error handling
--------------
A job's exception is re-raised in the waiting task.  A cancelled caller stops waiting,
but its job still runs to completion (a write is never abandoned half-way), and later
jobs run after it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

__all__ = ["WriterThread"]

_T = TypeVar("_T")


class WriterThread:
    """One thread, many trio callers, jobs in order; see the module docstring."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def is_current(self) -> bool:
        """Whether the calling code runs on this thread."""
        return threading.current_thread() is self._thread

    async def run_sync(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the thread after every job submitted before; return its
        result or raise its exception."""
        if not self._started:
            raise RuntimeError("the writer thread is not started")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[outcome.Outcome[_T]] = []

        def deliver(value: outcome.Outcome[_T]) -> None:
            result.append(value)
            done.set()

        def job() -> None:
            value = outcome.capture(fn, *args)
            # If the trio run is over, nobody is waiting any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver, value)

        self._jobs.put(job)
        await done.wait()
        return result[0].unwrap()

    async def stop(self) -> None:
        """Let queued jobs finish, then end the thread."""
        if not self._started:
            return
        self._jobs.put(None)
        await trio.to_thread.run_sync(self._thread.join)

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
