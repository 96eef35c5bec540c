"""Shared pieces of the source backends: object identity, transient faults, helpers."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .._types import ByteRange
from ._redact import redact_text

__all__ = [
    "Backend",
    "Identity",
    "ShortBody",
    "Transient",
    "Unreachable",
    "describe",
    "exception_chain",
    "gather_or_cancel",
    "safe_cause",
    "unreachable_reason",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Identity:
    """Which version of an object we opened: checked against every later reply."""

    size: int
    """Object size in bytes."""
    etag: str | None = None
    """HTTP ETag (or an object store's etag / generation)."""
    last_modified: str | None = None
    """HTTP Last-Modified (or an mtime); only compared when there is no ETag."""

    @property
    def validator(self) -> str | None:
        """ETag, else Last-Modified, else None."""
        return self.etag if self.etag is not None else self.last_modified


class Backend(Protocol):
    """What RangeSource needs from the reader of one object (local file, fsspec, HTTP, file object).

    A backend may also offer ``stat_and_read_head(nbytes) -> (Identity, bytes)``
    (HTTP does: size and first bytes in one request); RangeSource looks it up.
    """

    def stat(self) -> Identity: ...

    def read(self, ranges: Sequence[ByteRange], identity: Identity) -> list[bytes]: ...

    def close(self) -> None: ...


class Transient(Exception):
    """A fault worth retrying (reset, drop, timeout, 408/429/5xx)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_seconds = retry_after_seconds


class ShortBody(Transient):
    """A reply whose framing completed with fewer bytes than asked (retried once, see RangeSource)."""


class Unreachable(Exception):
    """The host cannot be reached (DNS, refused, TLS): not worth the retry budget.

    ``retry_once`` marks the few cases that may clear up at once (a DNS server's
    "temporary failure"): those get one more attempt, never more.
    """

    def __init__(self, message: str, *, retry_once: bool = False) -> None:
        super().__init__(message)
        self.retry_once = retry_once


def describe(e: BaseException) -> str:
    """``Type: message`` with every URL in the message redacted."""
    text = redact_text(str(e))
    name = type(e).__name__
    return f"{name}: {text}" if text else name


def exception_chain(e: BaseException | None) -> Iterator[BaseException]:
    """``e`` and every exception reachable through ``__cause__`` / ``__context__`` (each once)."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend((item.__cause__, item.__context__, getattr(item, "os_error", None)))


def _clean(e: BaseException) -> bool:
    texts = [str(e), repr(e), *(str(a) for a in getattr(e, "args", ()))]
    return all(redact_text(t) == t for t in texts)


def safe_cause(e: BaseException) -> BaseException | None:
    """``e`` if neither it nor anything on its cause/context chain holds a URL
    secret (so ``raise ... from e`` cannot leak one), else None.

    Raise the new error outside the ``except`` block (or clear its
    ``__context__``) when this returns None: ``from None`` only hides the
    context from tracebacks, ``__context__`` still holds the original.
    """
    return e if all(_clean(item) for item in exception_chain(e)) else None


def unreachable_reason(e: BaseException, host: str | None = None) -> Unreachable | None:
    """An ``Unreachable`` if ``e`` (or its chain) is a DNS, refused-connection or TLS failure.

    Args:
        e: the exception a connection attempt raised.
        host: ``host:port`` for the message, when ``e`` does not say.
    """
    chain = list(exception_chain(e))
    where = host or _host_of(chain)
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError) or type(item).__name__ == "ClientConnectorCertificateError":
            detail = getattr(item, "verify_message", None) or getattr(
                getattr(item, "certificate_error", None), "verify_message", None
            )
            return Unreachable(
                f"TLS certificate verification failed for {where}"
                + (f" ({detail})" if detail else "")
                + "; check the server's certificate, or pass an ssl context in storage_options"
            )
    for item in chain:
        if isinstance(item, ssl.SSLError) and not isinstance(item, ssl.SSLZeroReturnError | ssl.SSLEOFError):
            return Unreachable(f"TLS handshake with {where} failed ({type(item).__name__}: {redact_text(str(item))})")
    for item in chain:
        if isinstance(item, socket.gaierror) or type(item).__name__ == "ClientConnectorDNSError":
            temporary = any(isinstance(x, socket.gaierror) and x.errno == socket.EAI_AGAIN for x in chain)
            return Unreachable(f"DNS lookup failed for host {where.rsplit(':', 1)[0]}", retry_once=temporary)
    for item in chain:
        if isinstance(item, ConnectionRefusedError) or (isinstance(item, OSError) and item.errno == errno.ECONNREFUSED):
            return Unreachable(f"connection refused by {where}")
    return None


def _host_of(chain: list[BaseException]) -> str:
    for item in chain:
        if type(item).__name__.startswith("ClientConnector"):  # aiohttp: .host / .port of the connection
            if not (hasattr(item, "host") and hasattr(item, "port")):
                continue
            host, port = item.host, item.port
            if host:
                return f"{host}:{port}" if port else str(host)
    return "the server"


async def gather_or_cancel(factories: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run coroutines with at most ``limit`` at a time; the first error cancels the rest.

    (``asyncio.gather`` would let the others run on in the background.)
    """
    semaphore = asyncio.Semaphore(max(1, limit))

    async def guarded(factory: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await factory()

    tasks = [asyncio.ensure_future(guarded(f)) for f in factories]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
