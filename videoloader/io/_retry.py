"""Retry policy and the one retry loop every backend uses.

:class:`RetryPolicy` says how often and how long to wait; :func:`retry_async`
and :func:`retry_sync` are the loop (one for coroutines, its twin for blocking
calls, sharing the classification and the waits through :class:`_Attempts`).

An attempt reports how it failed by the exception it raises:

* :class:`~videoloader.io._common.Transient` (resets, drops, timeouts,
  408/429/5xx): retried with capped backoff and jitter; its
  ``retry_after_seconds`` (the server's ``Retry-After``) raises the wait, up to
  ``RetryPolicy.max_delay_seconds``. Exhausted: ``TransferError``.
* :class:`~videoloader.io._common.ShortBody` (a Transient): a reply whose
  framing completed with too few bytes gets one more attempt, then
  ``RangeRequestError``.
* :class:`~videoloader.io._common.Unreachable` (DNS, refused, TLS): raised as
  ``SourceUnreachableError`` at once (after one more attempt when
  ``retry_once``, a DNS "temporary failure").
* Anything else (``SourceNotFoundError`` for a 404, ``SourceAccessError`` for
  a 403, ``SourceChangedError``, ``SourceUnreachableError``...) is permanent
  and propagates at once.

Each attempt records itself as a ``TransferRecord`` (it alone knows the
status and the bytes received); the loop only decides whether to go on.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .._errors import RangeRequestError, SourceUnreachableError, TransferError
from ._common import ShortBody, Transient, Unreachable

__all__ = ["RetryPolicy", "parse_retry_after", "retry_async", "retry_sync"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient faults are retried.

    Transient faults are: connection refused/reset or dropped mid-body, connect
    and read timeouts, HTTP 408, 429 and 5xx (except 501 and 505). Attempt ``n``
    (1-based) that fails waits ``min(max_delay_seconds, base_delay_seconds *
    2 ** (n - 1))`` scaled by a random factor in ``[1 - jitter, 1]`` before the
    next one; a ``Retry-After`` header raises the wait to what the server asked,
    but never beyond ``max_delay_seconds``. Every attempt is a ``TransferRecord``.

    Example: the defaults wait about 0.05-0.1 s, 0.1-0.2 s, 0.2-0.4 s between
    the 4 attempts, so a dead server fails in well under a second plus timeouts.
    """

    max_attempts: int = 4
    """Attempts per request, the first one included (1 = never retry)."""
    base_delay_seconds: float = 0.1
    """Wait after the first failed attempt, before jitter."""
    max_delay_seconds: float = 5.0
    """Cap on any single wait, ``Retry-After`` included."""
    jitter: float = 0.5
    """Fraction of each wait that is randomised (0 = deterministic, 1 = full jitter)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError(
                f"RetryPolicy delays must be >= 0, got base_delay_seconds={self.base_delay_seconds!r}, "
                f"max_delay_seconds={self.max_delay_seconds!r}"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be in [0, 1], got {self.jitter!r}")

    def delay_seconds(self, attempt: int, *, retry_after_seconds: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

        Args:
            attempt: the attempt that just failed.
            retry_after_seconds: the server's ``Retry-After``, if it sent one.
        """
        backoff = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** max(0, attempt - 1))
        backoff *= 1.0 - self.jitter * random.random()
        if retry_after_seconds is not None:
            backoff = max(backoff, retry_after_seconds)
        return min(self.max_delay_seconds, max(0.0, backoff))


class _Attempts:
    """The state of one retried operation: what failed so far, whether and how long to wait."""

    def __init__(self, policy: RetryPolicy, redacted: str, what: str) -> None:
        self._policy = policy
        self._redacted = redacted
        self._what = what
        self._last: Transient | None = None
        self._unreachable: Unreachable | None = None
        self._num_short = 0

    def failed(self, e: Transient | Unreachable, attempt: int) -> float | None:
        """Note that attempt ``attempt`` (1-based) failed with ``e``.

        Returns:
            Seconds to wait before the next attempt, or None to stop (then
            raise :meth:`error`).
        """
        retry_after = None
        if isinstance(e, Unreachable):
            self._unreachable = e
            if not (e.retry_once and attempt == 1):
                return None
        else:
            self._last, self._unreachable = e, None
            retry_after = e.retry_after_seconds
            if isinstance(e, ShortBody):
                self._num_short += 1
                if self._num_short >= 2:
                    return None
        if attempt >= self._policy.max_attempts:
            return None
        return self._policy.delay_seconds(attempt, retry_after_seconds=retry_after)

    def error(self) -> Exception:
        """The error to raise once the attempts stopped."""
        if self._unreachable is not None:
            return SourceUnreachableError(
                f"{self._redacted}: {self._unreachable}. Not retried: this is not a transient fault; check the URL, "
                "the network and the server."
            )
        if isinstance(self._last, ShortBody):
            return RangeRequestError(
                f"{self._redacted}: asked for {self._what}, {self._last} ({self._num_short} times); "
                "the server must return exactly the range asked."
            )
        return TransferError(
            f"{self._redacted}: {self._what} failed after {self._policy.max_attempts} attempts, last: {self._last}. "
            "Transient faults (resets, timeouts, 5xx, 429) outlasted the RetryPolicy; retry later or raise "
            "RetryPolicy.max_attempts / the timeouts."
        )


async def retry_async(policy: RetryPolicy, attempt: Callable[[int], Awaitable[T]], *, redacted: str, what: str) -> T:
    """Await ``attempt(n)`` for n = 1, 2, ... until it succeeds or the policy says stop.

    Args:
        policy: attempts and waits.
        attempt: one try, given its 1-based number; raises ``Transient``,
            ``ShortBody`` or ``Unreachable`` to be retried (see the module
            docstring), anything else to fail at once.
        redacted: the source, safe to show, for the error messages.
        what: the operation, for the error messages (e.g. ``"[0, 100)"``).

    Raises:
        TransferError: transient faults outlasted the policy.
        RangeRequestError: two short bodies.
        SourceUnreachableError: the host cannot be reached.
        Exception: whatever permanent error ``attempt`` raised.
    """
    state = _Attempts(policy, redacted, what)
    for n in range(1, policy.max_attempts + 1):
        try:
            return await attempt(n)
        except (Transient, Unreachable) as e:
            delay = state.failed(e, n)
        if delay is None:
            break
        await asyncio.sleep(delay)
    raise state.error()  # outside the except block: no __context__


def retry_sync(policy: RetryPolicy, attempt: Callable[[int], T], *, redacted: str, what: str) -> T:
    """The blocking twin of :func:`retry_async` (same classification, same waits, with ``time.sleep``)."""
    state = _Attempts(policy, redacted, what)
    for n in range(1, policy.max_attempts + 1):
        try:
            return attempt(n)
        except (Transient, Unreachable) as e:
            delay = state.failed(e, n)
        if delay is None:
            break
        time.sleep(delay)
    raise state.error()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
