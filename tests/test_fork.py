"""Fork handling: ProcessLocal, keep_inherited and after_fork_in_child, checked in real forked children."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest

from videoloader import _fork
from videoloader._fork import ProcessLocal, after_fork_in_child, keep_inherited, num_inherited

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

TIMEOUT = 30


def _in_child(target: Callable[[], Any]) -> Any:
    """Run ``target`` in a child forked now; its return value (or its exception's repr) comes back."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def run() -> None:
        try:
            queue.put(("ok", target()))
        except BaseException as e:  # pragma: no cover - reported to the parent
            queue.put(("error", repr(e)))

    child = ctx.Process(target=run)
    child.start()
    try:
        kind, value = queue.get(timeout=TIMEOUT)
    finally:
        child.join(TIMEOUT)
        if child.is_alive():  # pragma: no cover - a hang: do not leave it behind
            child.kill()
            child.join(TIMEOUT)
    assert child.exitcode == 0, child.exitcode
    assert kind == "ok", value
    return value


class _Counter:
    """A picklable factory that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, int]:
        self.calls += 1
        return {"pid": os.getpid(), "n": self.calls}


def test_process_local_builds_once_per_process() -> None:
    factory = _Counter()
    local = ProcessLocal(factory)
    assert local.peek() is None and factory.calls == 0  # lazy
    value = local.get()
    assert local.get() is value and local.peek() is value and factory.calls == 1


def test_process_local_threads_build_once() -> None:
    factory = _Counter()
    local = ProcessLocal(factory)
    barrier = threading.Barrier(8)
    got: list[Any] = []

    def use() -> None:
        barrier.wait()
        got.append(local.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert factory.calls == 1 and len(got) == 8 and all(v is got[0] for v in got)


def test_process_local_reset() -> None:
    local = ProcessLocal(_Counter())
    first = local.get()
    assert local.reset() is first  # returned for the caller to close
    assert local.peek() is None and local.reset() is None
    second = local.get()
    assert second is not first and second["n"] == 2


def test_process_local_rebuilt_in_forked_child_and_parent_value_kept() -> None:
    local = ProcessLocal(_Counter())
    parent_value = local.get()

    def child() -> tuple[Any, ...]:
        before = num_inherited()
        peeked = local.peek()  # the parent's value is not this process's
        value = local.get()
        return peeked, value["pid"], value is parent_value, num_inherited() - before, local.get() is value

    peeked, pid, same, kept, stable = _in_child(child)
    assert peeked is None and pid != os.getpid() and not same and kept == 1 and stable
    assert local.get() is parent_value  # the parent's value is untouched


def test_process_local_reset_in_child_keeps_the_parent_value() -> None:
    local = ProcessLocal(_Counter())
    local.get()

    def child() -> tuple[Any, int]:
        before = num_inherited()
        return local.reset(), num_inherited() - before

    assert _in_child(child) == (None, 1)


def test_process_local_lock_held_at_fork_is_free_in_child() -> None:
    local: ProcessLocal[threading.Lock] = ProcessLocal(threading.Lock)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with local.get():
            held.set()
            release.wait(TIMEOUT)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(TIMEOUT)
    try:
        # The holding thread does not exist in the child: the copied lock would stay locked forever.
        assert _in_child(lambda: local.get().acquire(timeout=5)) is True
    finally:
        release.set()
        holder.join(TIMEOUT)


def test_process_local_pickles_empty() -> None:
    local = ProcessLocal(_Counter())
    local.get()
    copy = pickle.loads(pickle.dumps(local))
    assert copy.peek() is None
    assert copy.get()["n"] == 2  # the factory travelled (with its state), the value did not
    assert "not built" in repr(pickle.loads(pickle.dumps(local)))


def test_keep_inherited_references_objects_forever() -> None:
    class Guarded:
        freed = False

    obj = Guarded()
    before = num_inherited()

    def child() -> bool:
        keep_inherited(obj, None)
        return num_inherited() - before == 1 and any(o is obj for o in _fork._inherited)

    assert _in_child(child) is True
    assert num_inherited() == before  # the child's list is its own


def test_after_fork_callbacks_run_in_order_despite_errors() -> None:
    calls: list[str] = []

    @after_fork_in_child
    def first() -> None:
        calls.append("first")

    def broken() -> None:
        raise RuntimeError("boom")

    after_fork_in_child(broken)
    third = after_fork_in_child(lambda: calls.append("third"))
    try:
        assert callable(third)
        assert _in_child(lambda: list(calls)) == ["first", "third"]
        assert calls == []  # never in the parent
    finally:
        for callback in (first, broken, third):
            _fork._callbacks.remove(callback)


def test_after_fork_callback_error_is_logged_in_child() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Capture()
    _fork.log.addHandler(handler)
    after_fork_in_child(broken)
    try:
        assert any("after-fork callback" in m for m in _in_child(lambda: list(records)))
        assert records == []
    finally:
        _fork._callbacks.remove(broken)
        _fork.log.removeHandler(handler)
