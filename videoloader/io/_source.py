"""RangeSource: batches of byte ranges from any URL, coalesced, concurrent, checked and recorded."""

from __future__ import annotations

import functools
import logging
import operator
import os
import threading
import warnings
import weakref
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, SupportsIndex, TypedDict

from .._errors import RangeRequestError, SourceError, TruncatedFileError
from .._fork import ProcessLocal
from .._types import ByteRange
from ._coalesce import COALESCE_GAP_BYTES, ROUND_TRIP_COST_BYTES, coalesce_ranges
from ._common import Backend, Identity, describe, safe_cause
from ._redact import _split_chain, redact_url
from ._retry import RetryPolicy
from ._stats import TransferStats

if TYPE_CHECKING:  # pragma: no cover - fsspec, aiohttp and the backends are imported when first used
    from fsspec import AbstractFileSystem

    from ._file import RangeFile
    from ._http import HttpBackend

__all__ = ["READ_AHEAD_BYTES", "RangeSource", "SourceLike"]

log = logging.getLogger(__name__)

#: What ``RangeSource`` reads: a URL or local path, or an open binary file
#: (an fsspec file object, or any seekable binary file object).
SourceLike = str | os.PathLike[str] | IO[bytes]

# Read-ahead of open_file(): FFmpeg's demuxers read 32 KiB at a time and seek
# often; a few of those per request is cheap, whole 5 MiB blocks (fsspec's
# default) are not.
READ_AHEAD_BYTES = 256 * 1024
# Replies kept by read_ranges(retain=True): the MP4 probe's reads (16 KiB
# first, then box by box) often hold a small moov and the first samples (or a
# whole small file).
RETAIN_BYTES = 1024 * 1024
#: Requests one ``read_ranges`` call keeps in flight at once, by default.
DEFAULT_MAX_CONCURRENCY = 64

_CONFIG = (
    "_source",
    "_storage_options",
    "_coalesce_gap_bytes",
    "_round_trip_cost_bytes",
    "_max_concurrency",
    "_retry",
    "_connect_timeout_seconds",
    "_read_timeout_seconds",
    "_retain_bytes",
    "_allow_full_read",
    "_url",
    "_identity",
)


class RangeSource:
    """Byte ranges of one object behind a URL, path or fsspec file, read the cheap and safe way.

    * Ranges closer than ``coalesce_gap_bytes`` (one request's cost in bytes)
      are merged into one request; independent requests run concurrently
      (HTTP and async filesystems), up to ``max_concurrency`` at once. A call
      needing more requests than that bridges its smallest further gaps while
      the round trips saved are worth more than the bytes added
      (``round_trip_cost_bytes`` each; see ``videoloader.io._coalesce``).
    * HTTP replies are checked: 206 with exactly the bytes asked, same ETag /
      Last-Modified / size as at open (``SourceChangedError`` otherwise); a
      server ignoring Range is caught at the status line (``RangeRequestError``,
      the few bytes already received are recorded as waste).
    * Transient faults are retried per ``retry``; every attempt becomes a
      ``TransferRecord`` in ``stats`` (URL redacted).
    * DNS failures, refused connections and TLS certificate errors are not
      transient: ``SourceUnreachableError`` at once, naming what failed.
    * Local paths and ``file://`` URLs are read directly with ``os.pread``;
      only regular files are opened (a FIFO, socket or device such as
      ``/dev/zero`` raises ``SourceError`` before any blocking open).
    * HTTP redirects are followed by us: a hop to another scheme, host or port
      drops ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and every
      header, ``auth`` and ``cookies`` given in ``storage_options``, unless
      ``storage_options["forward_headers_on_redirect"]`` is True (for a CDN
      you trust with them).
    * Memory follows the bytes received, never a size the server claims
      (``Content-Range`` / ``Content-Length`` totals only bound what is asked).
    * Chained fsspec URLs (``simplecache::https://...``, ``tar://x::https://...``)
      and caching or archive filesystems read the inner object themselves, so
      the bytes that crossed the network are not seen: ``stats.tracked`` is
      False for them (``stats.untracked_reason`` says why).
    * No error raised here holds the URL's query string or user-info, in its
      message or on its ``__cause__`` / ``__context__`` chain.

    Picklable and fork-safe: pickling keeps the configuration and the object's
    identity (size and validator, so a worker refuses a changed object); HTTP
    sessions, event loops and file descriptors are built lazily in each process
    and never reused or closed across a fork. An unpickled copy starts with a
    fresh, empty ``stats``.

    Args:
        source: URL (``https://``, ``s3://``, ``gs://``, ``memory://``, ``file://``,
            any fsspec protocol), local path, or an open fsspec file object (a
            plain seekable binary file object also works, read under a lock).
        storage_options: fsspec options for the filesystem. For HTTP(S):
            ``headers``, ``auth``, ``ssl``, ``proxy``, ``cookies`` go on every
            request and ``client_kwargs`` to the ``aiohttp.ClientSession``;
            ``forward_headers_on_redirect=True`` keeps the credentials on a
            redirect to another origin (default False: they are dropped).
        coalesce_gap_bytes: what one more request costs, in bytes: ranges whose
            gap is smaller are merged (the gap is fetched and thrown away).
            Default 256, the low end of a 206 reply's headers (bytes only: the
            users pay per byte); on S3/GCS, where a GET fee is worth about 4 KiB
            of egress, 4096 minimises the bill. 0: only overlapping or adjacent
            ranges merge, except to save a round trip.
        max_concurrency: requests in flight at once for one ``read_ranges`` call.
            Default 64: the container indexes read many small headers at once
            (a fragmented MP4's moofs, a Matroska walk's block headers: one
            per cluster per round), and each wave past this costs a round
            trip; 64 keeps a 10-minute file's index to a few waves per round.
        round_trip_cost_bytes: what one more round trip (a wave of up to
            ``max_concurrency`` requests) is worth, in bytes: latency x
            bandwidth. Default 256 KiB (20 ms at 100 Mbit/s); 0: never bridge a
            gap to save a round trip. The MP4 index prices with it too: a
            fragmented file without sidx or mfra is walked in as many
            concurrent lanes as the bytes scanned to start them are worth in
            round trips saved (0: one sequential chain, the fewest bytes).
        retry: how transient faults are retried.
        connect_timeout_seconds: TCP/TLS connect timeout per attempt.
        read_timeout_seconds: longest wait for the next bytes of a reply; each
            attempt also has a total cap (connect + 2 x read + size / 256 KiB/s).
        stats: where records go (a new TransferStats if None).
        retain_bytes: at most this many bytes of ``read_ranges(..., retain=True)``
            replies are kept in memory and serve later ranges that lie inside
            them without a request (the MP4 probe's reads often hold the first
            samples, or a whole small file).
        allow_full_read: for a server that ignores Range (answers 200 with the
            whole object): read the object once, whole, keep it in memory and
            serve every range from it, with a ``RuntimeWarning`` and a log
            warning; the read is one ``TransferRecord`` of the full size. Off by
            default: such a server raises ``RangeRequestError``.
    """

    supports_retain = True

    def __init__(
        self,
        source: SourceLike,
        *,
        storage_options: dict[str, Any] | None = None,
        coalesce_gap_bytes: int = COALESCE_GAP_BYTES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        round_trip_cost_bytes: int = ROUND_TRIP_COST_BYTES,
        retry: RetryPolicy | None = None,
        connect_timeout_seconds: float = 10.0,
        read_timeout_seconds: float = 30.0,
        stats: TransferStats | None = None,
        retain_bytes: int = RETAIN_BYTES,
        allow_full_read: bool = False,
    ) -> None:
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        if isinstance(source, bytes):
            raise TypeError("RangeSource: pass the URL or path as str, not bytes")
        coalesce_gap_bytes = _byte_count("coalesce_gap_bytes", coalesce_gap_bytes)
        round_trip_cost_bytes = _byte_count("round_trip_cost_bytes", round_trip_cost_bytes)
        if max_concurrency < 1:
            raise ValueError(f"RangeSource.max_concurrency must be >= 1, got {max_concurrency}")
        if not (connect_timeout_seconds > 0 and read_timeout_seconds > 0):
            raise ValueError(
                f"RangeSource timeouts must be > 0, got connect_timeout_seconds={connect_timeout_seconds}, "
                f"read_timeout_seconds={read_timeout_seconds}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"RangeSource.retry must be a RetryPolicy, got {type(retry).__name__}")
        self._source: str | IO[bytes] | _FsspecFileRef = source
        self._storage_options = dict(storage_options or {})
        self._coalesce_gap_bytes = int(coalesce_gap_bytes)
        self._max_concurrency = int(max_concurrency)
        self._round_trip_cost_bytes = int(round_trip_cost_bytes)
        self._retry = retry if retry is not None else RetryPolicy()
        self._connect_timeout_seconds = float(connect_timeout_seconds)
        self._read_timeout_seconds = float(read_timeout_seconds)
        self._retain_bytes = int(retain_bytes)
        self._allow_full_read = bool(allow_full_read)
        self._url = redact_url(_describe_source(source))
        self._identity: Identity | None = None
        self._init_runtime(stats if stats is not None else TransferStats())

    def _init_runtime(self, stats: TransferStats) -> None:
        self._stats = stats
        reason = _untracked_reason(self._source, self._url)
        if reason is not None:
            stats.mark_untracked(reason)
        # Built on first use in each process; one built before a fork is kept
        # aside in the child, never used or closed there (see videoloader._fork).
        # The factory holds only a weak reference, so dropping the source frees it.
        self._backend: ProcessLocal[Backend] = ProcessLocal(functools.partial(_build_backend, weakref.ref(self)))
        # Closes this process's backend when the source is dropped without close().
        self._finalizer = weakref.finalize(self, _close_backend, self._backend)
        self._closed = False
        self._stat_lock: ProcessLocal[threading.Lock] = ProcessLocal(threading.Lock)
        self._retained: list[tuple[int, bytes]] = []

    # -- pickling: configuration (and identity) only --------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in _CONFIG}
        fs = getattr(self._source, "fs", None)
        path = getattr(self._source, "path", None)
        if not isinstance(self._source, str) and fs is not None and path is not None:
            state["_source"] = _FsspecFileRef(fs, path)  # reopen by (fs, path), not by file handle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime(TransferStats())

    # -- public ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The source with credentials and query string removed: safe to log."""
        return self._url

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once for one ``read_ranges`` call."""
        return self._max_concurrency

    @property
    def round_trip_cost_bytes(self) -> int:
        """What one more round trip is worth, in bytes (the index walks' cost models use it too)."""
        return self._round_trip_cost_bytes

    @property
    def stats(self) -> TransferStats:
        """Records and totals of every request this source made."""
        return self._stats

    @property
    def size(self) -> int:
        """Object size in bytes (learned on first use: HEAD, fs.info or fstat)."""
        return self._get_identity().size

    @property
    def validator(self) -> str | None:
        """ETag, else Last-Modified (an mtime for files), else None; fixed at open."""
        return self._get_identity().validator

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def read(self, start: int, stop: int) -> bytes:
        """The bytes ``[start, stop)``; see ``read_ranges``."""
        return self.read_ranges([ByteRange(start, stop)])[0]

    def read_ranges(self, ranges: Sequence[ByteRange | tuple[int, int]], *, retain: bool = False) -> list[bytes]:
        """One ``bytes`` per requested range, in the order asked.

        Args:
            ranges: half-open ``[start, stop)`` ranges (ByteRange or pairs), any
                order, overlaps allowed.
            retain: keep these replies (up to ``retain_bytes`` in all) so later
                ranges inside them are served from memory.

        Returns:
            ``len(ranges)`` bytes objects, each exactly ``stop - start`` long.

        Raises:
            TruncatedFileError: a range ends past the end of the object (a caller bug
                or a truncated file; the message names the size).
            SourceNotFoundError, SourceAccessError: 404 / 401 / 403, missing file.
            RangeRequestError: the server ignored or broke Range.
            SourceChangedError: the object changed since it was opened.
            TransferError: transient faults outlasted the retry policy.
        """
        wanted = [r if isinstance(r, ByteRange) else ByteRange(*r) for r in ranges]
        if not wanted:
            return []
        identity = self._get_identity()
        for r in wanted:
            if r.stop > identity.size:
                raise TruncatedFileError(
                    f"{self._url}: asked for bytes [{r.start}, {r.stop}) but the object is only {identity.size} "
                    "bytes long; the file is truncated or the caller read past its end."
                )
        out = [b""] * len(wanted)
        # Each range is split into pieces held in retained replies and pieces
        # to fetch; only the latter go on the wire.
        pieces = [self._split_retained(r) for r in wanted]
        to_fetch = sorted({(a, b) for ps in pieces for a, b, held in ps if held is None})
        fetched: dict[tuple[int, int], bytes] = {}
        if to_fetch:
            merged, where = self._coalesce_around_retained([ByteRange(a, b) for a, b in to_fetch])
            try:
                blobs = self._get_backend().read(merged, identity)
            except RangeRequestError as e:
                whole = self._read_whole(e, identity.size)
                blobs = [whole[m.start : m.stop] for m in merged]
            for (a, b), (m, offset) in zip(to_fetch, where, strict=False):
                blob = blobs[m]
                fetched[(a, b)] = blob if offset == 0 and len(blob) == b - a else blob[offset : offset + b - a]
            if retain:
                self._retain(merged, blobs)
        for i, ps in enumerate(pieces):
            parts = [held if held is not None else fetched[(a, b)] for a, b, held in ps]
            out[i] = parts[0] if len(parts) == 1 else b"".join(parts)
        return out

    def _coalesce_around_retained(self, ranges: list[ByteRange]) -> tuple[list[ByteRange], list[tuple[int, int]]]:
        """Coalesce ranges by cost (``coalesce_ranges``), never bridging bytes already held in memory."""
        return coalesce_ranges(
            ranges,
            self._coalesce_gap_bytes,
            max_concurrency=self._max_concurrency,
            round_trip_cost_bytes=self._round_trip_cost_bytes,
            barriers=[start for start, _ in self._retained],
        )

    def _split_retained(self, r: ByteRange) -> list[tuple[int, int, bytes | None]]:
        """``[(start, stop, bytes or None)]`` covering ``r``: held bytes, or None to fetch."""
        out: list[tuple[int, int, bytes | None]] = []
        pos = r.start
        while pos < r.stop:
            held = next(((start, blob) for start, blob in self._retained if start <= pos < start + len(blob)), None)
            if held is not None:
                start, blob = held
                stop = min(r.stop, start + len(blob))
                out.append((pos, stop, blob[pos - start : stop - start]))
            else:
                stop = min((start for start, _ in self._retained if pos < start < r.stop), default=r.stop)
                out.append((pos, stop, None))
            pos = stop
        return out

    def _retain(self, merged: Sequence[ByteRange], blobs: Sequence[bytes]) -> None:
        held = sum(len(b) for _, b in self._retained)
        for m, blob in zip(merged, blobs, strict=False):
            if held + len(blob) > self._retain_bytes:
                break
            self._retained.append((m.start, bytes(blob)))
            held += len(blob)

    def _read_whole(self, error: RangeRequestError, size: int) -> bytes:
        """The whole object, read once for a server that ignores Range (``allow_full_read``); else ``error``."""
        if not self._allow_full_read:
            raise error
        msg = (
            f"{self._url}: the server ignores Range requests; reading the whole object ({size} bytes) once "
            "and serving every range from memory (allow_full_read=True)"
        )
        log.warning("%s", msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        whole = self._get_backend().read([ByteRange(0, size)], self._get_identity())[0]
        self._retained = [(0, whole)]  # every later range is inside it: no more requests
        return whole

    def read_head(self, nbytes: int, *, retain: bool = False) -> bytes:
        """The first ``min(nbytes, size)`` bytes. Before the size is known, an
        HTTP source learns it from this read's reply (one request, no HEAD).

        Raises:
            as ``read_ranges``.
        """
        ignored: RangeRequestError | None = None
        if self._identity is None:
            backend = self._get_backend()
            probe = getattr(backend, "stat_and_read_head", None)
            if probe is not None:
                with self._stat_lock.get():
                    if self._identity is None:
                        try:
                            identity, data = probe(nbytes)
                        except RangeRequestError as e:
                            if not self._allow_full_read:
                                raise
                            ignored = e  # Range ignored: learn the size (HEAD), then read it all once
                        else:
                            self._identity = identity
                            if retain and data:
                                self._retain([ByteRange(0, len(data))], [data])
                            return data
        if ignored is not None:
            return self._read_whole(ignored, self.size)[:nbytes]
        return self.read_ranges([ByteRange(0, min(nbytes, self.size))], retain=retain)[0]

    def open_file(self, *, read_ahead_bytes: int = READ_AHEAD_BYTES) -> RangeFile:
        """A seekable, read-only binary file whose reads go through ``read_ranges``.

        Meant for FFmpeg/PyAV demuxing of containers we cannot index: every byte
        is recorded in ``stats``, and reads fetch only ``max(asked,
        read_ahead_bytes)`` bytes at a time. Closing the file does not close the
        source.
        """
        from ._file import RangeFile

        return RangeFile(self, read_ahead_bytes=read_ahead_bytes)

    def close(self) -> None:
        """Release this process's connection, session reference or file descriptor. Idempotent."""
        self._closed = True
        self._retained = []
        self._finalizer.detach()
        _close_backend(self._backend)

    def __enter__(self) -> RangeSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        size = self._identity.size if self._identity is not None else "unknown"
        return f"RangeSource({self._url!r}, size={size}, closed={self._closed})"

    # -- lazily built, per process --------------------------------------------------------------

    def _get_identity(self) -> Identity:
        identity = self._identity
        if identity is not None:
            return identity
        with self._stat_lock.get():
            if self._identity is None:
                self._identity = self._get_backend().stat()
            return self._identity

    def _get_backend(self) -> Backend:
        if self._closed:
            raise SourceError(f"{self._url}: the source was closed; open a new one to read again.")
        return self._backend.get()

    def _make_backend(self) -> Backend:
        from ._fs import FileObjectBackend, FsspecBackend, LocalBackend
        from ._http import HttpBackend

        common: _BackendOptions = {"redacted": self._url, "stats": self._stats, "retry": self._retry}
        source = self._source
        if isinstance(source, _FsspecFileRef):
            fs, path = source.fs, source.path
        elif isinstance(source, str):
            if source.lower().startswith(("http://", "https://")):
                return self._http_backend(HttpBackend, source, self._storage_options)
            if "://" not in source and "::" not in source:
                return LocalBackend(source, **common)
            fs, path = self._url_to_fs(source)
        elif (file_fs := getattr(source, "fs", None)) is not None and (
            file_path := getattr(source, "path", None)
        ) is not None:
            fs, path = file_fs, file_path
        elif hasattr(source, "read") and hasattr(source, "seek"):
            return FileObjectBackend(source, **common)
        else:
            raise TypeError(f"RangeSource: expected a URL, path or file object, got {type(source).__name__}")
        if _opaque_filesystem(fs):
            self._stats.mark_untracked(_untracked_message(self._url))
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        if "file" in protocols or "local" in protocols:
            return LocalBackend(path, **common)
        if "http" in protocols or "https" in protocols:
            options = {"client_kwargs": getattr(fs, "client_kwargs", {}), **getattr(fs, "kwargs", {})}
            return self._http_backend(HttpBackend, path, options)
        return FsspecBackend(
            fs,
            path,
            max_concurrency=self._max_concurrency,
            connect_timeout_seconds=self._connect_timeout_seconds,
            read_timeout_seconds=self._read_timeout_seconds,
            **common,
        )

    def _url_to_fs(self, source: str) -> tuple[AbstractFileSystem, str]:
        """fsspec's filesystem and path for a URL; an error whose text holds the raw URL is redacted."""
        import fsspec.core

        from ._redirect import fsspec_options

        try:
            return fsspec.core.url_to_fs(source, **fsspec_options(self._storage_options))
        except Exception as e:
            if safe_cause(e) is not None:
                raise
            message = f"{self._url}: cannot open the filesystem: {describe(e)}"
        raise SourceError(message)  # outside the except block: no raw __context__

    def _http_backend(self, cls: type[HttpBackend], url: str, options: dict[str, Any]) -> HttpBackend:
        return cls(
            url,
            redacted=self._url,
            storage_options=options,
            retry=self._retry,
            connect_timeout_seconds=self._connect_timeout_seconds,
            read_timeout_seconds=self._read_timeout_seconds,
            max_concurrency=self._max_concurrency,
            stats=self._stats,
        )


def _build_backend(ref: weakref.ReferenceType[RangeSource]) -> Backend:
    """The backend of the source behind ``ref`` for this process."""
    source = ref()
    if source is None:  # pragma: no cover - only reachable through a dropped source
        raise SourceError("the source was garbage-collected")
    if source._closed:  # closed by another thread since _get_backend() checked: build nothing to leak
        raise SourceError(f"{source._url}: the source was closed; open a new one to read again.")
    return source._make_backend()


def _close_backend(backend: ProcessLocal[Backend]) -> None:
    """Close the backend this process built, if any (one inherited from a parent is left alone)."""
    built = backend.reset()
    if built is not None:
        built.close()


class _BackendOptions(TypedDict):
    """Keyword arguments every backend takes."""

    redacted: str
    stats: TransferStats
    retry: RetryPolicy


class _FsspecFileRef:
    """What a pickled fsspec file object source becomes: its filesystem and path."""

    def __init__(self, fs: AbstractFileSystem, path: str) -> None:
        self.fs = fs
        self.path = path


def _untracked_message(redacted: str) -> str:
    return (
        f"{redacted} is read through a chained, caching or archive fsspec filesystem that fetches the inner "
        "object itself; the bytes that crossed the network are not counted"
    )


def _opaque_filesystem(fs: object) -> bool:
    """True for fsspec filesystems that do their own fetching of another object (caches, archives)."""
    try:
        from fsspec.archive import AbstractArchiveFileSystem
        from fsspec.implementations.cached import CachingFileSystem
    except ImportError:  # pragma: no cover - an fsspec without them
        return False
    return isinstance(fs, (CachingFileSystem, AbstractArchiveFileSystem))


def _untracked_reason(source: object, redacted: str) -> str | None:
    """Why a source's network bytes cannot be counted, or None when they can (decided without I/O)."""
    if isinstance(source, str):
        return _untracked_message(redacted) if len(_split_chain(source)) > 1 else None
    fs = getattr(source, "fs", None)
    if fs is not None and _opaque_filesystem(fs):
        return _untracked_message(redacted)
    return None


def _byte_count(name: str, value: object) -> int:
    """``value`` as a whole number of bytes >= 0, else ``ValueError`` naming the keyword."""
    count = operator.index(value) if isinstance(value, SupportsIndex) and not isinstance(value, bool) else -1
    if count < 0:
        raise ValueError(f"RangeSource.{name} must be a whole number of bytes >= 0, got {value!r}")
    return count


def _describe_source(source: object) -> str:
    if isinstance(source, str):
        return source
    fs, path = getattr(source, "fs", None), getattr(source, "path", None)
    if fs is not None and path is not None:
        try:
            return str(fs.unstrip_protocol(path))
        except Exception:
            return str(path)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(source).__name__}>"
