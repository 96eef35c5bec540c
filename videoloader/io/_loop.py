"""The per-process event loop thread and the per-process aiohttp sessions.

Fork safety (the rules are those of ``videoloader._fork``):

* Coroutines run on fsspec's IO loop (``fsspec.asyn.get_loop()``), a daemon
  thread that fsspec re-creates in a forked child.
* aiohttp sessions live in a registry keyed by client options, built per
  process (a ``ProcessLocal``). A forked child finds the parent's sessions,
  keeps them referenced and never closes them (``keep_inherited``: closing or
  garbage-collecting an inherited session from the child hung the parent's
  next request) and builds its own.
* Sessions are reference-counted by the open ``RangeSource`` objects using
  them: the last ``close()`` closes the session and its sockets, and an
  ``atexit`` hook closes whatever is left, so neither ``close()`` nor
  interpreter exit leaves a socket open.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .._fork import ProcessLocal

if TYPE_CHECKING:  # pragma: no cover - aiohttp is imported lazily (its import takes ~0.4 s)
    from aiohttp import ClientSession

__all__ = ["SessionRegistry", "get_loop", "in_loop_thread", "run_sync", "sessions"]

T = TypeVar("T")

# Per-request cap on the connection pool of one session (the per-source
# max_concurrency is the tighter limit in practice).
_CONNECTION_LIMIT = 128
# Idle keep-alive connections are closed after this long (aiohttp's default is 15 s).
_KEEPALIVE_SECONDS = 15.0
# How long close()/atexit wait for a session to shut down.
_CLOSE_TIMEOUT_SECONDS = 5.0


def get_loop() -> asyncio.AbstractEventLoop:
    """This process's IO loop (fsspec's; started on first use in each process)."""
    import fsspec.asyn

    return fsspec.asyn.get_loop()


def in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """True if the calling thread is the one running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def run_sync(
    coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None, timeout: float | None = None
) -> T:
    """Run ``coro`` on the IO loop and wait for it from a normal thread.

    An interrupt (KeyboardInterrupt, timeout) while waiting cancels the coroutine
    so nothing keeps running behind the caller's back.
    """
    loop = loop or get_loop()
    if in_loop_thread(loop):
        coro.close()
        raise RuntimeError("videoloader.io: a blocking read was called from inside its own IO event loop")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


class _Entry:
    __slots__ = ("refs", "session")

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.refs = 0


class _ProcessSessions:
    """The sessions of one process and the lock guarding them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}


class SessionRegistry:
    """aiohttp ``ClientSession`` objects of this process, shared and reference-counted."""

    def __init__(self) -> None:
        # Per process: a forked child starts empty, the parent's sessions are kept aside unclosed.
        self._local: ProcessLocal[_ProcessSessions] = ProcessLocal(_ProcessSessions)

    def acquire(self, key: str, client_kwargs: dict[str, Any] | None = None) -> ClientSession:
        """The session for ``key`` (created on first use), with one more reference."""
        state = self._local.get()
        with state.lock:
            entry = state.entries.get(key)
            if entry is not None and not entry.session.closed:
                entry.refs += 1
                return entry.session
        # Create outside the lock: the loop thread may need the lock (a finalizer
        # calling release()) while we wait for it. Import here, not on the loop
        # thread, so the ~0.4 s import never stalls other transfers.
        import aiohttp  # noqa: F401

        session = run_sync(_new_session(dict(client_kwargs or {})))
        unused: ClientSession | None = session
        with state.lock:
            entry = state.entries.get(key)
            if entry is None or entry.session.closed:
                entry = state.entries[key] = _Entry(session)
                unused = None
            entry.refs += 1
            result = entry.session
        if unused is not None:  # lost a race with another thread
            _close_session_now(unused)
        return result

    def release(self, key: str, session: ClientSession) -> None:
        """Drop one reference; the last one closes the session.

        A session acquired by the parent before a fork is not among this
        process's sessions: releasing it in the child does nothing.
        """
        state = self._local.peek()
        if state is None:
            return
        with state.lock:
            entry = state.entries.get(key)
            if entry is None or entry.session is not session:
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            del state.entries[key]
        _close_session_now(session)

    def close_all(self) -> None:
        """Close every session of this process (atexit); a forked child leaves its parent's alone."""
        state = self._local.peek()
        if state is None:
            return
        with state.lock:
            entries, state.entries = state.entries, {}
        for entry in entries.values():
            _close_session_now(entry.session)

    def num_sessions(self) -> int:
        """Open sessions of this process (for tests)."""
        return len(self._local.get().entries)


async def _new_session(client_kwargs: dict[str, Any]) -> ClientSession:
    import aiohttp

    if "connector" not in client_kwargs:
        client_kwargs["connector"] = aiohttp.TCPConnector(
            limit=_CONNECTION_LIMIT, keepalive_timeout=_KEEPALIVE_SECONDS, enable_cleanup_closed=False
        )
    # Bodies must be the wire bytes: never decompress (we also send Accept-Encoding: identity).
    client_kwargs["auto_decompress"] = False
    session = aiohttp.ClientSession(**client_kwargs)
    # aiohttp re-sends an idempotent request once, silently, when the connection
    # drops before the reply; our RetryPolicy does that instead, so every attempt
    # is a TransferRecord (private switch, harmless if a later aiohttp drops it).
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


async def _close_session(session: ClientSession) -> None:
    await session.close()
    # Transports close their sockets in connection_lost, scheduled with call_soon:
    # yield so the file descriptors are really gone when close() returns.
    for _ in range(3):
        await asyncio.sleep(0)


def _close_session_now(session: ClientSession) -> None:
    loop = get_loop()
    if in_loop_thread(loop):  # e.g. a finalizer run by the GC on the loop thread: don't block it
        loop.create_task(_close_session(session))
        return
    try:
        run_sync(_close_session(session), loop, timeout=_CLOSE_TIMEOUT_SECONDS)
    except (concurrent.futures.TimeoutError, RuntimeError):
        pass


sessions = SessionRegistry()
atexit.register(sessions.close_all)
