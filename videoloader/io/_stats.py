"""Per-request transfer records and a thread-safe running total."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._fork import ProcessLocal

__all__ = ["TransferRecord", "TransferStats"]


@dataclass(frozen=True)
class TransferRecord:
    """One request on the wire (one attempt; a retried request has several records)."""

    url: str
    """The source, redacted (no credentials, no query string)."""
    start: int
    """First byte asked for (inclusive)."""
    stop: int
    """One past the last byte asked for (``start == stop`` for HEAD / stat requests)."""
    bytes_requested: int
    """``stop - start``: body bytes this request asked for."""
    bytes_received: int
    """Body bytes that actually arrived (a reply aborted early counts what was read)."""
    status: int | None
    """HTTP status, or None for non-HTTP sources and for failures before a status line."""
    latency_seconds: float
    """From sending the request to the end of the body (or of the failure)."""
    attempt: int = 1
    """1 for the first try of a request, 2 for the first retry, ..."""
    error: str | None = None
    """What went wrong (redacted), None if the attempt succeeded."""
    ok: bool = True
    """True if this attempt delivered the bytes asked for."""

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop < self.start:
            raise ValueError(f"TransferRecord needs 0 <= start <= stop, got [{self.start}, {self.stop})")
        if self.bytes_requested < 0 or self.bytes_received < 0:
            raise ValueError(
                f"TransferRecord byte counts must be >= 0, got requested={self.bytes_requested}, "
                f"received={self.bytes_received}"
            )
        if self.attempt < 1:
            raise ValueError(f"TransferRecord.attempt is 1-based, got {self.attempt}")


class TransferStats:
    """Thread-safe totals and records of the requests made for one or more sources.

    Every ``add()`` also goes to ``parent`` (if given), so a dataset can hold one
    TransferStats that aggregates all of its readers while each reader keeps its
    own. ``snapshot()`` freezes the current state; ``since(snapshot)`` gives what
    was added after it (e.g. the cost of one ``get_frames_at`` call).

    Totals are sums over records: a retried request counts every attempt, a HEAD
    counts as a request with 0 bytes. ``num_retries`` counts records with
    ``attempt > 1``.

    ``tracked`` is False when some source feeding these stats reads through a
    layer whose network traffic we cannot see (a chained fsspec URL such as
    ``simplecache::https://...`` or ``tar://x.mp4::https://...``, a caching or
    archive filesystem): its records count the bytes that layer handed us,
    while it may have downloaded the whole object. ``untracked_reason`` says
    which source and why; ``repr`` shows it.

    Args:
        parent: another TransferStats that receives every record too.
        max_records: keep only the newest ``max_records`` records (totals stay
            exact); None keeps all. Useful for long-lived aggregators.
    """

    def __init__(self, *, parent: TransferStats | None = None, max_records: int | None = None) -> None:
        if parent is not None and not isinstance(parent, TransferStats):
            raise TypeError(f"TransferStats.parent must be a TransferStats, got {type(parent).__name__}")
        if max_records is not None and max_records < 0:
            raise ValueError(f"TransferStats.max_records must be >= 0 or None, got {max_records}")
        self._parent = parent
        self._max_records = max_records
        # Append-only list (replaced, never edited, when trimmed to max_records), so a
        # snapshot can share it and remember its length: snapshot() is O(1), since() O(new).
        self._records: list[TransferRecord] = []
        self._end: int | None = None  # a snapshot's view: records[:_end]
        self._bytes_requested = 0
        self._bytes_received = 0
        self._num_requests = 0
        self._num_retries = 0
        self._frozen = False
        self._untracked_reason: str | None = None
        # A lock held by another thread at fork time would stay held forever in
        # the child: each process gets its own.
        self._lock: ProcessLocal[threading.Lock] = ProcessLocal(threading.Lock)

    def _guard(self) -> threading.Lock:
        return self._lock.get()

    @property
    def parent(self) -> TransferStats | None:
        """The aggregator that also receives every record, if any."""
        return self._parent

    def add(self, record: TransferRecord) -> None:
        """Record one request (and pass it on to ``parent``)."""
        if self._frozen:
            raise TypeError("this TransferStats is a read-only snapshot")
        if not isinstance(record, TransferRecord):
            raise TypeError(f"TransferStats.add takes a TransferRecord, got {type(record).__name__}")
        with self._guard():
            self._records.append(record)
            if self._max_records is not None and len(self._records) >= 2 * self._max_records + 64:
                self._records = self._records[len(self._records) - self._max_records :]
            self._bytes_requested += record.bytes_requested
            self._bytes_received += record.bytes_received
            self._num_requests += 1
            self._num_retries += record.attempt > 1
        if self._parent is not None:
            self._parent.add(record)

    def mark_untracked(self, reason: str) -> None:
        """Say that some bytes behind these stats crossed the network unseen (and tell ``parent``).

        Args:
            reason: which source and why (no secrets: pass a redacted URL).
        """
        if self._frozen:
            raise TypeError("this TransferStats is a read-only snapshot")
        with self._guard():
            if self._untracked_reason is None:
                self._untracked_reason = str(reason)
        if self._parent is not None:
            self._parent.mark_untracked(reason)

    @property
    def tracked(self) -> bool:
        """True when every byte that crossed the network is in the records (see the class docstring)."""
        return self._untracked_reason is None

    @property
    def untracked_reason(self) -> str | None:
        """Why the totals may miss bytes (the first source marked), or None when ``tracked``."""
        return self._untracked_reason

    def extend(self, records: Iterable[TransferRecord]) -> None:
        """``add()`` each record in turn."""
        for record in records:
            self.add(record)

    @property
    def bytes_requested(self) -> int:
        """Sum of ``bytes_requested`` over all records."""
        return self._bytes_requested

    @property
    def bytes_received(self) -> int:
        """Sum of ``bytes_received`` over all records: the body bytes that came over the wire."""
        return self._bytes_received

    @property
    def num_requests(self) -> int:
        """Requests made (every attempt counts)."""
        return self._num_requests

    @property
    def num_retries(self) -> int:
        """Attempts that were retries (``attempt > 1``)."""
        return self._num_retries

    @property
    def records(self) -> list[TransferRecord]:
        """A copy of the records, oldest first (the newest ``max_records`` if bounded)."""
        with self._guard():
            return self._tail(self._num_requests)

    def _tail(self, n: int) -> list[TransferRecord]:
        """The newest ``n`` retained records (fewer if not retained)."""
        end = len(self._records) if self._end is None else self._end
        keep = min(n, end)
        if self._max_records is not None:
            keep = min(keep, self._max_records)
        return self._records[end - keep : end] if keep else []

    def snapshot(self) -> TransferStats:
        """A frozen copy of the current state (``add()`` on it raises TypeError); O(1)."""
        with self._guard():
            copy = self._frozen_copy(
                self._records, self._bytes_requested, self._bytes_received, self._num_requests, self._num_retries
            )
            copy._end = len(self._records)
            return copy

    def since(self, snapshot: TransferStats) -> TransferStats:
        """What was added after ``snapshot`` (taken from this object) as a frozen TransferStats."""
        with self._guard():
            new = self._num_requests - snapshot.num_requests
            if new < 0:
                raise ValueError("since(): the snapshot is newer than this TransferStats (taken from another one?)")
            return self._frozen_copy(
                self._tail(new),
                self._bytes_requested - snapshot.bytes_requested,
                self._bytes_received - snapshot.bytes_received,
                new,
                self._num_retries - snapshot.num_retries,
            )

    def _frozen_copy(
        self, records: list[TransferRecord], requested: int, received: int, n: int, retries: int
    ) -> TransferStats:
        copy = TransferStats(max_records=self._max_records)
        copy._records = records
        copy._bytes_requested, copy._bytes_received = requested, received
        copy._num_requests, copy._num_retries = n, retries
        copy._untracked_reason = self._untracked_reason
        copy._frozen = True
        return copy

    def as_dict(self) -> dict[str, int]:
        """``{"bytes_received", "bytes_requested", "num_requests", "num_retries"}``."""
        return {
            "bytes_received": self._bytes_received,
            "bytes_requested": self._bytes_requested,
            "num_requests": self._num_requests,
            "num_retries": self._num_retries,
        }

    def __repr__(self) -> str:
        frozen = ", snapshot" if self._frozen else ""
        untracked = "" if self._untracked_reason is None else f", tracked=False ({self._untracked_reason})"
        return (
            f"TransferStats(num_requests={self._num_requests}, num_retries={self._num_retries}, "
            f"bytes_requested={self._bytes_requested}, bytes_received={self._bytes_received}{untracked}{frozen})"
        )

    def __getstate__(self) -> dict[str, Any]:
        with self._guard():
            state = self.__dict__.copy()
            state["_records"] = self._tail(self._num_requests)
        state["_end"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_untracked_reason", None)
        state.pop("_pid", None)  # pickled by an older version
        self.__dict__.update(state)
        self._lock = ProcessLocal(threading.Lock)
