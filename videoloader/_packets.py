"""SampleIndex: the container-neutral packet table every packet source produces.

The MP4 index (``mp4/``) and the demux fallback both describe a video track as
this table: one row per compressed sample (packet) in decode order, with its
timestamps, keyframe flag and, when the container index gives them, its byte
range in the file. The planner, the reader and every decoder backend consume
only this table, whatever the container. stdlib + numpy only, so tools without
PyAV or torch can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SampleIndex", "first_shared_time"]


def first_shared_time(pts: np.ndarray) -> int | None:
    """The smallest presentation time two shown samples share, or None if every one is unique.

    Frames are matched to samples by pts, and FFmpeg orders two frames with one
    pts by its own reordering, which no index can see: every packet source
    refuses such a track rather than risk returning a neighbour of the frame
    asked for.
    """
    if len(pts) < 2:
        return None
    s = np.sort(pts)
    dup = np.flatnonzero(s[1:] == s[:-1])
    return int(s[dup[0]]) if len(dup) else None


@dataclass(eq=False)
class SampleIndex:
    """Per-sample table of one video track, arrays in decode order.

    A *sample* (packet) is in decode order, a *frame* in presentation order.
    ``pts``/``dts``/``durations`` are in ``timescale`` ticks. For MP4 the edit
    list is applied as FFmpeg's mov demuxer applies it by default (the first
    edit's media time is subtracted; samples that FFmpeg keeps only so the
    decoder can reach the first shown frame are flagged ``is_discard``); for
    the demux fallback they are FFmpeg's own packet timestamps.

    Frame ``i`` (what the i-th frame of a plain sequential FFmpeg decode is)
    is sample ``frame_to_sample[i]``.
    """

    offsets: np.ndarray
    """int64 byte offset of each sample in the file (-1 where the container
    index does not give one: the demux fallback reads packets, not ranges)."""
    sizes: np.ndarray
    """int64 byte size of each sample."""
    dts: np.ndarray
    """int64 decode timestamps (ticks)."""
    pts: np.ndarray
    """int64 presentation timestamps (ticks), edit list applied."""
    durations: np.ndarray
    """int64 sample durations (ticks) from stts / trun."""
    is_sync: np.ndarray
    """bool: sample is a sync sample (keyframe) a decoder can start from."""
    timescale: int
    """Ticks per second of the track (mdhd)."""
    codec: str
    """FFmpeg decoder family name: ``h264``, ``hevc``, ``av1``, ``vp9``, ``mpeg4``..."""
    extradata: bytes | None
    """Codec configuration payload (avcC/hvcC/av1C/vpcC box body), or None."""
    width: int
    height: int
    track_id: int = 1
    is_discard: np.ndarray | None = None
    """bool: decoded only to reach later frames; FFmpeg never outputs it. None = none."""
    sample_entry: str = ""
    """Four-character sample entry type (``avc1``, ``hvc1``, ``hev1``, ``av01``, ``vp09``...)."""
    rotation: int = 0
    """Display rotation in degrees from the tkhd matrix."""
    bit_depth: int | None = None
    """Luma bit depth from the codec configuration when known."""
    file_size: int | None = None
    fragmented: bool = False
    index_nbytes: int = 0
    """Bytes read from the source to build this index (0 when it came from cache)."""
    index_requests: int = 0
    frame_to_sample: np.ndarray = field(init=False)
    """int64: sample index of each frame, frames in presentation order."""
    sample_to_frame: np.ndarray = field(init=False)
    """int64: frame index of each sample, -1 for discarded samples."""

    def __post_init__(self) -> None:
        n = len(self.offsets)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.sizes = np.asarray(self.sizes, dtype=np.int64)
        self.dts = np.asarray(self.dts, dtype=np.int64)
        self.pts = np.asarray(self.pts, dtype=np.int64)
        self.durations = np.asarray(self.durations, dtype=np.int64)
        self.is_sync = np.asarray(self.is_sync, dtype=bool)
        if self.is_discard is None:
            self.is_discard = np.zeros(n, dtype=bool)
        self.is_discard = np.asarray(self.is_discard, dtype=bool)
        for name in ("sizes", "dts", "pts", "durations", "is_sync", "is_discard"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SampleIndex: {name} has {len(getattr(self, name))} entries, offsets has {n}")
        if self.timescale <= 0:
            raise ValueError(f"SampleIndex: timescale must be positive, got {self.timescale}")
        shown = np.flatnonzero(~self.is_discard)
        # Stable sort on pts: equal pts keep decode order, as FFmpeg outputs them.
        order = np.argsort(self.pts[shown], kind="stable")
        self.frame_to_sample = shown[order].astype(np.int64)
        self.sample_to_frame = np.full(n, -1, dtype=np.int64)
        self.sample_to_frame[self.frame_to_sample] = np.arange(len(self.frame_to_sample), dtype=np.int64)

    @property
    def num_samples(self) -> int:
        return int(len(self.offsets))

    @property
    def num_frames(self) -> int:
        return int(len(self.frame_to_sample))

    def frame_pts(self) -> np.ndarray:
        """int64 pts of each frame, presentation order."""
        return self.pts[self.frame_to_sample]

    def frame_durations(self) -> np.ndarray:
        """int64 display duration of each frame: the gap to the next frame's
        pts, the last frame keeping its own sample duration (or, where it has
        none, the duration of the frame before it)."""
        pts = self.frame_pts()
        if len(pts) == 0:
            return pts.copy()
        d = np.empty_like(pts)
        d[:-1] = np.diff(pts)
        last = int(self.durations[self.frame_to_sample[-1]])
        # A container may give the last packet no duration (MPEG-TS): then it
        # lasts as long as the frame before it, [0, 512, 1024] + 0 -> 512.
        d[-1] = last if last > 0 else (d[-2] if len(d) > 1 else 1)
        return d

    @property
    def has_byte_ranges(self) -> bool:
        """Whether every sample's byte range is known (exact range reads are possible)."""
        return bool(len(self.offsets)) and int(self.offsets.min()) >= 0

    def __repr__(self) -> str:
        return (
            f"SampleIndex(codec={self.codec!r}, {self.width}x{self.height}, samples={self.num_samples}, "
            f"frames={self.num_frames}, keyframes={int(self.is_sync.sum())}, timescale={self.timescale}, "
            f"fragmented={self.fragmented})"
        )
