"""LoopbackServer: an HTTP/1.1 server on 127.0.0.1 with quirk switches, for I/O tests.

It is a small asyncio server (not aiohttp.web) so that every byte is under the
test's control: bodies can be cut mid-way, framed wrongly or delayed, and the
body bytes actually handed to the kernel are counted per path (the write
buffer is set to 0, so a count is only made once ``drain()`` says the bytes
left the process).

Usage::

    with LoopbackServer(latency_seconds=0.05) as server:
        url = server.add("v.mp4", data)          # or a Path
        server.faults.append("503")               # the next GET gets a 503
        ...
        assert server.bytes_sent_for("v.mp4") == sum(r.bytes_received for r in stats.records)

One-shot faults (``server.faults``, consumed by the next matching GET; a
``Fault(kind, path=..., methods=...)`` narrows the match):

    "503", "500", "429" (with Retry-After), "drop_mid_body" (full Content-Length,
    half the body, then FIN), "disconnect" (close before any reply), "truncate"
    (no Content-Length, half the body, then close: looks complete to HTTP),
    "long_body" (206 with extra bytes), "ignore_range" (200 + whole body),
    "slow" (wait ``slow_seconds`` before the status line), "stall" (headers and
    half the body, then wait ``slow_seconds``), "replace" (the object changes:
    new bytes, new ETag, new Last-Modified, same size), "wrong_range" (206
    for a different range).

Per-object quirks (``add(..., claim_size=N)``: a server that lies about the
object's size in ``Content-Length`` / ``Content-Range``, announcing every
range in full but sending only the bytes it has, then closing) and
server-wide ones (``ssl_context=``: serve HTTPS; ``add_redirect`` to an
absolute URL: a redirect to another origin, e.g. a second LoopbackServer;
``rate_limit_bps=`` / ``total_rate_limit_bps=``: bandwidth caps per connection
and for all connections together, off by default).
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FAULT_KINDS", "Fault", "LoopbackServer", "ServedObject", "TokenBucket"]

FAULT_KINDS = frozenset(
    {
        "503",
        "500",
        "429",
        "drop_mid_body",
        "disconnect",
        "truncate",
        "long_body",
        "ignore_range",
        "slow",
        "stall",
        "replace",
        "wrong_range",
    }
)

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_REASONS = {
    200: "OK",
    206: "Partial Content",
    302: "Found",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_CHUNK_BYTES = 64 * 1024


@dataclass
class Fault:
    """A one-shot fault for the next request that matches."""

    kind: str
    path: str | None = None
    """Only requests for this name (or ``/name``); None matches any."""
    methods: tuple[str, ...] = ("GET",)
    retry_after: str = "1"
    """``Retry-After`` header value sent with a 429."""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        if self.path is not None and not self.path.startswith("/"):
            self.path = "/" + self.path


@dataclass
class ServedObject:
    data: bytes
    forbidden: bool = False
    honour_range: bool | None = None
    content_type: str = "application/octet-stream"
    redirect_to: str | None = None
    claim_size: int | None = None
    """Size announced in Content-Length / Content-Range instead of ``len(data)`` (a lying server)."""
    version: int = 0
    modified: float = field(default_factory=time.time)

    _etag: tuple[int, int, str] | None = field(default=None, repr=False, compare=False)

    @property
    def etag(self) -> str:
        # Hashing a 30 MB benchmark file on every request cost 30-40 ms a
        # request and serialised concurrent reads: cache per (data, version).
        key = (id(self.data), self.version)
        if self._etag is None or self._etag[:2] != key:
            digest = hashlib.sha1(self.data).hexdigest()[:16]
            self._etag = (*key, '"' + digest + f"-{self.version}" + '"')
        return self._etag[2]

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.modified, usegmt=True)


class TokenBucket:
    """Paces body bytes to ``rate`` bytes per second: one connection's, or all of them when shared.

    A link's serialisation delay: a body of n bytes takes n / rate seconds to
    leave, so a benchmark sees what a bandwidth-limited origin costs, not just
    its latency. The bucket starts empty and holds at most ``burst`` bytes of
    credit, so an idle link sends at most ``burst`` bytes at once, and sleeping
    longer than asked (a busy event loop) is made up for by the credit that
    piled up meanwhile. Takers sharing a bucket queue up through its debt: each
    waits until everything taken before it has been paid back at ``rate``.
    """

    def __init__(self, rate: float, burst: int = _CHUNK_BYTES) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self.rate = float(rate)
        self.burst = max(int(burst), 1)
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes may be sent (any ``n``: credit may go negative, then it is paid back)."""
        self._refill()
        self._tokens -= n
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)
            self._refill()


class _FaultQueue:
    """A thread-safe queue of one-shot faults (``append`` strings or Fault objects)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.deque[Fault] = collections.deque()

    def append(self, fault: str | Fault) -> None:
        self._items.append(fault if isinstance(fault, Fault) else Fault(fault))

    def extend(self, faults: Any) -> None:
        for f in faults:
            self.append(f)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._items:
                if method in fault.methods and (fault.path is None or fault.path == path):
                    self._items.remove(fault)
                    return fault
        return None


class LoopbackServer:
    """HTTP/1.1 on 127.0.0.1 (random port) in a background thread, with quirk switches.

    Args:
        latency_seconds: delay before every reply (HEAD included).
        honour_range: False makes every object answer Range with 200 + the whole body.
        slow_seconds: how long "slow" and "stall" faults wait.
        ssl_context: an ``ssl.SSLContext`` to serve HTTPS instead of HTTP.
        rate_limit_bps: cap every connection's body bytes at this many bits per second
            (a :class:`TokenBucket` per connection, e.g. ``100e6`` for 100 Mbit/s);
            None (the default) sends as fast as the socket takes them. Concurrent
            connections are each capped, not their sum (a per-connection limit, as
            object stores and CDNs apply). Headers are not paced.
        total_rate_limit_bps: cap the body bytes of all connections together (one
            :class:`TokenBucket` shared by every connection: the client's own link);
            None (the default) for no shared cap. Combines with ``rate_limit_bps``.
    """

    def __init__(
        self,
        *,
        latency_seconds: float = 0.0,
        honour_range: bool = True,
        slow_seconds: float = 5.0,
        ssl_context: Any = None,
        rate_limit_bps: float | None = None,
        total_rate_limit_bps: float | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.rate_limit_bps = rate_limit_bps
        self._buckets: dict[asyncio.StreamWriter, TokenBucket] = {}
        self.total_rate_limit_bps = total_rate_limit_bps
        self._total_bucket = TokenBucket(total_rate_limit_bps / 8) if total_rate_limit_bps else None
        self.latency_seconds = latency_seconds
        self.honour_range = honour_range
        self.slow_seconds = slow_seconds
        self.faults = _FaultQueue()
        self._objects: dict[str, ServedObject] = {}
        self._lock = threading.Lock()
        self._sent: collections.Counter[str] = collections.Counter()
        self._requests: list[list[Any]] = []
        self.request_headers: list[tuple[str, str, dict[str, str]]] = []
        """``(method, path, headers with lower-case names)`` of every request received."""
        self._num_connections = 0
        self._open_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._on_connection, "127.0.0.1", 0, ssl=self.ssl_context)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="LoopbackServer", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("LoopbackServer did not start")
        return self

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def close(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- content ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name.lstrip('/')}"

    def add(
        self,
        name: str,
        data: bytes | Path,
        *,
        forbidden: bool = False,
        honour_range: bool | None = None,
        content_type: str = "application/octet-stream",
        claim_size: int | None = None,
    ) -> str:
        """Serve ``data`` (bytes or a file's contents) at ``/name``; returns its URL.

        ``forbidden`` answers 403; ``honour_range`` overrides the server-wide switch;
        ``claim_size`` makes the server lie: it announces that size (and every range
        inside it in full) but sends only the bytes of ``data``, then closes.
        """
        if isinstance(data, Path):
            data = data.read_bytes()
        obj = ServedObject(
            bytes(data),
            forbidden=forbidden,
            honour_range=honour_range,
            content_type=content_type,
            claim_size=claim_size,
        )
        # Hash now: a 300 MB benchmark file took 0.27 s to hash, which its first request would wait for.
        obj.etag  # noqa: B018
        with self._lock:
            self._objects["/" + name.lstrip("/")] = obj
        return self.url(name)

    def add_html(self, name: str, html: str | None = None, *, honour_range: bool = False) -> str:
        """An HTML page answering 200 (a login page or soft 404 where a video was expected)."""
        html = html or "<!doctype html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>\n"
        return self.add(name, html.encode(), honour_range=honour_range, content_type="text/html; charset=utf-8")

    def add_redirect(self, name: str, target: str) -> str:
        """``/name`` answers 302 to ``/target``, or to ``target`` itself if it is an absolute URL."""
        location = target if "://" in target else "/" + target.lstrip("/")
        with self._lock:
            self._objects["/" + name.lstrip("/")] = ServedObject(b"", redirect_to=location)
        return self.url(name)

    def replace(self, name: str, data: bytes | Path) -> None:
        """Change an object's bytes (new ETag and Last-Modified), as an overwrite would."""
        if isinstance(data, Path):
            data = data.read_bytes()
        with self._lock:
            obj = self._objects["/" + name.lstrip("/")]
            obj.data = bytes(data)
            obj.version += 1
            obj.modified = max(time.time(), obj.modified + 1)

    def remove(self, name: str) -> None:
        with self._lock:
            self._objects.pop("/" + name.lstrip("/"), None)

    # -- counters -----------------------------------------------------------------------------

    @property
    def bytes_sent(self) -> int:
        """Body bytes written (all paths), counted once they left the process."""
        with self._lock:
            return sum(self._sent.values())

    def bytes_sent_for(self, name: str) -> int:
        with self._lock:
            return self._sent["/" + name.lstrip("/")]

    @property
    def requests(self) -> list[tuple[str, str, str | None, int, int]]:
        """``(method, path, range header, status, body bytes sent)`` per finished request."""
        with self._lock:
            return [tuple(entry) for entry in self._requests]

    @property
    def num_connections(self) -> int:
        """Connections accepted so far."""
        return self._num_connections

    @property
    def open_connections(self) -> int:
        """Connections currently open (as the server sees them)."""
        return self._open_connections

    def reset_counts(self) -> None:
        with self._lock:
            self._sent.clear()
            self._requests.clear()
            self._num_connections = 0

    # -- protocol -----------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._num_connections += 1
        self._open_connections += 1
        # Write buffer 0: drain() returns only once the bytes are in the kernel, so counts are exact.
        # (Not over TLS: asyncio's SSL transport may then never resume writing; counts there are
        # of plaintext bytes anyway.)
        if self.ssl_context is None:
            writer.transport.set_write_buffer_limits(high=0)
        if self.rate_limit_bps:
            self._buckets[writer] = TokenBucket(self.rate_limit_bps / 8)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await self._respond(writer, "GET", "/", None, 400, {}, b"bad request\n")
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                keep = await self._handle(writer, method.upper(), target, headers)
                if not keep or headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._open_connections -= 1
            self._tasks.discard(task)
            self._buckets.pop(writer, None)
            try:
                writer.close()
            except Exception:
                pass

    async def _handle(self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str]) -> bool:
        """Answer one request; returns False when the connection must close."""
        path = target.split("?", 1)[0].split("#", 1)[0]
        range_header = headers.get("range")
        with self._lock:
            self.request_headers.append((method, path, dict(headers)))
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        if method not in ("GET", "HEAD"):
            return await self._respond(writer, method, path, range_header, 405, {}, b"")
        fault = self.faults.take(method, path)
        kind = fault.kind if fault else None
        with self._lock:
            obj = self._objects.get(path)
            if obj is not None and kind == "replace":
                obj.data = bytes(b ^ 0xFF for b in obj.data[:64]) + obj.data[64:]
                obj.version += 1
                obj.modified = max(time.time(), obj.modified + 1)
            snapshot = None if obj is None else (obj.data, obj.etag, obj.last_modified, obj)
        if kind == "disconnect":
            self._log(method, path, range_header, 0)
            return False
        if kind == "slow":
            await asyncio.sleep(self.slow_seconds)
        if kind in ("503", "500"):
            return await self._respond(writer, method, path, range_header, int(kind), {}, b"try again later\n")
        if kind == "429":
            return await self._respond(
                writer, method, path, range_header, 429, {"Retry-After": fault.retry_after}, b"slow down\n"
            )
        if snapshot is None:
            return await self._respond(writer, method, path, range_header, 404, {}, b"not found\n")
        data, etag, modified, obj = snapshot
        if obj.redirect_to is not None:
            return await self._respond(writer, method, path, range_header, 302, {"Location": obj.redirect_to}, b"")
        if obj.forbidden:
            return await self._respond(writer, method, path, range_header, 403, {}, b"forbidden\n")
        honour = (obj.honour_range if obj.honour_range is not None else self.honour_range) and kind != "ignore_range"
        base = {
            "Content-Type": obj.content_type,
            "ETag": etag,
            "Last-Modified": modified,
            "Accept-Ranges": "bytes" if honour else "none",
        }
        size = len(data) if obj.claim_size is None else obj.claim_size
        status, body = 200, data
        if range_header is not None and honour:
            m = _RANGE.match(range_header)
            if m is None or (m.group(1) == "" and m.group(2) == ""):
                return await self._respond(
                    writer, method, path, range_header, 416, {"Content-Range": f"bytes */{size}"}, b""
                )
            if m.group(1) == "":  # suffix: last n bytes
                start, stop = max(0, size - int(m.group(2))), size
            else:
                start = int(m.group(1))
                stop = min(size, int(m.group(2)) + 1) if m.group(2) else size
            if start >= size or stop <= start:
                return await self._respond(
                    writer, method, path, range_header, 416, {"Content-Range": f"bytes */{size}"}, b""
                )
            if kind == "wrong_range":
                start, stop = start + 1, min(size, stop + 1)
            status, body = 206, data[start:stop]
            base["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        announced = len(body)
        if obj.claim_size is not None:
            announced = (stop - start) if status == 206 else size
        if method == "HEAD":
            return await self._respond(writer, method, path, range_header, status, base, b"", head_length=announced)
        if announced != len(body):  # the lie: announce it all, send what we have, close
            return await self._respond(
                writer, method, path, range_header, status, base, body, head_length=announced, cut_after=len(body)
            )
        if kind == "long_body":
            body = body + b"\0" * 100
        if kind in ("drop_mid_body", "stall"):
            return await self._respond(
                writer,
                method,
                path,
                range_header,
                status,
                base,
                body,
                cut_after=max(1, len(body) // 2),
                stall=kind == "stall",
            )
        if kind == "truncate":
            base["Connection"] = "close"
            return await self._respond(
                writer, method, path, range_header, status, base, body[: len(body) // 2], no_length=True
            )
        return await self._respond(writer, method, path, range_header, status, base, body)

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        range_header: str | None,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        head_length: int | None = None,
        cut_after: int | None = None,
        stall: bool = False,
        no_length: bool = False,
    ) -> bool:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        headers = dict(headers)
        if not no_length:
            headers["Content-Length"] = str(head_length if head_length is not None else len(body))
        headers.setdefault("Date", email.utils.formatdate(usegmt=True))
        lines += [f"{k}: {v}" for k, v in headers.items()]
        entry = self._log(method, path, range_header, status)
        transport = writer.transport
        bucket = self._buckets.get(writer)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            if method != "HEAD":
                limit = len(body) if cut_after is None else cut_after
                view = memoryview(body)[:limit]
                for i in range(0, len(view), _CHUNK_BYTES):
                    chunk = view[i : i + _CHUNK_BYTES]
                    # Count before writing: a test reading the counter right after its read must
                    # not race this thread (the GIL may switch between send() and a later count).
                    # If the connection then fails, what was still buffered in-process never left.
                    if bucket is not None:
                        await bucket.take(len(chunk))
                    if self._total_bucket is not None:
                        await self._total_bucket.take(len(chunk))
                    if transport.is_closing():
                        raise ConnectionResetError("client went away")
                    self._count(path, entry, len(chunk))
                    try:
                        writer.write(chunk)
                        pending = transport.get_write_buffer_size()
                    except (ConnectionError, OSError):
                        self._count(path, entry, -len(chunk))
                        raise
                    try:
                        await writer.drain()
                    except (ConnectionError, OSError):
                        self._count(path, entry, -pending)
                        raise
                if stall:
                    await asyncio.sleep(self.slow_seconds)
        except (ConnectionError, OSError):
            return False
        return cut_after is None and not no_length

    def _count(self, path: str, entry: list[Any], n: int) -> None:
        with self._lock:
            self._sent[path] += n
            entry[4] += n

    def _log(self, method: str, path: str, range_header: str | None, status: int) -> list[Any]:
        entry: list[Any] = [method, path, range_header, status, 0]
        with self._lock:
            self._requests.append(entry)
        return entry
