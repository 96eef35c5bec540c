"""The perfect-reads work, without HTTP: index a video, pick frames, build the clip.

Blocking functions over a :class:`~videoloader.io.RangeSource` (every origin
read validated, retried and recorded); the aiohttp handlers run them in a
worker thread.

The clip's sample description is the source's own ``stsd`` box. The index
does not keep its bytes, so they are taken from the replies the index build
already received (``_Recorder``), replaying the same box walk over them; only
when the index came from a cache is the moov read again.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import MP4ParseError
from .._packets import SampleIndex
from .._plan import plan_frames, sample_runs
from .._types import ByteRange
from ..codecs._h264 import NAL_IDR as _NAL_IDR
from ..codecs._h264 import parse_avcc
from ..codecs._hevc import parse_hvcc
from ..codecs._nal import iter_length_prefixed
from ..io import RangeSource
from ..mp4 import IndexCache, load_index
from ..mp4._cache import cache_key
from ..mp4._locate import locate
from ..mp4._moov import parse_moov
from ..mp4._write import write_clip

__all__ = ["ClipTooLarge", "Video", "VideoCache", "build_clip", "frames_at_times", "open_video"]

# H.264 NAL unit types that start a picture order count afresh: IDR (ITU-T H.264 table 7-1).
_H264_RESET = frozenset({_NAL_IDR})
# HEVC NAL unit types that do: BLA and IDR pictures (ITU-T H.265 table 7-1, 8.3.1). A CRA does not
# in the middle of a stream.
_HEVC_RESET = frozenset({16, 17, 18, 19, 20})

# Replies kept while an index is built, to find the stsd in them afterwards (a moov is at most 256 MiB).
_RECORD_BYTES = 256 * 1024 * 1024


class ClipTooLarge(Exception):
    """The clip would exceed the server's limits (frames or bytes): HTTP 413."""


@dataclass
class Video:
    """What the server knows about one origin object."""

    index: SampleIndex
    stsd: bytes
    layout: dict[str, Any] = field(default_factory=dict)

    def summary(self, url: str) -> dict[str, Any]:
        """The JSON body of ``/v1/index``."""
        idx = self.index
        pts = idx.frame_pts()
        durs = idx.frame_durations()
        ts = idx.timescale
        keyframes = np.flatnonzero(idx.is_sync)
        key_frames = sorted(int(idx.sample_to_frame[s]) for s in keyframes if idx.sample_to_frame[s] >= 0)
        begin = float(pts[0]) / ts if len(pts) else 0.0
        end = float(pts[-1] + durs[-1]) / ts if len(pts) else 0.0
        return {
            "url": url,
            "codec": idx.codec,
            "sample_entry": idx.sample_entry,
            "width": idx.width,
            "height": idx.height,
            "rotation": idx.rotation,
            "bit_depth": idx.bit_depth,
            "timescale": ts,
            "num_samples": idx.num_samples,
            "num_frames": idx.num_frames,
            "num_keyframes": int(len(keyframes)),
            "keyframes": key_frames,
            "begin_seconds": begin,
            "duration_seconds": end - begin,
            "average_fps": (idx.num_frames / (end - begin)) if end > begin else None,
            "file_size": idx.file_size,
            "media_bytes": int(idx.sizes.sum()),
            "layout": self.layout,
        }


class VideoCache:
    """Indexes shared across requests: an in-memory LRU, plus an optional on-disk IndexCache."""

    def __init__(self, *, max_entries: int = 256, directory: str | None = None) -> None:
        self._entries: collections.OrderedDict[Any, Video] = collections.OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.index_cache: IndexCache | bool = IndexCache.for_directory(directory) if directory else False

    def get(self, key: Any) -> Video | None:
        with self._lock:
            video = self._entries.get(key)
            if video is not None:
                self._entries.move_to_end(key)
            return video

    def put(self, key: Any, video: Video) -> None:
        with self._lock:
            self._entries[key] = video
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class _Recorder:
    """Wraps a RangeSource for ``load_index``: forwards every read and keeps the replies."""

    def __init__(self, source: RangeSource) -> None:
        self._source = source
        self.url = source.url
        self.supports_retain = True
        self.blocks: list[tuple[int, bytes]] = []
        self._kept = 0

    @property
    def size(self) -> int:
        return self._source.size

    @property
    def validator(self) -> str | None:
        return self._source.validator

    @property
    def stats(self) -> Any:
        return self._source.stats

    def _keep(self, start: int, data: bytes) -> None:
        if self._kept + len(data) <= _RECORD_BYTES:
            self.blocks.append((start, bytes(data)))
            self._kept += len(data)

    def read_head(self, nbytes: int, *, retain: bool = False) -> bytes:
        data = self._source.read_head(nbytes, retain=retain)
        self._keep(0, data)
        return data

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]:
        out = self._source.read_ranges(list(ranges), retain=retain)
        for r, data in zip(ranges, out, strict=True):
            self._keep(r.start, data)
        return out


class _Replay:
    """Serves reads from recorded replies; a range none holds is read from the source."""

    def __init__(self, source: RangeSource, blocks: list[tuple[int, bytes]]) -> None:
        self._source = source
        self._blocks = blocks
        self.url = source.url
        self.supports_retain = True

    @property
    def size(self) -> int:
        return self._source.size

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]:
        out: list[bytes] = []
        for r in ranges:
            for start, data in self._blocks:
                if start <= r.start and r.stop <= start + len(data):
                    out.append(data[r.start - start : r.stop - start])
                    break
            else:
                data = self._source.read_ranges([r], retain=retain)[0]
                self._blocks.append((r.start, data))
                out.append(data)
        return out


def _describe_layout(index: SampleIndex, top_level: list[str], fragment_index: str | None) -> dict[str, Any]:
    moov_at = top_level.index("moov") if "moov" in top_level else -1
    mdat_before = "mdat" in top_level[: max(moov_at, 0)]
    return {
        "moov": "end" if mdat_before else "start",
        "fragmented": bool(index.fragmented),
        "fragment_index": fragment_index,
        "top_level_boxes": top_level,
    }


def _stsd_and_layout(
    source: RangeSource, index: SampleIndex, blocks: list[tuple[int, bytes]]
) -> tuple[bytes, dict[str, Any]]:
    from ..mp4._read import _fragment_offsets

    replay = _Replay(source, blocks)
    layout = locate(replay)
    movie = parse_moov(layout.moov_buf, layout.moov)
    for track in movie.tracks:
        if track.track_ID == index.track_id and track.stsd is not None:
            stsd = bytes(layout.moov_buf.view(track.stsd.start, track.stsd.end))
            break
    else:  # pragma: no cover - load_index just found this track and its stsd
        raise MP4ParseError(f"{source.url}: track {index.track_id} has no stsd.")
    fragment_index = None
    if movie.has_mvex:
        fragment_index = _fragment_offsets(replay, layout, index.track_id)[2]
    top = [b.type for b in layout.top_level]
    return stsd, _describe_layout(index, top, fragment_index)


def open_video(source: RangeSource, cache: VideoCache) -> tuple[Video, bool]:
    """The video behind ``source``, from the cache or indexed now (``(video, cached)``).

    Raises:
        ContainerError: not an MP4 with a video track we can index (NotAVideoError,
            MP4ParseError, UnsupportedFormatError...).
        SourceError: the origin failed.
    """
    key = cache_key(source.url, int(source.size), source.validator, None)
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    recorder = _Recorder(source)
    index = load_index(recorder, cache=cache.index_cache)  # type: ignore[arg-type]
    stsd, layout = _stsd_and_layout(source, index, recorder.blocks)
    video = Video(index=index, stsd=stsd, layout=layout)
    cache.put(key, video)
    return video, False


def frames_at_times(index: SampleIndex, seconds: Sequence[float]) -> list[int]:
    """The frame on screen at each time (pts <= t < pts + duration), as the reader picks it.

    Raises:
        IndexError: a time outside the video (or not finite).
    """
    starts = index.frame_pts().astype(np.float64) / index.timescale
    ends = starts + index.frame_durations().astype(np.float64) / index.timescale
    out = []
    for t in seconds:
        i = int(np.searchsorted(starts, t, side="right")) - 1
        if i < 0 or not np.isfinite(t) or t >= ends[-1]:
            raise IndexError(f"time {t} s is outside the video [{starts[0]}, {ends[-1]})")
        out.append(i)
    return out


def _read_samples(source: RangeSource, index: SampleIndex, spans: Sequence[tuple[int, int]]) -> dict[int, bytes]:
    """The bytes of samples ``first..last`` of each span, in one batch of range reads."""
    runs = [sample_runs(index, first, last) for first, last in spans]
    ranges = [r for rs in runs for r in rs]
    datas = source.read_ranges(ranges) if ranges else []
    out: dict[int, bytes] = {}
    base = 0
    for (first, last), rs in zip(spans, runs, strict=True):
        starts = np.fromiter((r.start for r in rs), dtype=np.int64, count=len(rs))
        for sample in range(first, last + 1):
            offset = int(index.offsets[sample])
            k = int(np.searchsorted(starts, offset, side="right")) - 1
            at = offset - int(starts[k])
            out[sample] = datas[base + k][at : at + int(index.sizes[sample])]
        base += len(rs)
    return out


def _order_count_bridges(
    index: SampleIndex, spans: Sequence[tuple[int, int]], payloads: dict[int, bytes]
) -> list[tuple[int, int]]:
    """The gaps to fill so a sequential decode of the clip outputs every group, in order.

    An H.264 or HEVC decode group that starts on a picture that does not
    reset the picture order count (an H.264 non-IDR I picture, an HEVC CRA:
    open GOPs, recovery points) continues the previous picture's count. With
    the samples between the groups left out, the count's high bits come out
    wrong, and a sequential decoder (FFmpeg) outputs that group out of order
    or drops its pictures. Such a group is joined to the one before by the
    samples between them. Groups starting on IDR (or BLA) pictures, the
    common case, need nothing. (An HEVC end-of-sequence NAL unit before a CRA
    would reset the count without the bytes, but makes the decoder drop the
    pictures still waiting for output: H.265 C.5.2.2.)
    """
    if index.codec not in ("h264", "hevc") or not index.extradata:
        return []
    h264 = index.codec == "h264"
    length = (parse_avcc if h264 else parse_hvcc)(index.extradata).nal_length_size
    reset = _H264_RESET if h264 else _HEVC_RESET
    bridges = []
    for (_, prev_last), (first, _) in zip(spans, spans[1:], strict=False):
        nals = iter_length_prefixed(payloads[first], length)
        types = {(nal[0] & 0x1F) if h264 else ((nal[0] >> 1) & 0x3F) for nal in nals}
        if not types & reset and first > prev_last + 1:
            bridges.append((prev_last + 1, first - 1))
    return bridges


def build_clip(source: RangeSource, video: Video, frames: Sequence[int], *, max_bytes: int) -> bytes:
    """The MP4 clip that decodes ``frames`` exactly (each from its sync sample, shared samples once).

    Only the requested frames are presented (see ``write_clip``'s ``shown``);
    the other samples are decoded to reach them and not shown.

    Raises:
        IndexError: a frame index out of range.
        ClipTooLarge: the samples to send exceed ``max_bytes``.
        SourceError: the origin failed.
    """
    index = video.index
    plan = plan_frames(index, frames)
    spans = [(g.first_sample, g.last_sample) for g in plan.groups]
    nbytes = int(sum(index.sizes[first : last + 1].sum() for first, last in spans))

    def check(n: int) -> None:
        if n > max_bytes:
            raise ClipTooLarge(f"the clip would hold {n} bytes of samples, above this server's limit of {max_bytes}")

    check(nbytes)
    payloads = _read_samples(source, index, spans)
    bridges = _order_count_bridges(index, spans, payloads)
    if bridges:
        check(nbytes + int(sum(index.sizes[first : last + 1].sum() for first, last in bridges)))
        payloads.update(_read_samples(source, index, bridges))
    samples = sorted(payloads)
    shown = sorted({int(index.frame_to_sample[f]) for f in frames})
    return write_clip(index, video.stsd, samples, [payloads[s] for s in samples], shown=shown)
