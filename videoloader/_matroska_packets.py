"""Matroska packets: frames by time from the clusters around them, the complete table only when asked.

Matroska keeps no sample table: exact frame indices need a walk over every
cluster's element headers, one round trip per block of a cluster (lanes run
concurrently, but a 10-minute file is still thousands of requests). Times need
much less: the Cues give the keyframe at or before any time, and the frame on
screen then lies in the clusters from that keyframe to the second keyframe
after it. So this packet source opens with the head and the Cues only, serves
``get_frames_played_at`` from those few clusters (walked, planned and decoded
like any table), and builds the complete table (cached like the MP4 index) the
first time something needs frame indices: ``metadata``, ``len``,
``get_frames_at``.

A region's walk is as deep as a GOP is long (a block's header gives the next
block's position: one round trip per block), and the complete walk is just as
deep, only wider: on a file of few clusters it costs about as much as one
region. So regions are walked only until their walks would have paid for the
complete one (about ``clusters / max_concurrency`` regions: the ski-rental
rule, never more than twice the better choice in hindsight); then the complete
table is built and serves every later time.

A region whose first block is not the keyframe its cue promises (damaged or
forged Cues) is never decoded from: that time is served from the complete
table instead.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._index_packets import IndexPackets
from ._packets import SampleIndex
from ._plan import DecodeGroup, plan_frames
from .codecs import get_codec
from .decoders import DecoderBackend, StreamConfig
from .mkv._read import MatroskaHead, store_index, time_base, walk_table
from .mp4._read import CacheOption

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .io import RangeSource

__all__ = ["MatroskaPackets"]

log = logging.getLogger("videoloader")

#: Walked regions kept for later calls (each a few clusters' packet table).
REGIONS_KEPT = 32
#: Cluster lanes one round of the walk reads at once, at most (the source's
#: ``max_concurrency`` bounds it too): the complete walk takes about
#: ``clusters / lanes`` times as long as the walk of one region.
LANES_PER_WAVE = 64


class MatroskaPackets:
    """Packets of a Matroska/WebM video track with Cues, indexed as far as asked.

    Args:
        source: where the bytes are.
        head: the file's head, Info, Tracks and Cues (``mkv.open_head``).
        track: the track asked for (the index cache's key).
        cache: where the complete table goes once built (as ``index_cache``).
    """

    access_path = "index"
    cpu_only = False
    rotation = 0  # Matroska's projection pose is not read

    def __init__(self, source: RangeSource, head: MatroskaHead, *, track: int | None, cache: CacheOption) -> None:
        self.source = source
        self.head = head
        self.container = head.doc_type
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
        # Keyframe times of the cues, in seconds as the reader computes frame times.
        cue_ticks = np.asarray(head.cue_times, dtype=np.int64) * self._mult
        self._cue_seconds = cue_ticks.astype(np.float64) / self._timescale
        self._full: IndexPackets | None = None
        self._regions: collections.OrderedDict[tuple[int, int], SampleIndex | None] = collections.OrderedDict()
        self._regions_walked = 0
        # The complete walk's cost in region walks: its rounds take one wave per LANES_PER_WAVE clusters.
        lanes = min(LANES_PER_WAVE, int(getattr(source, "max_concurrency", LANES_PER_WAVE)))
        self._walk_cost = max(1, -(-len(head.cluster_starts) // lanes))

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
            table = walk_table(self.head, self.source.read_ranges)
            walked = self.source.stats.since(before)
            table.index_nbytes = self.head.open_nbytes + int(walked.bytes_received)
            table.index_requests = self.head.open_requests + int(walked.num_requests)
            store_index(self.source, table, track=self._track, cache=self._cache)
            self._full = IndexPackets(self.source, table, container=self.container)
            self._regions.clear()
        return self._full

    def group_samples(
        self, groups: Sequence[DecodeGroup]
    ) -> Iterator[tuple[DecodeGroup, Iterable[tuple[int, bytes | memoryview]]]]:
        """As ``IndexPackets.group_samples``, over the complete table."""
        return self._complete().group_samples(groups)

    # -- frames by time -----------------------------------------------------------------------

    def frames_at_seconds(
        self, seconds: Sequence[float], decoder: DecoderBackend
    ) -> tuple[list[torch.Tensor], list[float], list[float], int]:
        """The frame on screen at each time, from the clusters around it.

        Returns:
            (frames, pts_seconds, duration_seconds, compressed bytes fed), in the order asked.

        Raises:
            IndexError: a time before the first frame or past the last one.
            CorruptVideoError: a frame could not be decoded.
        """
        found: dict[float, tuple[torch.Tensor, float, float]] = {}
        fed = 0
        by_region: dict[int, list[tuple[float, int]]] = {}
        tables: dict[int, SampleIndex] = {}
        for t in sorted(set(seconds)):
            if not math.isfinite(t):
                raise IndexError(f"{self.source.url}: time {t} is not a finite number of seconds")
            table = self._region_table(t)
            starts = table.frame_pts().astype(np.float64) / self._timescale
            k = int(np.searchsorted(starts, t, side="right")) - 1
            ends = starts + table.frame_durations().astype(np.float64) / self._timescale
            if k < 0 or t >= ends[-1]:
                # Not inside the region: the complete table says whether it is in the video.
                table = self._complete().table
                starts = table.frame_pts().astype(np.float64) / self._timescale
                ends = starts + table.frame_durations().astype(np.float64) / self._timescale
                k = int(np.searchsorted(starts, t, side="right")) - 1
                if k < 0 or t >= ends[-1]:
                    raise IndexError(f"{self.source.url}: time {t} s is outside the video [{starts[0]}, {ends[-1]})")
            tables[id(table)] = table
            by_region.setdefault(id(table), []).append((t, k))
        codec = get_codec(self.config.codec)
        skip = codec.non_reference_test(self.config.extradata) if codec is not None else None
        from ._decode import decode_plan

        for key, wanted in by_region.items():
            table = tables[key]
            packets = IndexPackets(self.source, table, container=self.container)
            frames = [k for _t, k in wanted]
            decoded, nbytes = decode_plan(
                plan_frames(table, frames), packets, decoder, skip=skip, what=f"{self.source.url}: the decoder"
            )
            fed += nbytes
            pts = table.frame_pts()
            durs = table.frame_durations()
            for t, k in wanted:
                # As the reader computes times from the complete table, to the last bit.
                start = float(pts[k]) / self._timescale
                end = start + float(durs[k]) / self._timescale
                found[t] = (decoded[k], start, end - start)
        return [found[t][0] for t in seconds], [found[t][1] for t in seconds], [found[t][2] for t in seconds], fed

    def _region_table(self, t: float) -> SampleIndex:
        """The packet table of the clusters around ``t`` (the complete one when it is built,
        or when the Cues cannot place ``t``)."""
        if self._full is not None:
            return self._full.table
        i = int(np.searchsorted(self._cue_seconds, t, side="right")) - 1
        region = self.head.region_at(i)
        if region is None:
            return self._complete().table
        if region in self._regions:
            self._regions.move_to_end(region)
            cached = self._regions[region]
            return cached if cached is not None else self._complete().table
        if self._regions_walked >= self._walk_cost:
            return self._complete().table  # the regions walked so far would have paid for it
        self._regions_walked += 1
        table: SampleIndex | None = walk_table(self.head, self.source.read_ranges, region)
        assert table is not None
        cue_pts = int(self.head.cue_times[i]) * self._mult
        if table.num_frames == 0 or not (bool(table.is_sync[0]) and int(table.pts[0]) == cue_pts):
            log.warning(
                "%s: the cue at %.3f s does not point at a keyframe of that time; using the complete table",
                self.source.url,
                float(self._cue_seconds[i]),
            )
            table = None
        self._regions[region] = table
        while len(self._regions) > REGIONS_KEPT:
            self._regions.popitem(last=False)
        return table if table is not None else self._complete().table

    def close(self) -> None:
        """Nothing of its own to release (the reader closes the source)."""
