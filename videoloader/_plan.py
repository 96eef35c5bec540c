"""Range planner: target frames -> GOP groups -> exact byte ranges.

For each target frame (presentation order) we find its sample (decode order)
and the sync sample a decoder can start from, then fetch the samples
``[sync .. last needed]`` of each group once. Targets that share a GOP share
the group, so a GOP is fetched and decoded once per call however many of its
frames are asked for.

Open GOPs: a *leading* picture (pts before its GOP's sync sample) may reference
the previous GOP, so its group starts one sync sample earlier.

The planner reads only the container-neutral :class:`SampleIndex`, so MP4 and
the demux fallback plan alike; byte ranges exist only where the table knows
each sample's place in the file. No torch or av here: benchmarks, ``inspect``
and the NVDEC device check print plans without a decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._packets import SampleIndex
from ._types import ByteRange

__all__ = ["DecodeGroup", "Plan", "plan_frames", "sample_runs", "start_sample"]


@dataclass(frozen=True, eq=False)
class DecodeGroup:
    """Samples ``[first_sample, last_sample]`` (decode order, inclusive) that a
    decoder is fed from a sync sample, the frames it must keep, and where each
    sample sits in the byte ranges fetched for the group."""

    first_sample: int
    last_sample: int
    frames: tuple[int, ...]
    """Distinct frame indices (presentation order) this group yields."""
    ranges: tuple[ByteRange, ...]
    """Byte ranges holding the group's samples: contiguous runs, file order
    (empty when the table has no byte ranges)."""
    sample_range: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """int64, one per sample of the group: which of ``ranges`` holds it."""
    sample_offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """int64, one per sample of the group: its first byte inside that range."""

    @property
    def num_samples(self) -> int:
        return self.last_sample - self.first_sample + 1

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.ranges)


@dataclass(frozen=True)
class Plan:
    """How to fetch and decode a set of frames."""

    groups: tuple[DecodeGroup, ...]
    frames: tuple[int, ...] = field(default=())
    """The frames asked for, in the order asked (duplicates kept)."""

    @property
    def ranges(self) -> list[ByteRange]:
        return [r for g in self.groups for r in g.ranges]

    @property
    def nbytes(self) -> int:
        """Compressed sample bytes the plan reads (before any coalescing)."""
        return sum(g.nbytes for g in self.groups)

    @property
    def num_samples(self) -> int:
        return sum(g.num_samples for g in self.groups)

    def describe(self) -> list[dict]:
        """Plain-data view for benchmarks and ``videoloader inspect``."""
        return [
            {
                "frames": list(g.frames),
                "samples": [g.first_sample, g.last_sample],
                "ranges": [[r.start, r.stop] for r in g.ranges],
                "nbytes": g.nbytes,
            }
            for g in self.groups
        ]


def sample_runs(index: SampleIndex, first: int, last: int) -> tuple[ByteRange, ...]:
    """Byte ranges of samples ``first..last`` merged where samples touch.

    Samples of one track are contiguous inside a chunk; other tracks' chunks
    (audio) sit between chunks. Merging only exact neighbours keeps the plan
    minimal; whether to bridge small gaps is the I/O layer's coalescing call.
    """
    starts = index.offsets[first : last + 1]
    stops = starts + index.sizes[first : last + 1]
    # Sort by offset: decode order is file order in every muxer we know, but
    # nothing in ISO-BMFF requires it.
    order = np.argsort(starts, kind="stable")
    starts, stops = starts[order], stops[order]
    runs: list[ByteRange] = []
    cur_start, cur_stop = int(starts[0]), int(stops[0])
    for s, e in zip(starts[1:].tolist(), stops[1:].tolist(), strict=False):
        if s <= cur_stop:
            cur_stop = max(cur_stop, e)
        else:
            runs.append(ByteRange(cur_start, cur_stop))
            cur_start, cur_stop = s, e
    runs.append(ByteRange(cur_start, cur_stop))
    return tuple(runs)


def start_sample(pts: np.ndarray, sync_samples: np.ndarray, sample: int) -> int:
    """The sync sample to start decoding from so ``sample`` comes out exact.

    Args:
        pts: presentation time of every sample, decode order.
        sync_samples: sorted indices of the sync samples.
        sample: the target sample (decode order).
    """
    pos = int(np.searchsorted(sync_samples, sample, side="right")) - 1
    if pos < 0:
        # No sync sample at or before it: start at the first sample, as a
        # sequential decode does (FFmpeg shows what it can from there).
        return 0
    # [I0 .. P] [I1 B(leading, pts < I1) ...]: the leading B needs the GOP before.
    while pos > 0 and pts[sync_samples[pos]] > pts[sample]:
        pos -= 1
    return int(sync_samples[pos])


def plan_frames(index: SampleIndex, frame_indices: Sequence[int]) -> Plan:
    """Plan the groups and byte ranges that decode ``frame_indices`` exactly.

    Args:
        index: the track's sample index.
        frame_indices: frames in presentation order; any order, duplicates allowed.

    Returns:
        A Plan whose groups are in decode order and never overlap.

    Raises:
        IndexError: a frame index is outside ``[0, num_frames)``.
    """
    n = index.num_frames
    frames = [int(i) for i in frame_indices]
    for i in frames:
        if not 0 <= i < n:
            raise IndexError(f"frame index {i} is out of range for a video of {n} frames")
    if not frames:
        return Plan(groups=(), frames=())
    sync_samples = np.flatnonzero(index.is_sync)
    spans: list[tuple[int, int, int]] = []  # (first_sample, last_sample, frame)
    for f in sorted(set(frames)):
        s = int(index.frame_to_sample[f])
        spans.append((start_sample(index.pts, sync_samples, s), s, f))
    spans.sort()
    groups: list[DecodeGroup] = []
    cur_first, cur_last, cur_frames = spans[0][0], spans[0][1], [spans[0][2]]
    for first, last, f in spans[1:]:
        if first <= cur_last:  # overlapping: one decode pass covers both
            cur_last = max(cur_last, last)
            cur_frames.append(f)
        else:
            groups.append(_group(index, cur_first, cur_last, cur_frames))
            cur_first, cur_last, cur_frames = first, last, [f]
    groups.append(_group(index, cur_first, cur_last, cur_frames))
    return Plan(groups=tuple(groups), frames=tuple(frames))


def _group(index: SampleIndex, first: int, last: int, frames: list[int]) -> DecodeGroup:
    if not index.has_byte_ranges:
        return DecodeGroup(first_sample=first, last_sample=last, frames=tuple(sorted(frames)), ranges=())
    ranges = sample_runs(index, first, last)
    # Where each sample sits in its run: runs = [100, 300), [500, 600); a sample
    # at 520 -> run 1, offset 20. Found once here, used by the packet source.
    run_starts = np.fromiter((r.start for r in ranges), dtype=np.int64, count=len(ranges))
    offsets = index.offsets[first : last + 1]
    which = np.searchsorted(run_starts, offsets, side="right") - 1
    return DecodeGroup(
        first_sample=first,
        last_sample=last,
        frames=tuple(sorted(frames)),
        ranges=ranges,
        sample_range=which.astype(np.int64),
        sample_offset=(offsets - run_starts[which]).astype(np.int64),
    )
