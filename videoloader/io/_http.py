"""HTTP(S) backend: our own aiohttp GETs, so every status line and body byte is checked and counted.

Reply rules (each attempt is one ``TransferRecord``):

* ``206`` with ``Content-Range`` equal to the range asked and exactly that many
  body bytes: success. A longer body (announced or sent) raises
  ``RangeRequestError`` at once; a shorter one whose framing completed is
  retried once (it is what a connection-close-delimited body cut by a dropped
  connection looks like), the second time it raises ``RangeRequestError``.
* ``200`` to a Range request means the server ignored Range. Unless the range
  asked was the whole object, we close the connection right after the status
  line, record the bytes that had already arrived (the waste) and raise
  ``RangeRequestError``: downloading the whole object silently is exactly the
  cost this library exists to avoid.
* ETag (else Last-Modified) and the size (``Content-Range`` total) of every
  reply must match what the source saw when it opened, else
  ``SourceChangedError``: bytes of two versions are never mixed.
* ``404``/``410`` -> ``SourceNotFoundError``; ``401``/``403`` ->
  ``SourceAccessError``; ``408``/``429``/``5xx`` (not 501/505), resets, drops
  mid-body and timeouts are transient and retried (``Retry-After`` honoured up
  to ``RetryPolicy.max_delay_seconds``); when the attempts run out,
  ``TransferError``.
* A name that does not resolve, a refused connection or a TLS certificate
  that fails verification is not transient: ``SourceUnreachableError`` at once
  (a DNS "temporary failure" gets one more attempt), saying which of them.
* Redirects are followed here (at most ``MAX_REDIRECTS``), not by aiohttp: a
  hop to another scheme, host or port drops every header from
  ``storage_options`` and the ``auth`` / ``cookies`` options, unless
  ``storage_options["forward_headers_on_redirect"]`` is true.
* No raised error carries an aiohttp exception (whose message may embed the
  URL with its query string) as ``__cause__`` or ``__context__``.

We send ``Accept-Encoding: identity`` and never decompress, so recorded bytes
are the body bytes on the wire.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import (
    RangeRequestError,
    SourceAccessError,
    SourceChangedError,
    SourceError,
    SourceNotFoundError,
)
from .._types import ByteRange
from ._common import Identity, ShortBody, Transient, Unreachable, describe, gather_or_cancel, unreachable_reason
from ._loop import run_sync, sessions
from ._redirect import Redirects, origin
from ._retry import RetryPolicy, parse_retry_after, retry_async
from ._stats import TransferRecord, TransferStats

if TYPE_CHECKING:  # pragma: no cover - aiohttp is imported lazily (its import takes ~0.4 s)
    from aiohttp import ClientResponse, ClientSession, ClientTimeout

__all__ = ["HttpBackend"]

T = TypeVar("T")

# Per-attempt total timeout = connect + 2 * read timeout + body size at this
# (pessimistic) throughput, so a slow drip cannot hold a request forever while
# a large range on a slow link still fits.
_MIN_THROUGHPUT_BYTES_PER_SECOND = 256 * 1024
# Error bodies (404 pages, 503 notices) are read up to this size so the
# connection can be reused and the bytes are counted; larger ones close it.
_ERROR_BODY_BYTES = 64 * 1024
# storage_options keys passed on to every request (the rest of fsspec's HTTP
# options are about its own file objects and do not apply here).
_REQUEST_OPTIONS = ("headers", "auth", "ssl", "proxy", "proxy_auth", "cookies")

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


def _transient_status(status: int) -> bool:
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def _raw_bytes(resp: ClientResponse) -> int:
    content = resp.content
    return int(getattr(content, "total_raw_bytes", None) or getattr(content, "total_bytes", 0) or 0)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``(first, last, total)`` (inclusive last; None where ``*``), or None if absent/unparsable."""
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if m is None:
        return None
    first, last, total = m.groups()
    return (
        int(first) if first is not None else None,
        int(last) if last is not None else None,
        int(total) if total != "*" else None,
    )


class HttpBackend:
    """Range reads over HTTP(S) on this process's shared aiohttp session."""

    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        redacted: str,
        storage_options: dict[str, Any],
        retry: RetryPolicy,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        max_concurrency: int,
        stats: TransferStats,
    ) -> None:
        self._url = url
        self._redacted = redacted
        self._client_kwargs = dict(storage_options.get("client_kwargs") or {})
        self._request_kwargs = {k: storage_options[k] for k in _REQUEST_OPTIONS if k in storage_options}
        headers = dict(self._client_kwargs.pop("headers", None) or {})
        headers.update(self._request_kwargs.pop("headers", None) or {})
        # Session-wide auth / cookies would go to every host a redirect leads to: send them per request.
        for key in ("auth", "cookies"):
            if key in self._client_kwargs:
                self._request_kwargs.setdefault(key, self._client_kwargs.pop(key))
        self._redirects = Redirects(
            url,
            redacted=redacted,
            user_headers=headers,
            request_kwargs=self._request_kwargs,
            forward=bool(storage_options.get("forward_headers_on_redirect", False)),
        )
        try:
            host, port = origin(url)[1:]
        except (ValueError, TypeError):
            host, port = "the server", None
        self._host = f"{host}:{port}" if port is not None else host
        self._session_key = repr(sorted(self._client_kwargs.items(), key=lambda kv: kv[0]))
        self._retry = retry
        self._connect_timeout = connect_timeout_seconds
        self._read_timeout = read_timeout_seconds
        self._max_concurrency = max_concurrency
        self._stats = stats
        self._session: ClientSession | None = None
        self._lock = threading.Lock()

    # -- session -------------------------------------------------------------------------------

    def _get_session(self) -> ClientSession:
        with self._lock:
            if self._session is None or self._session.closed:
                self._session = sessions.acquire(self._session_key, self._client_kwargs)
            return self._session

    def close(self) -> None:
        """Give the session back (the last user in the process closes it and its sockets)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            sessions.release(self._session_key, session)

    # -- public (blocking) -----------------------------------------------------------------------

    def stat(self) -> Identity:
        """Size and validator from a HEAD (or a 1-byte GET where HEAD is refused)."""
        session = self._get_session()
        return run_sync(self._stat(session))

    def stat_and_read_head(self, nbytes: int) -> tuple[Identity, bytes]:
        """Size, validator and the first ``min(nbytes, size)`` bytes from one
        ranged GET (``Content-Range`` gives the size): a reader's open costs one
        round trip instead of a HEAD and a GET."""
        session = self._get_session()
        return run_sync(self._retrying(0, nbytes, lambda attempt: self._head_get(session, nbytes, attempt)))

    def read(self, ranges: Sequence[ByteRange], identity: Identity) -> list[bytes]:
        """The bytes of each range (already coalesced, non-empty, inside the object)."""
        session = self._get_session()
        factories = [functools.partial(self._fetch, session, r, identity) for r in ranges]
        return run_sync(gather_or_cancel(factories, self._max_concurrency))

    # -- retries ---------------------------------------------------------------------------------

    async def _retrying(self, start: int, stop: int, once: Callable[[int], Awaitable[T]]) -> T:
        """``once(attempt)`` under the retry policy (the loop shared by every backend)."""
        return await retry_async(self._retry, once, redacted=self._redacted, what=f"[{start}, {stop})")

    def _timeout(self, nbytes: int) -> ClientTimeout:
        import aiohttp

        total = self._connect_timeout + 2 * self._read_timeout + nbytes / _MIN_THROUGHPUT_BYTES_PER_SECOND
        return aiohttp.ClientTimeout(total=total, sock_connect=self._connect_timeout, sock_read=self._read_timeout)

    async def _attempt(
        self,
        start: int,
        stop: int,
        bytes_requested: int,
        attempt: int,
        send: tuple[ClientSession, str, dict[str, str], ClientTimeout],
        handle: Callable[[ClientResponse], Awaitable[T]],
    ) -> T:
        """One request: send (following redirects), handle the reply, classify failures, record the attempt.

        ``send`` is ``(session, method, our headers, timeout)``.
        """
        import aiohttp

        session, method, own_headers, timeout = send
        t0 = time.perf_counter()
        status: int | None = None
        hops = [0]  # body bytes of redirect replies
        received = 0
        error: str | None = None
        ok = False
        failure: BaseException | None = None
        try:
            resp = await self._redirects.send(session, method, own_headers, timeout, hops)
            async with resp:
                status = resp.status
                try:
                    result = await handle(resp)
                finally:
                    received = _raw_bytes(resp)
            ok = True
            return result
        except (Transient, Unreachable, SourceError) as e:  # ours: the message is already redacted
            error = str(e)
            raise
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError, ValueError) as e:
            failure = self._translate(e)
            error = str(failure)
        finally:
            received += hops[0]
            self._stats.add(
                TransferRecord(
                    url=self._redacted,
                    start=start,
                    stop=stop,
                    bytes_requested=bytes_requested,
                    bytes_received=received,
                    status=status,
                    latency_seconds=time.perf_counter() - t0,
                    attempt=attempt,
                    error=error,
                    ok=ok,
                )
            )
        # Raised here, outside the except block, so the aiohttp error (whose text may
        # hold the raw URL) is not kept as __context__.
        raise failure

    def _translate(self, e: BaseException) -> BaseException:
        """Our exception for an aiohttp / socket failure; its message is redacted."""
        import aiohttp

        unreachable = unreachable_reason(e, self._host)
        if unreachable is not None:
            return unreachable
        if isinstance(e, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError)):
            return Transient(describe(e))
        # A bad URL, a malformed reply, a closed session: not worth retrying.
        return SourceError(f"{self._redacted}: {describe(e)}")

    # -- stat ------------------------------------------------------------------------------------

    async def _stat(self, session: ClientSession) -> Identity:
        headers = {"Accept-Encoding": "identity"}

        head = (session, "HEAD", headers, self._timeout(0))

        async def handle_head(resp: ClientResponse) -> Identity | None:
            if resp.status in (401, 403, 405, 501):  # e.g. a URL signed for GET only: ask with GET
                await self._drain(resp)
                return None
            await self._raise_for_error(resp, "HEAD")
            length = resp.headers.get("Content-Length")
            encoding = resp.headers.get("Content-Encoding", "identity").lower()
            if resp.status != 200 or length is None or encoding not in ("", "identity"):
                return None  # no usable size: ask with a 1-byte GET instead
            return Identity(int(length), resp.headers.get("ETag"), resp.headers.get("Last-Modified"))

        identity = await self._retrying(0, 0, lambda attempt: self._attempt(0, 0, 0, attempt, head, handle_head))
        if identity is not None:
            return identity
        return await self._retrying(0, 1, lambda attempt: self._probe(session, attempt))

    async def _probe(self, session: ClientSession, attempt: int) -> Identity:
        """``GET bytes=0-0``: works where HEAD is refused (e.g. URLs signed for GET only)."""
        get = (session, "GET", {"Range": "bytes=0-0", "Accept-Encoding": "identity"}, self._timeout(1))

        async def handle(resp: ClientResponse) -> Identity:
            if resp.status == 416:  # empty object: "bytes */0"
                parsed = _parse_content_range(resp.headers.get("Content-Range"))
                await self._drain(resp)
                if parsed is not None and parsed[2] is not None:
                    return Identity(parsed[2], resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            await self._raise_for_error(resp, "GET bytes=0-0")
            etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            if resp.status == 206:
                parsed = _parse_content_range(resp.headers.get("Content-Range"))
                await self._drain(resp)
                if parsed is not None and parsed[2] is not None:
                    return Identity(parsed[2], etag, modified)
            elif resp.status == 200 and resp.content_length is not None:
                resp.close()  # the server ignores Range: learn the size, don't download
                return Identity(resp.content_length, etag, modified)
            resp.close()
            raise SourceError(
                f"{self._redacted}: cannot learn the object size: HEAD gave no Content-Length and "
                f"GET bytes=0-0 gave HTTP {resp.status} without a usable Content-Range."
            )

        return await self._attempt(0, 1, 1, attempt, get, handle)

    async def _head_get(self, session: ClientSession, nbytes: int, attempt: int) -> tuple[Identity, bytes]:
        headers = {"Range": f"bytes=0-{nbytes - 1}", "Accept-Encoding": "identity"}
        get = (session, "GET", headers, self._timeout(nbytes))

        async def handle(resp: ClientResponse) -> tuple[Identity, bytes]:
            etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            if resp.status == 416:  # an empty object: "bytes */0"
                parsed = _parse_content_range(resp.headers.get("Content-Range"))
                await self._drain(resp)
                if parsed is not None and parsed[2] == 0:
                    return Identity(0, etag, modified), b""
                raise RangeRequestError(f"{self._redacted}: GET bytes=0-{nbytes - 1} got HTTP 416.")
            await self._raise_for_error(resp, f"GET bytes=0-{nbytes - 1}")
            if resp.status == 206:
                parsed = _parse_content_range(resp.headers.get("Content-Range"))
                if parsed is None or parsed[2] is None:
                    resp.close()
                    raise RangeRequestError(
                        f"{self._redacted}: HTTP 206 without a usable Content-Range "
                        f"({resp.headers.get('Content-Range')!r}); cannot learn the object size."
                    )
                identity = Identity(parsed[2], etag, modified)
            elif resp.status == 200 and resp.content_length is not None:
                identity = Identity(resp.content_length, etag, modified)
            else:
                resp.close()
                raise RangeRequestError(
                    f"{self._redacted}: GET bytes=0-{nbytes - 1} got HTTP {resp.status}; expected 206."
                )
            # From here on the reply is checked exactly like any range read of
            # [0, min(nbytes, size)) (a 200 is accepted only for the whole object).
            r = ByteRange(0, min(nbytes, identity.size))
            if not r.nbytes:
                await self._drain(resp)
                return identity, b""
            return identity, await self._handle_range_reply(resp, r, identity)

        return await self._attempt(0, nbytes, nbytes, attempt, get, handle)

    # -- GET ranges ------------------------------------------------------------------------------

    async def _fetch(self, session: ClientSession, r: ByteRange, identity: Identity) -> bytes:
        get = (session, "GET", {"Range": r.http_header(), "Accept-Encoding": "identity"}, self._timeout(r.nbytes))

        async def handle(resp: ClientResponse) -> bytes:
            return await self._handle_range_reply(resp, r, identity)

        return await self._retrying(
            r.start, r.stop, lambda attempt: self._attempt(r.start, r.stop, r.nbytes, attempt, get, handle)
        )

    async def _handle_range_reply(self, resp: ClientResponse, r: ByteRange, identity: Identity) -> bytes:
        asked = f"asked for [{r.start}, {r.stop})"
        if resp.status == 416:
            parsed = _parse_content_range(resp.headers.get("Content-Range"))
            await self._drain(resp)
            if parsed is not None and parsed[2] is not None and parsed[2] != identity.size:
                raise SourceChangedError(
                    f"{self._redacted}: the object is now {parsed[2]} bytes, it was {identity.size} when opened; "
                    "reopen it to read the new version."
                )
            raise RangeRequestError(f"{self._redacted}: {asked} of a {identity.size}-byte object, got HTTP 416.")
        await self._raise_for_error(resp, f"GET {r.http_header()}")
        if resp.status not in (200, 206):
            await self._drain(resp)
            raise RangeRequestError(f"{self._redacted}: {asked}, got HTTP {resp.status} {resp.reason}; expected 206.")
        self._check_identity(resp, identity)
        encoding = resp.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("", "identity"):
            resp.close()
            raise RangeRequestError(
                f"{self._redacted}: {asked}, got a body with Content-Encoding {encoding!r} despite "
                "Accept-Encoding: identity; ranges of an encoded body are not ranges of the object."
            )
        if resp.status == 200:
            whole = r.start == 0 and r.stop == identity.size
            if not whole or (resp.content_length is not None and resp.content_length != identity.size):
                # Stop at the status line: reading on would download the whole object.
                resp.close()
                length = resp.content_length if resp.content_length is not None else "unknown"
                kind = resp.headers.get("Content-Type", "no Content-Type")
                raise RangeRequestError(
                    f"{self._redacted}: {asked}, got HTTP 200 with the whole object ({kind}, Content-Length {length}); "
                    f"closed the connection after {_raw_bytes(resp)} bytes. The server must honour Range "
                    "requests (Accept-Ranges: bytes)."
                )
        else:
            parsed = _parse_content_range(resp.headers.get("Content-Range"))
            if parsed is not None and (parsed[0], parsed[1]) != (r.start, r.stop - 1):
                resp.close()
                raise RangeRequestError(
                    f"{self._redacted}: {asked}, got HTTP 206 for Content-Range "
                    f"{resp.headers.get('Content-Range')!r}; the server must return exactly the range asked."
                )
        return await self._read_exact(resp, r, asked)

    async def _read_exact(self, resp: ClientResponse, r: ByteRange, asked: str) -> bytes:
        n = r.nbytes
        length = resp.content_length
        if length is not None and length > n:
            resp.close()
            raise RangeRequestError(
                f"{self._redacted}: {asked} ({n} bytes), got HTTP {resp.status} announcing {length} bytes; "
                "the server must return exactly the range asked."
            )
        if length == n:
            return await resp.read()  # aiohttp raises ClientPayloadError if the body ends early
        # Length unknown (chunked / close-delimited) or announced short: read at most n + 1 bytes.
        buf = bytearray()
        while len(buf) <= n:
            chunk = await resp.content.read(n + 1 - len(buf))
            if not chunk:
                break
            buf += chunk
        if len(buf) > n:
            resp.close()
            raise RangeRequestError(
                f"{self._redacted}: {asked} ({n} bytes), got HTTP {resp.status} with more bytes than that; "
                "the server must return exactly the range asked."
            )
        if len(buf) < n:
            raise ShortBody(f"short body: got {len(buf)} of {n} bytes", status=resp.status)
        return bytes(buf)

    # -- reply checks ----------------------------------------------------------------------------

    def _check_identity(self, resp: ClientResponse, identity: Identity) -> None:
        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        changed = None
        if identity.etag is not None and etag is not None and etag != identity.etag:
            changed = f"ETag {etag} (was {identity.etag})"
        elif identity.etag is None and identity.last_modified is not None and modified is not None:
            if modified != identity.last_modified:
                changed = f"Last-Modified {modified!r} (was {identity.last_modified!r})"
        if changed is None:
            parsed = _parse_content_range(resp.headers.get("Content-Range")) if resp.status == 206 else None
            total = parsed[2] if parsed is not None else None
            if resp.status == 200 and resp.content_length is not None:
                total = resp.content_length
            if total is not None and total != identity.size:
                changed = f"size {total} bytes (was {identity.size})"
        if changed is not None:
            resp.close()
            raise SourceChangedError(
                f"{self._redacted}: the object changed since it was opened: {changed}. Reading on would mix "
                "bytes of two versions; reopen the source."
            )

    async def _raise_for_error(self, resp: ClientResponse, what: str) -> None:
        status = resp.status
        if status < 400 and status != 204:
            return
        await self._drain(resp)
        reason = resp.reason or ""
        if status in (404, 410):
            raise SourceNotFoundError(f"{self._redacted}: {what} got HTTP {status} {reason}: no such object.")
        if status in (401, 403):
            raise SourceAccessError(
                f"{self._redacted}: {what} got HTTP {status} {reason}: access denied. Check the credentials in "
                "storage_options (a signed URL may have expired)."
            )
        if _transient_status(status):
            raise Transient(
                f"HTTP {status} {reason}",
                status=status,
                retry_after_seconds=parse_retry_after(resp.headers.get("Retry-After")),
            )
        if status == 204:
            raise RangeRequestError(f"{self._redacted}: {what} got HTTP 204 No Content.")
        raise SourceError(f"{self._redacted}: {what} got HTTP {status} {reason}.")

    async def _drain(self, resp: ClientResponse) -> None:
        """Read a small error body (counted, connection reusable); close on a large one."""
        length = resp.content_length
        if length is not None and length > _ERROR_BODY_BYTES:
            resp.close()
            return
        try:
            data = await resp.content.read(_ERROR_BODY_BYTES + 1)
            while data and len(data) <= _ERROR_BODY_BYTES:
                more = await resp.content.read(_ERROR_BODY_BYTES + 1 - len(data))
                if not more:
                    return
                data += more
            if data:
                resp.close()
        except Exception:
            resp.close()
