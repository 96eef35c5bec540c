"""Retry policy: capped exponential backoff with jitter, bounded attempts."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

__all__ = ["RetryPolicy", "parse_retry_after"]


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
