"""Fork handling for the whole library, in one place.

A DataLoader worker started with the ``fork`` method inherits a copy of
everything the parent held: FFmpeg decoders with threads that do not exist in
the child, aiohttp sessions whose sockets the parent still uses, event loops
run by threads that were not copied, and locks that another thread may have
held at the instant of the fork. None of those may be used in the child, and
several must not even be freed there (closing an inherited aiohttp session or
freeing an FFmpeg decoder from the child hung the parent's next request, or
the child itself).

So the rule everywhere is: build live state lazily, per process
(:class:`ProcessLocal`); when a child finds a value built by its parent, it
builds its own and hands the old one to :func:`keep_inherited`, which keeps it
referenced for the life of the process, never used, closed or garbage
collected. Module-level state that must be reset in a child (a lock, a cache)
registers a callback with :func:`after_fork_in_child`; there is exactly one
``os.register_at_fork`` hook for the library, here.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ProcessLocal", "after_fork_in_child", "keep_inherited", "num_inherited"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Objects a forked child inherited from its parent: referenced forever, never used or freed.
_inherited: list[object] = []
# Callbacks run in every forked child, in registration order.
_callbacks: list[Callable[[], None]] = []
# Guards the creation of each ProcessLocal's per-process lock; held only for a
# few instructions, and replaced in the child after a fork.
_guard = threading.Lock()


def keep_inherited(*objects: object) -> None:
    """Keep objects inherited from the parent process alive, unused, for the life of this process.

    Freeing an inherited FFmpeg decoder, aiohttp session or event loop in the
    child may hang the child or break the parent's next request (their threads
    and sockets belong to the parent), so they are referenced here forever.
    ``None`` arguments are ignored.
    """
    _inherited.extend(obj for obj in objects if obj is not None)


def num_inherited() -> int:
    """How many objects this process keeps for its parent (for tests and diagnostics)."""
    return len(_inherited)


def after_fork_in_child(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` in every child process forked after this call.

    Callbacks run in registration order, right after the fork and before the
    child returns from ``os.fork()``; one that raises is logged and the others
    still run. Usable as a decorator (returns ``callback``).

    Args:
        callback: called with no arguments; should only reset state (e.g.
            replace a lock), never do I/O.
    """
    _callbacks.append(callback)
    return callback


def _run_after_fork_in_child() -> None:
    global _guard
    _guard = threading.Lock()  # first: ProcessLocal.get() may be used by the callbacks
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:
            log.exception("videoloader: an after-fork callback (%r) failed in the child process", callback)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_after_fork_in_child)


class ProcessLocal(Generic[T]):
    """A value built lazily in each process that uses it, never shared across a fork.

    ``get()`` builds the value with ``factory()`` on first use in a process. A
    forked child that finds the value its parent built does not use, close or
    free it: the old value goes to :func:`keep_inherited` and the child builds
    its own. Thread-safe: concurrent first calls build the value once.

    Pickling keeps only the factory (which must then be picklable): the value
    is rebuilt in the process that unpickles it.

    Example:
        ``_lock = ProcessLocal(threading.Lock)`` is a lock that a forked child
        never finds held by a thread of its parent.

    Args:
        factory: builds the value; called with no arguments, at most once per
            process between ``reset()`` calls.
    """

    __slots__ = ("_factory", "_lock", "_slot")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._slot: tuple[int, T] | None = None  # (pid that built it, value)
        self._lock: tuple[int, threading.Lock] | None = None  # (pid, lock guarding the build)

    def get(self) -> T:
        """This process's value, built on first use (after a fork: rebuilt, the parent's kept aside)."""
        slot = self._slot
        pid = os.getpid()
        if slot is not None and slot[0] == pid:
            return slot[1]
        with self._process_lock(pid):
            slot = self._slot
            if slot is not None and slot[0] == pid:
                return slot[1]
            if slot is not None:
                keep_inherited(slot[1])
            value = self._factory()
            self._slot = (pid, value)
            return value

    def peek(self) -> T | None:
        """This process's value if it was built, else None (never builds)."""
        slot = self._slot
        return slot[1] if slot is not None and slot[0] == os.getpid() else None

    def reset(self) -> T | None:
        """Forget the value so the next ``get()`` builds a new one.

        Returns:
            This process's value, for the caller to close if it must; None if
            it was not built here (a value inherited from the parent is kept
            aside, never returned).
        """
        pid = os.getpid()
        with self._process_lock(pid):
            slot, self._slot = self._slot, None
        if slot is None:
            return None
        if slot[0] != pid:
            keep_inherited(slot[1])
            return None
        return slot[1]

    def _process_lock(self, pid: int) -> threading.Lock:
        lock = self._lock
        if lock is not None and lock[0] == pid:
            return lock[1]
        with _guard:
            lock = self._lock
            if lock is None or lock[0] != pid:
                lock = self._lock = (pid, threading.Lock())
            return lock[1]

    def __getstate__(self) -> dict[str, Any]:
        return {"factory": self._factory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._factory = state["factory"]
        self._slot = None
        self._lock = None

    def __repr__(self) -> str:
        built = "built" if self.peek() is not None else "not built"
        name = getattr(self._factory, "__qualname__", None) or type(self._factory).__name__
        return f"ProcessLocal({name}, {built} in this process)"
