"""Process-local state of a dataset: a pool of open readers, counters, threads.

Datasets hold configuration only. Everything live (readers, their HTTP
sessions, thread pools) is built lazily in the process that uses it, in a
``ProcessLocal``. A forked DataLoader worker finds its parent's state: it
builds its own and keeps the inherited one referenced, never closing it or
letting the garbage collector reap it (closing an inherited aiohttp session
hangs the parent's next request); see ``videoloader._fork``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._fork import ProcessLocal
from ._heap import TRIM_EVERY_SAMPLES, trim_heap

log = logging.getLogger(__name__)

__all__ = ["ProcessState", "ReaderPool", "close_process_state", "process_state"]

# Guards the creation of a holder's ProcessLocal (per process: a lock held by
# another thread at fork time would stay held in the child).
_STATE_LOCK: ProcessLocal[threading.Lock] = ProcessLocal(threading.Lock)


class ReaderPool:
    """A small LRU of idle open readers, shared by the threads of one process.

    A thread checks a reader out with :meth:`acquire` (so no two threads use
    one reader at once) and gives it back with :meth:`release`; readers beyond
    ``max_idle`` are closed, oldest first. A reader that failed is closed with
    :meth:`discard` instead of being given back.

    Args:
        max_idle: idle readers kept open (0: close each reader after use).
    """

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self._idle: list[tuple[str, Any]] = []  # (key, reader), most recently used last
        self._lock = threading.Lock()
        self.num_opened = 0

    def acquire(self, key: str, open_reader: Callable[[], Any]) -> tuple[Any, bool]:
        """An idle reader for ``key``, or a new one: ``(reader, is_new)``."""
        with self._lock:
            for j in range(len(self._idle) - 1, -1, -1):
                if self._idle[j][0] == key:
                    return self._idle.pop(j)[1], False
        reader = open_reader()  # outside the lock: opening reads the index over the network
        with self._lock:
            self.num_opened += 1
        return reader, True

    def release(self, key: str, reader: Any) -> None:
        """Give a healthy reader back; the oldest idle ones beyond ``max_idle`` are closed."""
        with self._lock:
            self._idle.append((key, reader))
            excess = len(self._idle) - self.max_idle
            evicted = self._idle[:excess] if excess > 0 else []
            del self._idle[: max(excess, 0)]
        for _, r in evicted:
            _close(r)

    def discard(self, reader: Any) -> None:
        """Close a reader that failed (its state may be stale, e.g. the source changed)."""
        _close(reader)

    def __len__(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        """Close every idle reader."""
        with self._lock:
            idle, self._idle = self._idle, []
        for _, r in idle:
            _close(r)


def _close(reader: Any) -> None:
    try:
        reader.close()
    except Exception as e:  # closing must never mask the sample's own outcome
        from ..io import redact_text

        # No exc_info: a library's traceback may quote the raw URL.
        log.debug("error closing %r: %s: %s", reader, type(e).__name__, redact_text(str(e)))


class ProcessState:
    """What one process holds for one dataset: readers, transfer totals, counters."""

    def __init__(self, max_open_readers: int, max_concurrent_samples: int) -> None:
        from ..io import TransferStats

        self.readers = ReaderPool(max_open_readers)
        # Totals only: per-sample records stay with each reader.
        self.stats = TransferStats(max_records=0)
        self.num_samples = 0
        self.num_skipped = 0
        self.num_errors = 0
        self.lock = threading.Lock()
        self._max_threads = max_concurrent_samples
        self._executor: ThreadPoolExecutor | None = None
        self._decoders: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        """Threads that open readers and download the samples of one batch concurrently."""
        with self.lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_threads, thread_name_prefix="videoloader-sample")
            return self._executor

    def decode_executor(self) -> ThreadPoolExecutor:
        """One thread per usable core (at most ``max_concurrent_samples``) that decodes
        downloaded samples (decoding releases the GIL)."""
        with self.lock:
            if self._decoders is None:
                threads = min(_usable_cores(), self._max_threads)
                self._decoders = ThreadPoolExecutor(threads, thread_name_prefix="videoloader-decode")
            return self._decoders

    def count(self, *, skipped: bool = False, error: bool = False) -> None:
        """Count one finished sample; every ``TRIM_EVERY_SAMPLES`` give freed heap back to the OS."""
        with self.lock:
            self.num_samples += 1
            self.num_skipped += skipped
            self.num_errors += error
            trim = self.num_samples % TRIM_EVERY_SAMPLES == 0
        if trim:
            trim_heap()  # see _heap: without it a many-threaded loader's RSS creeps up

    def close(self) -> None:
        # Downloads first: they hand their samples to the decoders.
        for attr in ("_executor", "_decoders"):
            pool = getattr(self, attr)
            if pool is not None:
                pool.shutdown(wait=True)
                setattr(self, attr, None)
        self.readers.close()


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def process_state(holder: Any, attr: str, factory: Callable[[], ProcessState]) -> ProcessState:
    """This process's state of ``holder``, held in ``holder.<attr>`` (a ``ProcessLocal``).

    Built with ``factory`` on first use in each process; a forked child keeps
    its parent's state aside, unclosed, and builds its own. ``factory`` is
    stored, so it should not refer to ``holder`` (that would make a cycle).
    """
    local = holder.__dict__.get(attr)
    if local is None:
        with _STATE_LOCK.get():
            local = holder.__dict__.get(attr)
            if local is None:
                local = holder.__dict__[attr] = ProcessLocal(factory)
    state: ProcessState = local.get()
    return state


def close_process_state(holder: Any, attr: str) -> None:
    """Close this process's state of ``holder`` (a parent's, inherited across fork, is left alone).

    The next :func:`process_state` call builds a new one.
    """
    local = holder.__dict__.pop(attr, None)
    state = local.reset() if local is not None else None
    if state is not None:
        state.close()
