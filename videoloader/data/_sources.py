"""Source lists: URLs, records and manifest files (CSV, JSONL, Parquet).

A record is a URL with an optional ``label`` and an optional window
``start``/``end`` in seconds (presentation time). Map-style datasets keep the
records in :class:`SourceTable`: a few numpy arrays instead of one Python
object per record, so DataLoader workers forked from a parent holding
millions of records do not copy them page by page as reference counts change.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import ManifestError, SourceAccessError, SourceError, SourceNotFoundError, VideoLoaderError
from .._optional import require
from ..io import redact_text, redact_url
from ..io._redirect import fsspec_options

__all__ = ["Columns", "ManifestError", "SourceTable", "VideoRecord", "iter_sources", "read_manifest"]

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet", ".pq")
_START_KEYS = ("start", "start_seconds")
_END_KEYS = ("end", "end_seconds")
# Keys a sample sets itself: a passed-through column may not take them.
RESERVED_SAMPLE_KEYS = frozenset(
    {"frames", "frame_indices", "pts_seconds", "index", "url", "label", "transfer", "error", "num_skipped"}
)


@dataclass(frozen=True)
class Columns:
    """Which manifest column (or dict key) holds what, and whether the others pass through.

    Args:
        url: the column with the video's URL or path.
        label: the label column (absent: no label).
        start, end: the window's columns in seconds; None: ``start`` or
            ``start_seconds`` (``end`` or ``end_seconds``).
        extra: pass every other column through to the sample under its own
            name (True), only the named ones (a sequence), or none (False).
    """

    url: str = "url"
    label: str = "label"
    start: str | None = None
    end: str | None = None
    extra: bool | tuple[str, ...] = True

    def __post_init__(self) -> None:
        if not isinstance(self.extra, bool):
            object.__setattr__(self, "extra", tuple(self.extra))

    def used(self) -> set[str]:
        """The columns this mapping consumes (not passed through)."""
        starts = (self.start,) if self.start else _START_KEYS
        ends = (self.end,) if self.end else _END_KEYS
        return {self.url, self.label, *starts, *ends}

    def extras(self, row: dict, where: str) -> dict[str, Any]:
        """The pass-through fields of ``row``.

        Raises:
            ManifestError: a passed-through column is named like a key the sample sets.
        """
        if self.extra is False:
            return {}
        used = self.used()
        names = [k for k in row if k not in used] if self.extra is True else [k for k in self.extra if k in row]
        clash = sorted(str(k) for k in names if k in RESERVED_SAMPLE_KEYS)
        if clash:
            raise ManifestError(
                f"{where}: column(s) {clash} would replace the sample's own keys; map them "
                "(url_column=..., label_column=...) or leave them out (extra_columns=[...] or False)"
            )
        return {str(k): row[k] for k in names}


DEFAULT_COLUMNS = Columns()


@dataclass(frozen=True)
class VideoRecord:
    """One source: a URL, an optional label and an optional time window."""

    url: str
    """Where the video is (any fsspec URL or local path); may carry credentials."""
    label: Any = None
    """Anything collatable (int class id, str, float...), or None."""
    start_seconds: float | None = None
    """Sample only from frames on screen at or after this time."""
    end_seconds: float | None = None
    """Sample only from frames on screen before this time."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Other manifest columns, passed through to the sample under their own names."""

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise ManifestError(f"a record needs a non-empty string url, got {self.url!r}")
        for name in ("start_seconds", "end_seconds"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ManifestError(f"{name} must be a finite number of seconds or None, got {v!r}")
        if self.start_seconds is not None and self.end_seconds is not None and self.end_seconds <= self.start_seconds:
            raise ManifestError(
                f"{redact_url(self.url)}: end ({self.end_seconds}) must be > start ({self.start_seconds})"
            )

    def __repr__(self) -> str:  # never print credentials
        return (
            f"VideoRecord({redact_url(self.url)!r}, label={self.label!r}, "
            f"start_seconds={self.start_seconds}, end_seconds={self.end_seconds})"
        )


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _pick(d: dict, keys: Sequence[str]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def to_record(
    item: Any, position: int | None = None, *, source: str | None = None, columns: Columns = DEFAULT_COLUMNS
) -> VideoRecord:
    """A :class:`VideoRecord` from a URL string, a Path, a dict or a record.

    Args:
        item: the source.
        position: its position in the list or manifest (for messages).
        source: the redacted manifest URL it came from (for messages).
        columns: which keys of a dict hold the URL, label and window.

    Raises:
        ManifestError: the item is not a usable source; the message names the
            manifest, the record and the (redacted) URL, never a secret.
    """
    where = f"record {position}" if position is not None else "a record"
    if source is not None:
        where = f"{source}: {where}"
    if isinstance(item, VideoRecord):
        return item
    if isinstance(item, (str, os.PathLike)):
        return VideoRecord(os.fspath(item))
    if isinstance(item, dict):
        if columns.url not in item:
            raise ManifestError(f"{where} has no {columns.url!r} key (keys: {sorted(map(str, item))})")
        extra = columns.extras(item, where)
        error = None
        try:
            return VideoRecord(
                os.fspath(item[columns.url]),
                label=item.get(columns.label),
                start_seconds=_seconds(_pick(item, (columns.start,) if columns.start else _START_KEYS)),
                end_seconds=_seconds(_pick(item, (columns.end,) if columns.end else _END_KEYS)),
                extra=extra,
            )
        except (TypeError, ValueError) as e:
            # Raised outside this block: the original (which may quote the row) stays off __context__.
            error = ManifestError(f"{where}: {redact_text(str(e))}")
        raise error
    raise ManifestError(f"{where}: a source must be a URL string or a dict with 'url', got {type(item).__name__}")


def is_manifest_path(sources: Any) -> bool:
    """True when ``sources`` names a manifest file by its suffix."""
    if not isinstance(sources, (str, os.PathLike)):
        return False
    name = os.fspath(sources).split("?", 1)[0].lower()
    return name.endswith(MANIFEST_SUFFIXES)


def _csv_label(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def iter_manifest(
    path: str | os.PathLike, *, storage_options: dict | None = None, columns: Columns = DEFAULT_COLUMNS
) -> Iterator[VideoRecord]:
    """Stream the records of a manifest file (local path or fsspec URL).

    CSV: a header row with ``url`` and optionally ``label`` (int when it parses
    as one, else str), ``start``, ``end``. JSONL: one object per line with the
    same keys. Parquet (needs pyarrow): columns with the same names.
    ``columns`` renames them and says which other columns pass through
    (CSV values that parse as ints become ints, empty ones None).

    Every message names the manifest by its redacted URL; no exception this
    raises carries the raw URL, on itself or on its ``__cause__``/``__context__``.

    Raises:
        ManifestError: no ``url`` column/key, a malformed row, or bytes that
            are not a manifest of the kind its suffix says.
        SourceNotFoundError, SourceAccessError, SourceError: the manifest
            could not be read.
        MissingDependencyError: a Parquet manifest without pyarrow installed.
    """
    path = os.fspath(path)
    redacted = redact_url(path)
    records = _iter_manifest(path, redacted, storage_options, columns)
    while True:
        error: Exception | None = None
        try:
            record = next(records)
        except StopIteration:
            return
        except VideoLoaderError:
            raise  # ours: messages already redacted
        except Exception as e:  # noqa: BLE001 - every library error becomes ours, with the URL redacted
            error = _manifest_read_error(e, redacted)
        if error is not None:
            records.close()
            raise error  # outside the except block: the raw error is not kept on __context__
        yield record


def _manifest_read_error(e: Exception, redacted: str) -> VideoLoaderError:
    """Our error for a failure reading a manifest (the library's message redacted)."""
    text = f"{type(e).__name__}: {redact_text(str(e))}"
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return SourceNotFoundError(f"{redacted}: the manifest could not be opened: no such file ({text})")
    if isinstance(e, PermissionError):
        return SourceAccessError(f"{redacted}: the manifest could not be opened: access denied ({text})")
    if isinstance(e, (UnicodeDecodeError, csv.Error, json.JSONDecodeError)) or type(e).__module__.startswith("pyarrow"):
        return ManifestError(f"{redacted}: not a readable manifest ({text})")
    if isinstance(e, (OSError, TimeoutError, ConnectionError)) or "aiohttp" in type(e).__module__:
        return SourceError(f"{redacted}: the manifest could not be read ({text})")
    return ManifestError(f"{redacted}: the manifest could not be read ({text})")


def _iter_manifest(
    path: str, redacted: str, storage_options: dict | None, columns: Columns
) -> Generator[VideoRecord, None, None]:
    import fsspec

    lower = path.split("?", 1)[0].lower()
    if not lower.endswith(MANIFEST_SUFFIXES):
        raise ManifestError(f"{redacted}: unknown manifest type; use one of {MANIFEST_SUFFIXES}")
    with fsspec.open(path, "rb", **fsspec_options(storage_options)) as f:
        if lower.endswith((".parquet", ".pq")):
            yield from _iter_parquet(f, redacted, columns)
            return
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        if lower.endswith(".csv"):
            reader = csv.DictReader(text)
            if not reader.fieldnames or columns.url not in reader.fieldnames:
                raise ManifestError(
                    f"{redacted}: a CSV manifest needs a header row with a {columns.url!r} column, "
                    f"got {reader.fieldnames}"
                )
            keep = {columns.url, *((columns.start,) if columns.start else _START_KEYS)}
            keep |= {*((columns.end,) if columns.end else _END_KEYS)}
            for n, row in enumerate(reader):
                for k in row:
                    if k not in keep:  # labels and passed-through values: ints where they parse
                        row[k] = _csv_label(row[k] or "")
                yield to_record(row, n, source=redacted, columns=columns)
        else:
            for n, line in enumerate(text):
                if not line.strip():
                    continue
                obj, bad = None, None
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    bad = f"{e.msg} at column {e.colno}"  # not str(e): never quote the line
                if bad is not None:
                    raise ManifestError(f"{redacted}: line {n + 1} is not JSON: {bad}")
                yield to_record(
                    obj if isinstance(obj, dict) else {columns.url: obj}, n, source=redacted, columns=columns
                )


def _iter_parquet(f: Any, redacted: str, columns: Columns) -> Iterator[VideoRecord]:
    pq = require("pyarrow.parquet", purpose=f"{redacted}: reading a Parquet manifest")
    pf = pq.ParquetFile(f)
    names = pf.schema_arrow.names
    if columns.url not in names:
        raise ManifestError(f"{redacted}: a Parquet manifest needs a {columns.url!r} column, got {names}")
    if columns.extra is True:
        wanted = list(names)
    else:
        extra = columns.extra or ()
        wanted = [c for c in names if c in columns.used() or c in extra]
    n = 0
    for batch in pf.iter_batches(columns=wanted):
        for row in batch.to_pylist():
            yield to_record(row, n, source=redacted, columns=columns)
            n += 1


def read_manifest(
    path: str | os.PathLike, *, storage_options: dict | None = None, columns: Columns = DEFAULT_COLUMNS
) -> SourceTable:
    """Read a whole manifest file into a :class:`SourceTable`."""
    return SourceTable.from_records(iter_manifest(path, storage_options=storage_options, columns=columns))


def iter_sources(
    sources: Any, *, storage_options: dict | None = None, columns: Columns = DEFAULT_COLUMNS
) -> Iterator[VideoRecord]:
    """Records from a manifest path, a SourceTable, or an iterable of URLs/dicts (lazily)."""
    if is_manifest_path(sources):
        yield from iter_manifest(sources, storage_options=storage_options, columns=columns)
        return
    if isinstance(sources, (str, os.PathLike)):
        yield to_record(sources, 0)  # a single URL
        return
    for n, item in enumerate(sources):
        yield to_record(item, n, columns=columns)


class _Strings:
    """Many strings in one UTF-8 buffer plus offsets (no per-string objects)."""

    def __init__(self, values: Sequence[str]) -> None:
        encoded = [v.encode("utf-8") for v in values]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._data[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")


def _label_column(labels: list[Any]) -> Any:
    if all(v is None for v in labels):
        return None
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.int64)
    if all(isinstance(v, str) for v in labels):
        return _Strings(labels)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.float64)
    return list(labels)


class SourceTable(Sequence[VideoRecord]):
    """An immutable, compact list of :class:`VideoRecord` (picklable)."""

    def __init__(
        self,
        urls: Sequence[str],
        labels: Sequence[Any] | None,
        starts: np.ndarray,
        ends: np.ndarray,
        extra: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self._urls = _Strings(urls)
        self._labels = _label_column(list(labels)) if labels is not None else None
        self._starts = np.asarray(starts, dtype=np.float64)
        self._ends = np.asarray(ends, dtype=np.float64)
        # One compact column per passed-through field (a record without it holds None).
        self._extra = {name: _label_column(list(values)) for name, values in (extra or {}).items()}
        if not (len(self._urls) == len(self._starts) == len(self._ends)):
            raise ManifestError("SourceTable columns differ in length")

    @classmethod
    def from_records(cls, records: Iterable[VideoRecord]) -> SourceTable:
        urls, labels, starts, ends = [], [], [], []
        extra: dict[str, list[Any]] = {}
        for n, r in enumerate(records):
            urls.append(r.url)
            labels.append(r.label)
            starts.append(math.nan if r.start_seconds is None else r.start_seconds)
            ends.append(math.nan if r.end_seconds is None else r.end_seconds)
            for name in r.extra.keys() - extra.keys():
                extra[name] = [None] * n
            for name, column in extra.items():
                column.append(r.extra.get(name))
        starts_a, ends_a = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
        return cls(urls, labels, starts_a, ends_a, extra)

    @classmethod
    def from_sources(
        cls, sources: Any, *, storage_options: dict | None = None, columns: Columns = DEFAULT_COLUMNS
    ) -> SourceTable:
        """From a manifest path, a list of URLs/dicts/records, or a SourceTable."""
        if isinstance(sources, SourceTable):
            return sources
        if sources is None:
            raise ManifestError("sources is None; give a list of URLs or records, or a manifest path")
        return cls.from_records(iter_sources(sources, storage_options=storage_options, columns=columns))

    @property
    def has_labels(self) -> bool:
        """True when at least one record has a label."""
        return self._labels is not None

    def __len__(self) -> int:
        return len(self._urls)

    def url(self, i: int) -> str:
        return self._urls[i]

    def __getitem__(self, i: int) -> VideoRecord:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("SourceTable does not slice; index one record at a time")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"record {i} is out of range for {n} records")
        i = int(i) % n
        label = None
        if self._labels is not None:
            label = self._labels[i]
            if isinstance(label, np.generic):
                label = label.item()
        s, e = float(self._starts[i]), float(self._ends[i])
        extra = {}
        for name, column in self._extra.items():
            v = column[i]
            v = v.item() if isinstance(v, np.generic) else v
            if v is not None:
                extra[name] = v
        return VideoRecord(
            self._urls[i],
            label=label,
            start_seconds=None if math.isnan(s) else s,
            end_seconds=None if math.isnan(e) else e,
            extra=extra,
        )

    def __repr__(self) -> str:
        return f"SourceTable({len(self)} records, labels={'yes' if self.has_labels else 'no'})"
