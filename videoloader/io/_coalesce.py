"""Merging nearby byte ranges into fewer requests, where a request costs more than the bytes it skips.

The cost of one ``read_ranges`` call, in bytes::

    body bytes + requests x request_cost_bytes + rounds x round_trip_cost_bytes

where ``rounds = ceil(requests / max_concurrency)``: separate requests go out
concurrently, so splitting a range in two costs one request's overhead (its
headers; on S3/GCS a GET fee) but no extra round trip, until the call needs
more requests than run at once; then each further wave of requests costs a
round trip, worth latency x bandwidth bytes. Bridging a gap adds its bytes and
saves one request; ``coalesce_ranges`` bridges the gaps that minimise the sum.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from .._types import ByteRange

__all__ = ["COALESCE_GAP_BYTES", "ROUND_TRIP_COST_BYTES", "coalesce_ranges"]

#: Default ``coalesce_gap_bytes``: what one more request costs, in bytes. Users
#: pay per byte, so the default counts bytes only: a 206 reply's status line and
#: headers (Content-Range, Content-Length, ETag, Last-Modified, Date...) are
#: about 250-450 bytes, so bridging a gap under 256 bytes never costs more than
#: the headers it saves. Interleaved audio chunks of a few hundred bytes are not
#: bridged (8 KiB, the old default, cost 1.10x the minimal bytes on an
#: audio-interleaved MP4). On S3/GCS, where a GET fee is worth about 4 KiB of
#: egress, pass 4096.
COALESCE_GAP_BYTES = 256
#: Default ``round_trip_cost_bytes``: what one more round trip (a wave of up
#: to ``max_concurrency`` concurrent requests) is worth, in bytes: latency x
#: bandwidth, here 20 ms at 100 Mbit/s. Splitting a call past
#: ``max_concurrency`` requests is worth it only when it saves more bytes.
ROUND_TRIP_COST_BYTES = 256 * 1024


def coalesce_ranges(
    ranges: Sequence[ByteRange],
    gap_bytes: int = COALESCE_GAP_BYTES,
    *,
    max_concurrency: int | None = None,
    round_trip_cost_bytes: int = 0,
    barriers: Sequence[int] = (),
) -> tuple[list[ByteRange], list[tuple[int, int]]]:
    """The requests that fetch ``ranges`` at least cost (module docstring); overlapping and adjacent ranges always merge.

    Args:
        ranges: the ranges asked for, any order, duplicates and overlaps allowed.
        gap_bytes: what one request costs in bytes: a gap shorter than this is
            bridged (``next.start - current.stop < gap_bytes``).
        max_concurrency: requests in flight at once; None: unlimited (no round
            trip is ever saved by bridging).
        round_trip_cost_bytes: what one more wave of ``max_concurrency``
            requests costs in bytes; more gaps, smallest first, are bridged
            while the waves they save are worth more than their bytes.
        barriers: offsets no request may straddle: a range starting at or after
            a barrier is never merged with one starting before it (bytes held
            in memory start there).

    Returns:
        ``(merged, where)``: the requests to make, sorted by start, and for each
        input range ``(index into merged, offset of its start inside it)``.

    Example::

        [0,10) [12,20) [100,110) with gap_bytes=5 -> merged [0,20) [100,110);
        where = [(0, 0), (0, 12), (1, 0)]
    """
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i].start, ranges[i].stop))
    cuts = sorted(set(barriers))
    # Runs: sorted ranges merged where they overlap or touch (never across a barrier).
    runs: list[list[int]] = []
    run_of = [0] * len(ranges)
    sides: list[int] = []  # barrier segment of each run
    for i in order:
        r = ranges[i]
        side = bisect.bisect_right(cuts, r.start) if cuts else 0
        if runs and sides[-1] == side and r.start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], r.stop)
        else:
            runs.append([r.start, r.stop])
            sides.append(side)
        run_of[i] = len(runs) - 1
    bridge = _gaps_to_bridge(runs, sides, gap_bytes, max_concurrency, round_trip_cost_bytes)
    # Request k spans runs first[k]..; where each run landed.
    merged: list[list[int]] = []
    request_of = [0] * len(runs)
    for j, (a, b) in enumerate(runs):
        if j > 0 and bridge[j - 1]:
            merged[-1][1] = b
        else:
            merged.append([a, b])
        request_of[j] = len(merged) - 1
    where = [(0, 0)] * len(ranges)
    for i, r in enumerate(ranges):
        k = request_of[run_of[i]]
        where[i] = (k, r.start - merged[k][0])
    return [ByteRange(a, b) for a, b in merged], where


def _gaps_to_bridge(
    runs: list[list[int]],
    sides: list[int],
    gap_bytes: int,
    max_concurrency: int | None,
    round_trip_cost_bytes: int,
) -> list[bool]:
    """For each gap between consecutive runs, whether to bridge it (least total cost)."""
    gaps = [runs[j + 1][0] - runs[j][1] for j in range(len(runs) - 1)]
    open_ = [j for j in range(len(gaps)) if sides[j] == sides[j + 1]]
    # Bridging the k smallest gaps is the cheapest way to save k requests.
    by_size = sorted(open_, key=lambda j: (gaps[j], j))
    bridge = [False] * len(gaps)
    # Each gap under one request's cost pays for itself.
    count = 0
    while count < len(by_size) and gaps[by_size[count]] < gap_bytes:
        bridge[by_size[count]] = True
        count += 1
    if max_concurrency is None or round_trip_cost_bytes <= 0:
        return bridge
    requests = len(runs) - count
    if requests <= max_concurrency:
        return bridge
    # More gaps, smallest first, while the rounds they save are worth more than
    # their bytes net of the requests they save: cost(k bridged) over every k.
    best_k, best_cost, added = count, 0, 0
    base_rounds = -(-requests // max_concurrency)
    for k in range(count, len(by_size)):
        added += gaps[by_size[k]] - gap_bytes
        n = requests - (k + 1 - count)
        cost = added - (base_rounds - -(-n // max_concurrency)) * round_trip_cost_bytes
        if cost < best_cost:
            best_k, best_cost = k + 1, cost
    for k in range(count, best_k):
        bridge[by_size[k]] = True
    return bridge
