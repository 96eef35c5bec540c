"""The tracking proxy's aiohttp application.

A decoder that only takes a URL (FFmpeg, PyNvVideoCodec's demuxer...) opens
``http://127.0.0.1:PORT/p/TOKEN/N/NAME``; each HEAD or Range GET becomes
range reads of the registered origin through our I/O layer (206 + exact
length, validators, timeouts, retries, records), streamed to the decoder in
4 KiB writes. The body is fetched in blocks (64 KiB first, doubling to
1 MiB, the next block fetched while this one is sent): when the decoder hangs
up, no further block is asked for, and the bytes fetched but not delivered are
counted as waste. The origin URL never appears in the proxy URL, the access
log or the records (those hold the redacted URL).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import mimetypes
import re
import secrets
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from .._errors import SourceError
from .._types import ByteRange
from ..io import RangeSource, TransferStats

__all__ = ["ProxyState", "ProxyRecord", "make_proxy_app"]

CHUNK_BYTES = 4 * 1024
FIRST_BLOCK_BYTES = 64 * 1024
MAX_BLOCK_BYTES = 1024 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass
class ProxyRecord:
    """One request the proxy answered."""

    url: str
    """The origin, redacted."""
    method: str
    range: str | None
    status: int
    upstream_bytes: int
    """Bytes read from the origin for this request."""
    downstream_bytes: int
    """Bytes written to the client."""
    upstream_requests: int
    latency_seconds: float
    """Time to the first body byte (or to the reply for HEAD and errors)."""
    seconds: float
    client_disconnected: bool = False


class ProxyState:
    """The proxy's registered origins and records (thread-safe)."""

    def __init__(self, storage_options: dict[str, Any] | None = None) -> None:
        self.token = secrets.token_urlsafe(24)
        self.upstream = TransferStats()
        self._storage_options = dict(storage_options or {})
        self._lock = threading.Condition()
        self._active: collections.Counter[str] = collections.Counter()  # requests in flight per origin
        self._sources: dict[str, tuple[str, RangeSource]] = {}
        self._records: list[ProxyRecord] = []
        self._keys: list[str] = []  # the registered origin of each record

    def register(self, url: str, storage_options: dict[str, Any] | None = None) -> str:
        """The proxy path (``/p/TOKEN/N/NAME``) serving ``url``."""
        options = self._storage_options if storage_options is None else storage_options
        source = RangeSource(url, storage_options=options, stats=TransferStats(parent=self.upstream))
        name = re.sub(r"[^A-Za-z0-9._-]", "_", source.url.rsplit("/", 1)[-1]) or "video"
        with self._lock:
            key = str(len(self._sources))
            self._sources[key] = (name, source)
        return f"/p/{self.token}/{key}/{name}"

    def lookup(self, token: str, key: str) -> RangeSource | None:
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        with self._lock:
            entry = self._sources.get(key)
        return entry[1] if entry is not None else None

    def begin(self, key: str) -> None:
        """A request for origin ``key`` started (its record comes with :meth:`add`)."""
        with self._lock:
            self._active[key] += 1

    def add(self, record: ProxyRecord, key: str = "") -> None:
        with self._lock:
            self._records.append(record)
            self._keys.append(key)
            if self._active[key] > 0:
                self._active[key] -= 1
                self._lock.notify_all()

    def usage(self, path: str, *, wait_seconds: float = 5.0) -> dict[str, int]:
        """One registered origin's totals (``path`` as :meth:`register` returned it).

        Waits up to ``wait_seconds`` for its requests in flight to finish (a
        decoder that just closed its connection: the handler is still
        counting), so the totals include them.

        Keys: ``upstream_bytes``, ``upstream_requests``, ``downstream_bytes``,
        ``wasted_bytes``, ``num_requests`` (the decoder's requests to the proxy).

        Raises:
            KeyError: ``path`` is not one of this proxy's.
        """
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "p" or parts[1] != self.token:
            raise KeyError("not a path of this proxy")
        key = parts[2]
        with self._lock:
            self._lock.wait_for(lambda: self._active[key] == 0, timeout=wait_seconds)
            source = self._sources[key][1]
            mine = [r for r, k in zip(self._records, self._keys, strict=True) if k == key]
        upstream = int(source.stats.bytes_received)
        downstream = sum(r.downstream_bytes for r in mine)
        return {
            "upstream_bytes": upstream,
            "upstream_requests": int(source.stats.num_requests),
            "downstream_bytes": downstream,
            "wasted_bytes": max(0, upstream - downstream),
            "num_requests": len(mine),
        }

    def stats(self) -> dict[str, Any]:
        """Totals and per-request records (URLs redacted): what ``GET /v1/stats`` returns."""
        with self._lock:
            records = [asdict(r) for r in self._records]
        downstream = sum(r["downstream_bytes"] for r in records)
        upstream = int(self.upstream.bytes_received)
        return {
            "upstream_bytes": upstream,
            "downstream_bytes": downstream,
            "wasted_bytes": max(0, upstream - downstream),
            "num_requests": len(records),
            "upstream_requests": int(self.upstream.num_requests),
            "records": records,
        }

    def close(self) -> None:
        with self._lock:
            sources = [s for _n, s in self._sources.values()]
        for s in sources:
            s.close()


_STATE = web.AppKey("proxy_state", ProxyState)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, stop)`` of a single-range header; None = whole object. ValueError if unsatisfiable."""
    if header is None:
        return None
    m = _RANGE.match(header)
    if m is None:
        raise ValueError(header)
    a, b = m.group(1), m.group(2)
    if a == "" and b == "":
        raise ValueError(header)
    if a == "":
        n = int(b)
        if n == 0:
            raise ValueError(header)
        return max(0, size - n), size
    start = int(a)
    stop = size if b == "" else min(size, int(b) + 1)
    if start >= size or stop <= start:
        raise ValueError(header)
    return start, stop


async def _proxy(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    began = time.monotonic()
    source = state.lookup(request.match_info["token"], request.match_info["key"])
    if source is None:
        return web.json_response({"error": "not_found", "status": 404}, status=404)
    range_header = request.headers.get("Range")
    state.begin(request.match_info["key"])
    record = ProxyRecord(source.url, request.method, range_header, 0, 0, 0, 0, 0.0, 0.0)
    try:
        try:
            size = await asyncio.to_thread(lambda: source.size)
            span = _parse_range(range_header, size)
        except ValueError:
            record.status = 416
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        except SourceError as e:
            record.status = 502
            return web.json_response({"error": "origin_failed", "status": 502, "message": str(e)}, status=502)
        ctype = mimetypes.guess_type(request.match_info["name"])[0] or "application/octet-stream"
        headers = {"Accept-Ranges": "bytes", "Content-Type": ctype}
        start, stop = span if span is not None else (0, size)
        headers["Content-Length"] = str(stop - start)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        record.status = status
        response = web.StreamResponse(status=status, headers=headers)
        if request.method == "HEAD" or stop <= start:
            record.latency_seconds = time.monotonic() - began
            await response.prepare(request)
            return response
        await _stream(request, response, source, start, stop, record, began)
        return response
    finally:
        record.seconds = time.monotonic() - began
        state.add(record, request.match_info["key"])


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    source: RangeSource,
    start: int,
    stop: int,
    record: ProxyRecord,
    began: float,
) -> None:
    """Send ``[start, stop)`` in 4 KiB writes, fetching growing blocks one ahead."""

    def fetch(a: int, b: int) -> bytes:
        data = source.read_ranges([ByteRange(a, b)])[0]
        record.upstream_bytes += len(data)
        record.upstream_requests += 1
        return data

    block = FIRST_BLOCK_BYTES
    pos = start

    def next_task() -> asyncio.Future[bytes] | None:
        nonlocal pos, block
        if pos >= stop:
            return None
        a, b = pos, min(stop, pos + block)
        pos, block = b, min(MAX_BLOCK_BYTES, block * 2)
        return asyncio.ensure_future(asyncio.to_thread(fetch, a, b))

    pending = next_task()
    prepared = False
    try:
        while pending is not None:
            try:
                data = await pending
            except SourceError:
                if not prepared:
                    record.status = 502
                raise
            pending = next_task()
            if not prepared:
                await response.prepare(request)
                prepared = True
                record.latency_seconds = time.monotonic() - began
            view = memoryview(data)
            for i in range(0, len(view), CHUNK_BYTES):
                await response.write(bytes(view[i : i + CHUNK_BYTES]))
                record.downstream_bytes += min(CHUNK_BYTES, len(view) - i)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        record.client_disconnected = True
        if pending is not None:
            # The block in flight cannot be recalled from its thread: wait for it so its
            # bytes are counted (as waste), then stop asking the origin for more.
            try:
                await asyncio.shield(pending)
            except Exception:
                pass
        if isinstance(sys.exc_info()[1], asyncio.CancelledError):
            raise


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].stats())


def make_proxy_app(state: ProxyState) -> web.Application:
    """The proxy as an aiohttp Application serving ``state``'s registered origins."""
    app = web.Application()
    app[_STATE] = state
    app.router.add_get("/p/{token}/{key}/{name}", _proxy)  # HEAD too
    app.router.add_get("/v1/stats", _stats)
    return app
