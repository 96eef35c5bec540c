"""Matroska packets: frames by time from the blocks around them, the complete table only when asked.

Matroska keeps no sample table: exact frame indices need a walk over every
cluster's element headers, one round trip per block of a cluster (clusters
run concurrently, but a 10-minute file is still thousands of requests), or,
where that costs less at the source's round-trip price (a short file, a long
one without Cues), a read of the whole Segment. Times
need much less: the Cues give the keyframe at or before any time (in a file
without Cues, a bisection over byte offsets finds it: ``mkv/_bisect.py``), and
the frame on screen follows it. So this packet source opens with the head and the
Cues only, serves ``get_frames_played_at`` from the blocks after that keyframe
(walked, planned and decoded like any table), and builds the complete table
(cached like the MP4 index) the first time something needs frame indices:
``metadata``, ``len``, ``get_frames_at``.

The walk from a keyframe reads *through* the payloads that lie before the
time (the decode needs them anyway: the reads are sized on the bytes per frame
seen so far), then block headers only, and
stops as soon as no later block can be shown at or before the time: the
stream's reorder bound (0 for VP8/VP9/AV1; H.264/HEVC say theirs in the SPS)
says when. Without a bound it walks on to the second keyframe after (a GOP's
frames shown before its keyframe can lie past the next keyframe). The payloads
read are decoded from memory; on B-frame streams they include the disposable
frames a plan would skip (about a tenth more bytes than by index).

The walks are cheap but not free, and the complete walk serves every later
time: walks are made only until their rounds would have paid for it (about
one round per block of a cluster, one wave per ``max_concurrency`` clusters:
the ski-rental rule, never more than twice the better choice in hindsight).

A walk whose first block is not the keyframe its cue promises (damaged or
forged Cues), or whose frames come out of order beyond the stream's bound, is
never decoded from: that time is served from the complete table instead.
"""

from __future__ import annotations

import collections
import functools
import heapq
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._index_packets import IndexPackets
from ._packets import SampleIndex
from ._plan import DecodeGroup, plan_frames
from ._types import ByteRange
from .codecs import non_reference_test, reorder_depth
from .decoders import DecoderBackend, StreamConfig
from .mkv._bisect import keyframes_around
from .mkv._ebml import Window
from .mkv._read import MatroskaHead, blocks_table, read_through_cost, store_index, time_base, walk_table
from .mkv._walk import Block, walk_one_lane
from .mp4._read import CacheOption

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .io import RangeSource

__all__ = ["MatroskaPackets"]

log = logging.getLogger("videoloader")

#: Walks kept for later calls (each the packet table of a few clusters).
REGIONS_KEPT = 32
#: The share of the bytes estimated to lie before a time that a walk reads
#: through at once. The estimate runs short (it is sized on the frames after
#: the keyframe), so 1 rarely reads past what the decode needs; measured on
#: 720p H.264 with B-frames at 50 ms: 0.75 took 12.4 requests per time, 1.0
#: took 9.5 for the same bytes, 1.25 took 4.8 for 3 % more bytes.
READ_THROUGH_SHARE = 1.0
#: Cluster lanes one round of the complete walk reads at once, at most (the
#: source's ``max_concurrency`` bounds it too): each of its rounds takes
#: ``clusters / lanes`` waves.
LANES_PER_WAVE = 64


class MatroskaPackets:
    """Packets of a Matroska/WebM video track, indexed as far as asked.

    Args:
        source: where the bytes are.
        head: the file's head, Info, Tracks and Cues if any (``mkv.open_head``).
        track: the track asked for (the index cache's key).
        cache: where the complete table goes once built (as ``index_cache``).
    """

    access_path = "index"
    cpu_only = False

    def __init__(self, source: RangeSource, head: MatroskaHead, *, track: int | None, cache: CacheOption) -> None:
        self.source = source
        self.head = head
        self.container = head.doc_type
        self.rotation = head.track.rotation_cw
        self._track = track
        self._cache = cache
        self._timescale, self._mult = time_base(head.info.timestamp_scale, head.url)
        self.config = StreamConfig(
            codec=head.codec,
            extradata=head.extradata,
            width=head.track.width,
            height=head.track.height,
            timescale=self._timescale,
            bit_depth=head.bit_depth,
            sample_entry=head.track.codec_id,
        )
        self._skip = non_reference_test(head.codec, head.extradata)
        # Keyframe times of the cues, in seconds as the reader computes frame times.
        cue_ticks = np.asarray(head.cue_times, dtype=np.int64) * self._mult
        self._cue_seconds = cue_ticks.astype(np.float64) / self._timescale
        self._full: IndexPackets | None = None
        self._full_near: _Near | None = None
        # Walks near earlier times by the cluster they started from, oldest first.
        self._walked: collections.OrderedDict[int, _Near] = collections.OrderedDict()
        self._rented_rounds = 0
        self._blocks_per_second: float | None = None
        lanes = min(LANES_PER_WAVE, int(getattr(source, "max_concurrency", LANES_PER_WAVE)))
        self._waves = max(1, -(-len(head.cluster_starts) // lanes))
        self._reorder = reorder_depth(head.codec, head.extradata)

    # -- the complete table -------------------------------------------------------------------

    @property
    def has_table(self) -> bool:
        """Whether the complete table has been built (a walk over every cluster)."""
        return self._full is not None

    @property
    def table(self) -> SampleIndex:
        """The complete packet table, built on first use and cached."""
        return self._complete().table

    def _complete(self) -> IndexPackets:
        if self._full is None:
            log.info("%s: walking every cluster for exact frame indices", self.source.url)
            before = self.source.stats.snapshot()
            table = walk_table(
                self.head,
                self.source.read_ranges,
                round_trip_cost_bytes=self.source.round_trip_cost_bytes,
                max_concurrency=self.source.max_concurrency,
                # Kept by the source up to its retain_bytes: a short file's frames need no second read.
                read_through=functools.partial(self.source.read_ranges, retain=True),
            )
            walked = self.source.stats.since(before)
            table.index_nbytes = self.head.open_nbytes + int(walked.bytes_received)
            table.index_requests = self.head.open_requests + int(walked.num_requests)
            store_index(self.source, table, track=self._track, cache=self._cache)
            self._full = IndexPackets(self.source, table, container=self.container)
            self._walked.clear()
        return self._full

    def group_samples(
        self, groups: Sequence[DecodeGroup]
    ) -> Iterator[tuple[DecodeGroup, Iterable[tuple[int, bytes | memoryview]]]]:
        """As ``IndexPackets.group_samples``, over the complete table."""
        return self._complete().group_samples(groups)

    def fetch(self, groups: Sequence[DecodeGroup]) -> list[list[bytes]]:
        """As ``IndexPackets.fetch``, over the complete table."""
        return self._complete().fetch(groups)

    def fetched_samples(
        self, groups: Sequence[DecodeGroup], fetched: list[list[bytes]]
    ) -> Iterator[tuple[DecodeGroup, Iterator[tuple[int, memoryview]]]]:
        """As ``IndexPackets.fetched_samples``, over the complete table."""
        return self._complete().fetched_samples(groups, fetched)

    # -- frames by time -----------------------------------------------------------------------

    def frames_at_seconds(
        self, seconds: Sequence[float], decoder: DecoderBackend
    ) -> tuple[list[torch.Tensor], list[float], list[float], int]:
        """The frame on screen at each time, from the blocks after the keyframe before it.

        Returns:
            (frames, pts_seconds, duration_seconds, compressed bytes fed), in the order asked.

        Raises:
            IndexError: a time before the first frame or past the last one.
            CorruptVideoError: a frame could not be decoded.
        """
        found: dict[float, tuple[torch.Tensor, float, float]] = {}
        fed = 0
        groups: dict[int, tuple[_Near, list[tuple[float, int]]]] = {}
        for t in sorted(set(seconds)):
            if not math.isfinite(t):
                raise IndexError(f"{self.source.url}: time {t} is not a finite number of seconds")
            near = self._near(t)
            k = near.frame_at(t)
            if k is None:
                # Not among the blocks walked: the complete table says whether it is in the video.
                near = self._near_complete()
                k = near.frame_at(t)
                if k is None:
                    starts, ends = near.starts, near.ends
                    raise IndexError(f"{self.source.url}: time {t} s is outside the video [{starts[0]}, {ends[-1]})")
            groups.setdefault(id(near), (near, []))[1].append((t, k))
        from ._decode import decode_plan, in_order_asked

        for near, wanted in groups.values():
            decoded, nbytes = decode_plan(
                plan_frames(near.table, [k for _t, k in wanted]),
                near.packets,
                decoder,
                skip=self._skip,
                what=f"{self.source.url}: the decoder",
            )
            fed += nbytes
            if isinstance(near.packets.source, _HeldSource):
                near.packets.source.release()  # decoded: a later call reads again rather than hold them
            for t, k in wanted:
                found[t] = (decoded[k], float(near.starts[k]), float(near.ends[k] - near.starts[k]))
        return (*in_order_asked(found, seconds), fed)

    def _near_complete(self) -> _Near:
        full = self._complete()
        if self._full_near is None or self._full_near.table is not full.table:
            self._full_near = _Near(full.table, full, self._timescale, math.inf, first=-math.inf)
        return self._full_near

    def _near(self, t: float) -> _Near:
        """Blocks from the keyframe at or before ``t`` far enough to know the frame on
        screen at ``t`` (the complete table when it is built, cheaper, or needed)."""
        if self._full is not None:
            return self._near_complete()
        for near in self._walked.values():
            if near.first <= t < near.valid_until:
                return near
        keyframes = self._keyframes_at(t)
        if keyframes is None:
            return self._near_complete()
        if self._rented_rounds >= self._full_walk_rounds():
            return self._near_complete()  # the walks so far would have paid for the complete table
        walked = self._walk_near(keyframes, t)
        if walked is None:
            return self._near_complete()
        # A later walk from the same keyframe reads on from where an earlier one stopped: it replaces it.
        start = keyframes[0][1]
        self._walked.pop(start, None)
        self._walked[start] = walked
        while len(self._walked) > REGIONS_KEPT:
            self._walked.popitem(last=False)
        return walked

    def _keyframes_at(self, t: float) -> list[tuple[int, int]] | None:
        """``[(time in ticks, cluster offset)]`` of the keyframe at or before ``t`` and up to two
        after it: from the Cues, or found by bisection in a file without them; None when neither
        places ``t`` (the caller uses the complete table)."""
        head = self.head
        if head.cue_times:
            i = int(np.searchsorted(self._cue_seconds, t, side="right")) - 1
            if i < 0:
                return None
            return list(zip(head.cue_times[i : i + 3], head.cue_positions[i : i + 3], strict=True))
        ticks = self._ticks_at(t)
        pairs = keyframes_around(head, self.source.read_ranges, ticks)
        return pairs or None

    def _ticks_at(self, t: float) -> int:
        """The last Matroska tick whose time, as the reader computes it, is at or before ``t``."""
        x = math.floor(t * self._timescale / self._mult)
        while self._seconds(x + 1) <= t:
            x += 1
        while self._seconds(x) > t:
            x -= 1
        return x

    def _seconds(self, ticks: int) -> float:
        return float(ticks * self._mult) / self._timescale

    def _full_walk_rounds(self) -> float:
        """About how many rounds the complete walk takes: one per block of a cluster, one wave
        per ``lanes`` clusters, or what reading the Segment through costs, in rounds, where that
        is less; unknown (infinite) before a walk has shown blocks per second."""
        if self._blocks_per_second is None or len(self._cue_seconds) < 2:
            return math.inf
        gop_seconds = float(np.median(np.diff(self._cue_seconds)))
        rounds = max(1.0, gop_seconds * self._blocks_per_second) * self._waves
        price = self.source.round_trip_cost_bytes
        if price:  # the complete walk reads a short Segment through: its bytes, in rounds
            rounds = min(rounds, read_through_cost(self.head, price) / price)
        return rounds

    def _walk_near(self, keyframes: list[tuple[int, int]], t: float) -> _Near | None:
        """Walk from the first of ``keyframes`` (``(ticks, cluster offset)``: the keyframe at or
        before ``t``, then up to two after it), reading through the payloads before ``t`` (the
        decode needs them) and block headers after it, until the stream's reorder bound says no
        later block can be shown at or before ``t``. None when the first keyframe is not where
        it was said to be."""
        head = self.head
        first_ticks, start = keyframes[0]
        cue_seconds = self._seconds(first_ticks)
        bound = self._reorder
        # Without a reorder bound, the walk must reach the second keyframe after: a GOP's
        # frames shown before its keyframe can lie past the next keyframe.
        stop = head.seg_end if bound is not None or len(keyframes) < 3 else keyframes[2][1]
        # Bytes per second of the GOP, from the keyframe after (for the first read only).
        rate = 0.0
        if len(keyframes) > 1 and self._seconds(keyframes[1][0]) > cue_seconds:
            rate = (keyframes[1][1] - start) / (self._seconds(keyframes[1][0]) - cue_seconds)
        rule = _ShownBy(t, bound, self._mult, self._timescale)

        def plan_read(blocks: list[Block], need: int) -> int | None:
            if rule.feed(blocks):
                return None
            if not blocks:
                return int(READ_THROUGH_SHARE * rate * (t - cue_seconds))
            last = max(rule.latest, cue_seconds)
            if last >= t:
                return need  # past ``t`` in time: headers only, until the rule is satisfied
            inter = [b.size for b in blocks if not b.keyframe]
            if not inter:
                return need
            frame_seconds = (last - cue_seconds) / max(1, len(blocks) - 1) if len(blocks) > 1 else 0.0
            if frame_seconds <= 0:
                return need
            to_go = (t - last) / frame_seconds
            return int(READ_THROUGH_SHARE * to_go * (sum(inter) / len(inter)))

        windows = [head.head]
        walk = walk_one_lane(
            url=head.url,
            file_size=head.file_size,
            start=start,
            stop=stop,
            track=head.track.number,
            windows=windows,
            read=self.source.read_ranges,
            plan_read=plan_read,
        )
        self._rented_rounds += walk.rounds
        table = blocks_table(head, walk.blocks)
        cue_pts = int(first_ticks) * self._mult
        if table.num_frames == 0 or not (bool(table.is_sync[0]) and int(table.pts[0]) == cue_pts):
            log.warning(
                "%s: the cue at %.3f s does not point at a keyframe of that time; using the complete table",
                self.source.url,
                cue_seconds,
            )
            return None
        if rule.broken:
            log.info("%s: frames reordered beyond the stream's bound; using the complete table", self.source.url)
            return None
        if len(walk.blocks) > 1:
            span = float(table.pts.max() - table.pts.min()) / self._timescale
            if span > 0:
                self._blocks_per_second = len(walk.blocks) / span
        held = _HeldSource(self.source, [w for w in windows if w is not head.head])
        # The blocks walked answer every time from the first keyframe until the first frame the rule
        # saw shown past ``t``; without a bound, until the next keyframe (the walk went one further
        # for its leading frames); a walk to the Segment's end answers every later time.
        if rule.shown_past is not None:
            valid_until = rule.shown_past
        elif bound is None and len(keyframes) >= 3:
            valid_until = self._seconds(keyframes[1][0])
        else:
            valid_until = math.inf
        packets = IndexPackets(held, table, container=self.container)
        return _Near(table, packets, self._timescale, valid_until, first=cue_seconds)

    def close(self) -> None:
        """Nothing of its own to release (the reader closes the source)."""


class _ShownBy:
    """Which blocks, in decode order, can still be shown at or before a time ``t``.

    A decoder that may hold ``bound`` frames for reordering outputs, after
    each decoded frame beyond that, the earliest one it holds; once that frame
    is shown after ``t``, every later block is too (one shown earlier would
    follow ``bound + 1`` frames shown after it, more than the stream allows).
    """

    def __init__(self, t: float, bound: int | None, mult: int, timescale: int) -> None:
        self.t = t
        self.bound = bound
        self.mult = mult
        self.timescale = timescale
        self.latest = -math.inf
        """The latest time among the blocks fed."""
        self.shown_past: float | None = None
        """The first time output past ``t``: later blocks are all shown after it."""
        self.broken = False
        """A block came out earlier than one output before it: the bound is wrong for this stream."""
        self._fed = 0
        self._held: list[float] = []
        self._last_out = -math.inf

    def feed(self, blocks: list[Block]) -> bool:
        """Take the blocks not fed yet; True when no later block can be shown at or before ``t``."""
        for b in blocks[self._fed :]:
            seconds = float(b.timestamp * self.mult) / self.timescale
            self.latest = max(self.latest, seconds)
            if self.bound is None:
                continue
            heapq.heappush(self._held, seconds)
            while len(self._held) > self.bound:
                out = heapq.heappop(self._held)
                if out < self._last_out:
                    self.broken = True
                self._last_out = out
                if out > self.t and self.shown_past is None:
                    self.shown_past = out
        self._fed = len(blocks)
        return self.broken or self.shown_past is not None


class _HeldSource:
    """A source that serves ranges inside bytes already read, and reads the rest."""

    def __init__(self, source: RangeSource, windows: list[Window]) -> None:
        self.source = source
        self.url = source.url
        self.windows = windows

    def release(self) -> None:
        """Drop the held bytes (later reads go to the source)."""
        self.windows = []

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]:
        out = [b""] * len(ranges)
        missing: list[int] = []
        for j, r in enumerate(ranges):
            w = next((w for w in self.windows if w.start <= r.start and r.stop <= w.stop), None)
            if w is None:
                missing.append(j)
            else:
                out[j] = w.get(r.start, r.stop)
        for j, data in zip(missing, self.source.read_ranges([ranges[j] for j in missing]), strict=True):
            out[j] = data
        return out


class _Near:
    """A packet table around some times, with the frames' start and end times as the reader computes them."""

    def __init__(
        self, table: SampleIndex, packets: IndexPackets, timescale: int, valid_until: float, *, first: float
    ) -> None:
        self.table = table
        self.packets = packets
        self.first = first
        """The time of the keyframe the table starts from."""
        self.valid_until = valid_until
        """Times from ``first`` up to (not including) this are answered by this table."""
        self.starts = table.frame_pts().astype(np.float64) / timescale
        self.ends = self.starts + table.frame_durations().astype(np.float64) / timescale

    def frame_at(self, t: float) -> int | None:
        """The frame on screen at ``t``, or None when ``t`` is outside these frames."""
        k = int(np.searchsorted(self.starts, t, side="right")) - 1
        if k < 0 or t >= self.ends[-1] or t >= self.valid_until:
            return None
        return k
