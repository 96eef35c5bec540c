"""Merging nearby byte ranges into fewer requests."""

from __future__ import annotations

from collections.abc import Sequence

from .._types import ByteRange

__all__ = ["COALESCE_GAP_BYTES", "coalesce_ranges"]

# Ranges closer than this are fetched as one request and the gap is thrown away.
# Separate ranges go out concurrently, so splitting costs no extra round trip,
# only per-request overhead: ~0.5-1 KiB of headers, and on S3/GCS a GET fee worth
# about 4 KiB of egress. Bridging more than that pays for bytes nobody decodes
# (a 64 KiB gap cost 1.1-2x the minimal bytes on GOP-sized ranges in
# tests/test_bandwidth.py). 8 KiB still merges the small gaps interleaved
# audio chunks leave between a GOP's video chunks at low bitrates.
COALESCE_GAP_BYTES = 8 * 1024


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
