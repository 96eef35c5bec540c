"""SampleIndex cache: an in-process LRU plus an optional on-disk folder.

Keys are ``(redacted URL, size, validator)``: a changed object (new ETag or
Last-Modified, or new size) is a new key. Files on disk are numpy ``.npz``
archives holding only arrays plus one JSON document (no pickle, so a cache
folder shared between users cannot execute code when read).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TypedDict

import numpy as np

from .._fork import ProcessLocal
from .._packets import SampleIndex

__all__ = ["CacheKey", "IndexCache", "cache_key", "default_index_cache"]

#: ``(redacted URL, size, validator, track)``.
CacheKey = tuple[str, int | None, str | None, int | None]

_FORMAT_VERSION = 1
_ARRAYS = ("offsets", "sizes", "dts", "pts", "durations", "is_sync", "is_discard")
_SCALARS = (
    "timescale",
    "codec",
    "width",
    "height",
    "track_id",
    "sample_entry",
    "rotation",
    "bit_depth",
    "file_size",
    "fragmented",
)


class _State(TypedDict):
    """What a pickled IndexCache holds: its configuration only."""

    max_entries: int
    directory: Path | None


def cache_key(url: str, size: int | None, validator: str | None, track: int | None) -> CacheKey:
    return (url, size, validator, track)


def _copy_for_caller(index: SampleIndex) -> SampleIndex:
    """A fresh SampleIndex sharing the (read-only) arrays, with zero index cost."""
    return SampleIndex(
        offsets=index.offsets,
        sizes=index.sizes,
        dts=index.dts,
        pts=index.pts,
        durations=index.durations,
        is_sync=index.is_sync,
        timescale=index.timescale,
        codec=index.codec,
        extradata=index.extradata,
        width=index.width,
        height=index.height,
        track_id=index.track_id,
        is_discard=index.is_discard,
        sample_entry=index.sample_entry,
        rotation=index.rotation,
        bit_depth=index.bit_depth,
        file_size=index.file_size,
        fragmented=index.fragmented,
        index_nbytes=0,
        index_requests=0,
    )


class IndexCache:
    """LRU of SampleIndex objects, optionally backed by a folder.

    Args:
        max_entries: indexes kept in memory.
        directory: folder for ``.npz`` files (created on first write); None
            keeps the cache in memory only.
    """

    def __init__(self, max_entries: int = 256, *, directory: str | os.PathLike[str] | None = None) -> None:
        if max_entries < 0:
            raise ValueError(f"IndexCache: max_entries must be >= 0, got {max_entries}")
        self.max_entries = int(max_entries)
        self.directory = Path(directory) if directory is not None else None
        # Per process: a lock held by another thread at fork time would stay held in the child.
        self._lock: ProcessLocal[threading.Lock] = ProcessLocal(threading.Lock)
        self._items: OrderedDict[CacheKey, SampleIndex] = OrderedDict()

    def __repr__(self) -> str:
        return f"IndexCache(max_entries={self.max_entries}, directory={str(self.directory) if self.directory else None!r}, cached={len(self._items)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IndexCache) and (self.max_entries, self.directory) == (
            other.max_entries,
            other.directory,
        )

    def __getstate__(self) -> _State:
        # Picklable as configuration only (DataLoader workers start empty).
        return {"max_entries": self.max_entries, "directory": self.directory}

    def __setstate__(self, state: _State) -> None:
        type(self).__init__(self, state["max_entries"], directory=state["directory"])

    @classmethod
    def for_directory(cls, directory: str | os.PathLike[str]) -> IndexCache:
        """The process's cache for ``directory`` (one per resolved folder, so
        its in-memory LRU is shared by every reader using that folder)."""
        key = str(Path(directory).expanduser().resolve())
        with _BY_DIRECTORY_LOCK.get():
            cache = _BY_DIRECTORY.get(key)
            if cache is None:
                cache = _BY_DIRECTORY[key] = cls(directory=key)
            return cache

    def clear(self) -> None:
        with self._lock.get():
            self._items.clear()

    def _path(self, key: CacheKey) -> Path | None:
        if self.directory is None or key[1] is None:
            return None
        digest = hashlib.sha256(json.dumps(list(key), default=str).encode()).hexdigest()
        return self.directory / f"{digest}.npz"

    def _url_marker(self, url: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"url-{hashlib.sha256(url.encode()).hexdigest()}"

    def may_hold(self, url: str) -> bool:
        """Whether an index of ``url`` (any version) may be cached. False lets a
        reader skip learning size and validator up front (a HEAD on HTTP)."""
        with self._lock.get():
            if any(k[0] == url for k in self._items):
                return True
        marker = self._url_marker(url)
        return marker is not None and marker.exists()

    def get(self, key: CacheKey) -> SampleIndex | None:
        with self._lock.get():
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return _copy_for_caller(hit)
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        index = self._load(path, key)
        if index is None:
            return None
        self._remember(key, index)
        return _copy_for_caller(index)

    def put(self, key: CacheKey, index: SampleIndex) -> None:
        stored = _copy_for_caller(index)
        for name in _ARRAYS:
            getattr(stored, name).setflags(write=False)
        self._remember(key, stored)
        path = self._path(key)
        if path is not None:
            self._save(path, key, stored)
            marker = self._url_marker(key[0])
            assert marker is not None, "a cache with a folder always has URL markers"
            try:
                marker.touch()
            except OSError:  # a read-only cache folder still serves what it has
                pass

    def _remember(self, key: CacheKey, index: SampleIndex) -> None:
        if self.max_entries == 0:
            return
        with self._lock.get():
            self._items[key] = index
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    @staticmethod
    def _save(path: Path, key: CacheKey, index: SampleIndex) -> None:
        meta = {name: getattr(index, name) for name in _SCALARS}
        meta["version"] = _FORMAT_VERSION
        meta["key"] = [str(k) if k is not None else None for k in key]
        arrays = {name: np.asarray(getattr(index, name)) for name in _ARRAYS}
        arrays["extradata"] = np.frombuffer(index.extradata or b"", dtype=np.uint8)
        arrays["has_extradata"] = np.asarray(index.extradata is not None)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: readers never see half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                # numpy's stub lets **kwds fill savez's `allow_pickle: bool`, so a dict of arrays never fits it.
                np.savez(f, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @staticmethod
    def _load(path: Path, key: CacheKey) -> SampleIndex | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("version") != _FORMAT_VERSION:
                    return None
                if meta.get("key") != [str(k) if k is not None else None for k in key]:
                    return None
                arrays = {name: z[name] for name in _ARRAYS}
                extradata = z["extradata"].tobytes() if bool(z["has_extradata"]) else None
        except (OSError, ValueError, KeyError):
            return None  # unreadable or foreign file: treat as a miss
        kwargs = {name: meta[name] for name in _SCALARS}
        return SampleIndex(extradata=extradata, **arrays, **kwargs)


_BY_DIRECTORY: dict[str, IndexCache] = {}
_BY_DIRECTORY_LOCK: ProcessLocal[threading.Lock] = ProcessLocal(threading.Lock)

#: The process-wide cache ``load_index`` uses unless told otherwise.
default_index_cache = IndexCache()
