"""Give freed heap memory back to the OS now and then while a dataset loads.

Loading a sample allocates a few large, short-lived buffers (the range
replies, the compressed samples handed to the decoder, decoded pictures) in
whichever thread loads it. glibc serves blocks above its mmap threshold with
``mmap`` at first, but raises that threshold to the size of every such block
freed (up to 32 MiB), so from then on these buffers come from the heaps of
the per-thread malloc arenas; with many loading threads the freed space stays
resident, spread over the arenas, and a loader's RSS creeps up by tens of MB
over thousands of samples while Python's own heap does not grow.
``malloc_trim(0)`` returns those free pages to the OS; it changes nothing
else. Where the C library has no ``malloc_trim`` (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

__all__ = ["TRIM_EVERY_SAMPLES", "trim_heap"]

log = logging.getLogger(__name__)

TRIM_EVERY_SAMPLES = 64
"""Samples a process loads between two trims (a trim takes about a millisecond)."""


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def trim_heap() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim(0)``); False where unavailable."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
