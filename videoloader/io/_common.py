"""Shared pieces of the source backends: object identity, transient faults, helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ._redact import redact_text

__all__ = ["Identity", "ShortBody", "Transient", "describe", "gather_or_cancel", "safe_cause"]

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


class Transient(Exception):
    """A fault worth retrying (reset, drop, timeout, 408/429/5xx)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_seconds = retry_after_seconds


class ShortBody(Transient):
    """A reply whose framing completed with fewer bytes than asked (retried once, see RangeSource)."""


def describe(e: BaseException) -> str:
    """``Type: message`` with every URL in the message redacted."""
    text = redact_text(str(e))
    name = type(e).__name__
    return f"{name}: {text}" if text else name


def safe_cause(e: BaseException) -> BaseException | None:
    """``e`` if its message holds no secret (so ``raise ... from e`` cannot leak one), else None."""
    return e if redact_text(str(e)) == str(e) else None


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
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
