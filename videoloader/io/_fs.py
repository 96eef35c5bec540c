"""Non-HTTP backends: local files (read directly), fsspec filesystems, plain file objects.

Checks differ from HTTP because these APIs return bytes, not replies:

* local files: ``os.pread`` on one descriptor per process; every batch first
  ``fstat``s it, so a size or mtime change raises ``SourceChangedError``.
  Only regular files are opened: a FIFO, socket or device (``/dev/zero``)
  is refused from ``os.stat`` before any open that could block, and the
  open itself is non-blocking, so a swap between the two cannot hang us.
* DNS failures, refused connections and TLS certificate errors raised by a
  filesystem become ``SourceUnreachableError`` at once, without retries.
* fsspec filesystems (s3, gcs, memory, ...): size and validator (etag,
  generation or mtime) are taken once from ``fs.info``; each read checks that
  exactly the bytes asked came back (fewer means the object shrank:
  ``SourceChangedError``; more: ``RangeRequestError``). Checking the validator
  on every read would cost one extra request per read, so it is not done.
  Async filesystems read all ranges concurrently on their own loop, each
  attempt bounded by a timeout; sync ones read them one by one.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence, Sized
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .._errors import (
    RangeRequestError,
    SourceAccessError,
    SourceChangedError,
    SourceError,
    SourceNotFoundError,
    SourceUnreachableError,
)
from .._types import ByteRange
from ._common import Identity, Transient, describe, gather_or_cancel, safe_cause, unreachable_reason
from ._loop import run_sync
from ._retry import RetryPolicy, retry_async, retry_sync
from ._stats import TransferRecord, TransferStats

if TYPE_CHECKING:  # pragma: no cover - fsspec is imported when first used
    from fsspec import AbstractFileSystem

__all__ = ["FileObjectBackend", "FsspecBackend", "LocalBackend", "validator_from_info"]

# What a retried filesystem call returns: bytes, or fs.info()'s dict.
S = TypeVar("S", bound=Sized)

_MIN_THROUGHPUT_BYTES_PER_SECOND = 256 * 1024
# Keys of fs.info() that identify a version, most specific first.
_VALIDATOR_KEYS = ("ETag", "etag", "e_tag", "generation", "version_id", "VersionId", "md5Hash")
_MODIFIED_KEYS = ("LastModified", "last_modified", "mtime", "updated", "modified", "created")


def validator_from_info(info: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(etag, last_modified)`` from an fsspec ``info()`` dict (either may be None)."""
    etag = next((str(info[k]) for k in _VALIDATOR_KEYS if info.get(k) not in (None, "")), None)
    modified = next((str(info[k]) for k in _MODIFIED_KEYS if info.get(k) not in (None, "")), None)
    return etag, modified


def _map_os_error(e: BaseException, redacted: str, what: str) -> BaseException:
    """Our error for a filesystem exception: not found / access / a transient fault / other."""
    if isinstance(e, (SourceError, Transient)):
        return e
    text = describe(e)
    # First: fsspec's HTTP filesystem reports a refused connection as FileNotFoundError (raised from it).
    unreachable = unreachable_reason(e)
    if unreachable is not None:
        return SourceUnreachableError(f"{redacted}: {what}: {unreachable}; not retried.")
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return SourceNotFoundError(f"{redacted}: {what}: no such file ({text}).")
    if isinstance(e, PermissionError):
        return SourceAccessError(f"{redacted}: {what}: access denied ({text}); check storage_options credentials.")
    if isinstance(e, (OSError, TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return Transient(text)
    return SourceError(f"{redacted}: {what}: {text}")


class _Recorder:
    """Record keeping and retries (through the shared loop of ``_retry``) for the non-HTTP backends."""

    def __init__(self, redacted: str, stats: TransferStats, retry: RetryPolicy) -> None:
        self._redacted = redacted
        self._stats = stats
        self._retry = retry

    def _record(self, r: ByteRange, received: int, t0: float, attempt: int, error: str | None) -> None:
        self._stats.add(
            TransferRecord(
                url=self._redacted,
                start=r.start,
                stop=r.stop,
                bytes_requested=r.nbytes,
                bytes_received=received,
                status=None,
                latency_seconds=time.perf_counter() - t0,
                attempt=attempt,
                error=error,
                ok=error is None,
            )
        )

    def _check_length(self, r: ByteRange, data: Sized) -> None:
        if len(data) < r.nbytes:
            raise SourceChangedError(
                f"{self._redacted}: asked for [{r.start}, {r.stop}), got {len(data)} bytes: the object is shorter "
                "than when it was opened; reopen the source."
            )
        if len(data) > r.nbytes:
            raise RangeRequestError(
                f"{self._redacted}: asked for [{r.start}, {r.stop}) ({r.nbytes} bytes), the filesystem returned "
                f"{len(data)} bytes."
            )

    def _sync_retrying(self, what: str, r: ByteRange | None, call: Callable[[], S], record: bool) -> S:
        """``call()`` under the retry policy; with ``record``, each attempt on ``r`` becomes a TransferRecord."""

        def once(attempt: int) -> S:
            t0 = time.perf_counter()
            result: S | None = None
            try:
                result = call()
                if r is not None:
                    self._check_length(r, result)
            except Exception as e:
                failure = _translate(e, self._redacted, what)
            else:
                if record and r is not None:
                    self._record(r, len(result), t0, attempt, None)
                return result
            err, cause = failure
            if record and r is not None:
                got = len(result) if isinstance(result, (bytes, bytearray)) else 0
                self._record(r, got, t0, attempt, str(err))
            # Outside the except block: the original is kept only as a clean __cause__.
            raise err from cause

        return retry_sync(self._retry, once, redacted=self._redacted, what=what)


def _translate(e: BaseException, redacted: str, what: str) -> tuple[BaseException, BaseException | None]:
    """``(our error, a cause safe to chain or None)`` for an exception a read raised."""
    err = _map_os_error(e, redacted, what)
    return err, (None if err is e else safe_cause(e))


def _refuse_non_regular(st: os.stat_result, redacted: str) -> None:
    """Raise unless ``st`` is a regular file: pipes and devices block or never end."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise SourceNotFoundError(f"{redacted}: is a directory, not a file.")
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "not a regular file"
    )
    raise SourceError(
        f"{redacted}: is {kind}, not a regular file; videoloader reads only regular files (a pipe or device "
        "has no size and cannot be read at random offsets, and opening one may block forever)."
    )


class LocalBackend(_Recorder):
    """A local file read with ``os.pread`` (no fsspec, no buffering, no copies beyond one)."""

    kind = "local"

    def __init__(self, path: str, *, redacted: str, stats: TransferStats, retry: RetryPolicy) -> None:
        super().__init__(redacted, stats, retry)
        self._path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _get_fd(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = self._open()
            return self._fd

    def _open(self) -> int:
        # stat first: opening a FIFO for reading blocks until a writer appears.
        # The open is non-blocking too, and its fstat is checked again, in case
        # the path was swapped in between.
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            _refuse_non_regular(os.stat(self._path), self._redacted)
            fd = os.open(self._path, flags | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            if isinstance(e, SourceError):
                raise
            err = _map_os_error(e, self._redacted, "open")
            if isinstance(err, Transient):
                err = SourceError(f"{self._redacted}: open: {err}")
            raise err from e
        try:
            _refuse_non_regular(os.fstat(fd), self._redacted)
            if getattr(os, "O_NONBLOCK", 0):
                os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def stat(self) -> Identity:
        st = os.fstat(self._get_fd())
        if stat.S_ISDIR(st.st_mode):
            raise SourceNotFoundError(f"{self._redacted}: is a directory, not a file.")
        return Identity(st.st_size, None, str(st.st_mtime_ns))

    def read(self, ranges: Sequence[ByteRange], identity: Identity) -> list[bytes]:
        fd = self._get_fd()
        st = os.fstat(fd)
        if st.st_size != identity.size or (
            identity.last_modified is not None and str(st.st_mtime_ns) != identity.last_modified
        ):
            raise SourceChangedError(
                f"{self._redacted}: the file changed since it was opened (size {st.st_size}, was {identity.size}; "
                f"mtime_ns {st.st_mtime_ns}, was {identity.last_modified}); reopen the source."
            )
        out = []
        for r in ranges:
            t0 = time.perf_counter()
            try:
                data = self._pread(fd, r)
                self._check_length(r, data)
            except SourceError as e:
                self._record(r, 0, t0, 1, str(e))
                raise
            except OSError as e:
                self._record(r, 0, t0, 1, describe(e))
                raise SourceError(f"{self._redacted}: reading [{r.start}, {r.stop}): {describe(e)}") from e
            self._record(r, len(data), t0, 1, None)
            out.append(data)
        return out

    def _pread(self, fd: int, r: ByteRange) -> bytes:
        if not hasattr(os, "pread"):  # Windows: no pread, serialise seek + read
            with self._lock:
                os.lseek(fd, r.start, os.SEEK_SET)
                return _read_full(lambda n, _off: os.read(fd, n), r)
        return _read_full(lambda n, off: os.pread(fd, n, off), r)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # a descriptor is per process: closing our copy after a fork is safe too


def _read_full(read: Callable[[int, int], bytes], r: ByteRange) -> bytes:
    # One pread returns at most ~2 GiB on Linux: loop until done or EOF.
    parts = []
    offset, remaining = r.start, r.nbytes
    while remaining > 0:
        chunk = read(remaining, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class FsspecBackend(_Recorder):
    """Any fsspec filesystem: concurrent ``_cat_file`` on async ones, ``cat_file`` one by one otherwise."""

    def __init__(
        self,
        fs: AbstractFileSystem,
        path: str,
        *,
        redacted: str,
        stats: TransferStats,
        retry: RetryPolicy,
        max_concurrency: int,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
    ) -> None:
        super().__init__(redacted, stats, retry)
        self._fs = fs
        self._path = path
        self._max_concurrency = max_concurrency
        self._base_timeout = connect_timeout_seconds + 2 * read_timeout_seconds
        self._async = bool(getattr(fs, "async_impl", False)) and hasattr(fs, "_cat_file")
        self.kind = "fsspec-async" if self._async else "fsspec"

    def stat(self) -> Identity:
        def call() -> dict[str, Any]:
            return self._fs.info(self._path)

        info = self._sync_retrying("info", None, call, record=False)
        if info.get("type") == "directory":
            raise SourceNotFoundError(f"{self._redacted}: is a directory, not a file.")
        if info.get("type") == "other":  # fsspec's local filesystem: a FIFO, socket or device
            raise SourceError(
                f"{self._redacted}: is not a regular file (a FIFO, socket or device); videoloader reads only "
                "regular files."
            )
        size = info.get("size")
        if size is None:
            raise SourceError(f"{self._redacted}: the filesystem reports no size for this object.")
        etag, modified = validator_from_info(info)
        return Identity(int(size), etag, modified)

    def read(self, ranges: Sequence[ByteRange], identity: Identity) -> list[bytes]:
        if self._async:
            factories = [functools.partial(self._async_fetch, r) for r in ranges]
            return run_sync(gather_or_cancel(factories, self._max_concurrency), loop=self._fs.loop)
        return [
            self._sync_retrying(
                f"reading [{r.start}, {r.stop})",
                r,
                functools.partial(self._fs.cat_file, self._path, start=r.start, end=r.stop),
                record=True,
            )
            for r in ranges
        ]

    async def _async_fetch(self, r: ByteRange) -> bytes:
        what = f"reading [{r.start}, {r.stop})"
        timeout = self._base_timeout + r.nbytes / _MIN_THROUGHPUT_BYTES_PER_SECOND

        async def once(attempt: int) -> bytes:
            t0 = time.perf_counter()
            data = b""
            failure: tuple[BaseException, BaseException | None] | None = None
            try:
                data = await asyncio.wait_for(self._fs._cat_file(self._path, start=r.start, end=r.stop), timeout)
                self._check_length(r, data)
            except asyncio.CancelledError:
                self._record(r, 0, t0, attempt, "cancelled")
                raise
            except Exception as e:
                failure = _translate(e, self._redacted, what)
            if failure is None:
                self._record(r, len(data), t0, attempt, None)
                return data
            err, cause = failure
            self._record(r, len(data), t0, attempt, str(err))
            raise err from cause  # outside the except block: no raw __context__

        return await retry_async(self._retry, once, redacted=self._redacted, what=what)

    def close(self) -> None:
        pass  # fsspec owns (and caches) its filesystem instances


class FileObjectBackend(_Recorder):
    """A plain seekable binary file object (``read``/``seek``), read under a lock."""

    kind = "fileobj"

    def __init__(self, fileobj: IO[bytes], *, redacted: str, stats: TransferStats, retry: RetryPolicy) -> None:
        super().__init__(redacted, stats, retry)
        self._f = fileobj
        self._lock = threading.Lock()

    def stat(self) -> Identity:
        with self._lock:
            here = self._f.tell()
            size = self._f.seek(0, os.SEEK_END)
            self._f.seek(here)
        return Identity(int(size))

    def read(self, ranges: Sequence[ByteRange], identity: Identity) -> list[bytes]:
        def call(r: ByteRange) -> bytes:
            with self._lock:
                self._f.seek(r.start)
                return _read_full(lambda n, _off: self._f.read(n), r)

        return [
            self._sync_retrying(f"reading [{r.start}, {r.stop})", r, functools.partial(call, r), record=True)
            for r in ranges
        ]

    def close(self) -> None:
        pass  # the caller owns the file object
