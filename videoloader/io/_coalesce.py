"""Merging nearby byte ranges into fewer requests."""

from __future__ import annotations

from collections.abc import Sequence

from .._types import ByteRange

__all__ = ["COALESCE_GAP_BYTES", "coalesce_ranges"]

# Ranges closer than this are fetched as one request and the gap is thrown away.
# Trade-off: one round trip (tens of ms on a remote store) against the gap's
# bytes (64 KiB is ~5 ms at 100 Mbit/s). The benchmarks (benchmarks/) tune it;
# change it there, not ad hoc.
COALESCE_GAP_BYTES = 64 * 1024


def coalesce_ranges(
    ranges: Sequence[ByteRange], gap_bytes: int = COALESCE_GAP_BYTES
) -> tuple[list[ByteRange], list[tuple[int, int]]]:
    """Merge ranges whose gap is below ``gap_bytes``; overlapping and adjacent ranges always merge.

    Args:
        ranges: the ranges asked for, any order, duplicates and overlaps allowed.
        gap_bytes: merge when ``next.start - current.stop < gap_bytes``.

    Returns:
        ``(merged, where)``: the requests to make, sorted by start, and for each
        input range ``(index into merged, offset of its start inside it)``.

    Example::

        [0,10) [12,20) [100,110) with gap_bytes=5 -> merged [0,20) [100,110);
        where = [(0, 0), (0, 12), (1, 0)]
    """
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i].start, ranges[i].stop))
    merged: list[list[int]] = []
    where: list[tuple[int, int]] = [(0, 0)] * len(ranges)
    for i in order:
        r = ranges[i]
        if merged and (r.start <= merged[-1][1] or r.start - merged[-1][1] < gap_bytes):
            merged[-1][1] = max(merged[-1][1], r.stop)
        else:
            merged.append([r.start, r.stop])
        where[i] = (len(merged) - 1, r.start - merged[-1][0])
    return [ByteRange(a, b) for a, b in merged], where
