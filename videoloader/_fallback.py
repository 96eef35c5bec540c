"""Fallback for containers we do not index: PyAV demuxing over the tracked file.

Matroska/WebM, MPEG-TS, AVI and MP4 variants the index path cannot handle are
opened by FFmpeg through ``RangeSource.open_file()``, so every byte is still
recorded. Exactness comes from a packet table: the demuxer's packets (pts,
dts, keyframe flag), read once without decoding, give frame ``i``'s pts the way
a sequential decode orders them. Reading that table costs about one pass over
the file; it is done on first need (metadata or a frame by index) and its
bytes show in ``transfer_stats``. Decoding then seeks to the keyframe before
each group of targets and decodes forward, exactly like the index path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch

from ._errors import ContainerError, CorruptVideoError, NotAVideoError, TrackNotFoundError, VideoLoaderError
from ._plan import start_sample
from .decoders._base import OutputSpec
from .decoders._pyav import ffmpeg_decoder_name, frame_to_tensor
from .io import RangeSource

__all__ = ["DemuxTable", "DemuxVideo"]

log = logging.getLogger(__name__)

_NO_PTS = -(2**62)


def _reason(e: BaseException) -> str:
    """FFmpeg's words for an error, without the file name PyAV appends."""
    if isinstance(e, av.FFmpegError):
        return e.strerror or type(e).__name__
    return type(e).__name__


@dataclass
class DemuxTable:
    """Video packets in decode order, as FFmpeg's demuxer reports them."""

    pts: np.ndarray
    dts: np.ndarray
    durations: np.ndarray
    is_sync: np.ndarray
    frame_to_sample: np.ndarray

    @classmethod
    def from_packets(cls, rows: list[tuple[int, int, int, bool]], *, url: str = "") -> "DemuxTable":
        """The table of demuxed ``(pts, dts, duration, keyframe)`` rows.

        Raises:
            ContainerError: two packets share a presentation time, so which
                frame is which cannot be told (frames are matched by pts).
        """
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        pts, dts, dur, key = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3].astype(bool)
        order = np.argsort(pts, kind="stable")
        same = np.flatnonzero(np.diff(pts[order]) == 0)
        if len(same):
            t = int(pts[order[same[0]]])
            raise ContainerError(
                f"{url}: {len(same)} packets repeat an earlier packet's presentation time (first: pts {t}); "
                "frame order is ambiguous"
            )
        return cls(pts, dts, dur, key, order)

    @property
    def num_frames(self) -> int:
        return len(self.frame_to_sample)

    def frame_pts(self) -> np.ndarray:
        return self.pts[self.frame_to_sample]

    def frame_durations(self) -> np.ndarray:
        pts = self.frame_pts()
        d = np.empty_like(pts)
        if len(pts):
            d[:-1] = np.diff(pts)
            last = self.durations[self.frame_to_sample[-1]]
            d[-1] = last if last > 0 else (d[-2] if len(d) > 1 else 1)
        return d


class DemuxVideo:
    """One video stream opened through PyAV's demuxer over a tracked file."""

    def __init__(
        self,
        source: RangeSource,
        *,
        output: OutputSpec,
        thread_count: int = 0,
        track: int | None = None,
        table: DemuxTable | None = None,
    ) -> None:
        self.source = source
        self.output = output
        self._thread_count = thread_count
        self._file = source.open_file()
        try:
            self._container = av.open(self._file, mode="r")
        except VideoLoaderError:
            self._file.close()
            raise
        except (av.FFmpegError, ValueError, OSError) as e:
            self._file.close()
            raise NotAVideoError(
                f"{source.url}: neither an MP4 we can index nor a container FFmpeg can open ({_reason(e)})"
            ) from None
        try:
            self._stream = self._pick_stream(track)
            self._check_video()
        except BaseException:
            self.close()
            raise
        self.time_base = self._stream.time_base
        self._table: DemuxTable | None = table
        self._reformatter = VideoReformatter()
        self.decoded_nbytes = 0
        """Compressed bytes of the packets fed to the decoder so far."""

    def _pick_stream(self, track: int | None) -> Any:
        videos = list(self._container.streams.video)
        if track is None:
            if not videos:
                raise NotAVideoError(f"{self.source.url}: the {self.format_name} container has no video stream")
            return videos[0]
        for st in self._container.streams:
            if st.id == track or (st.id == 0 and st.index == track):
                if st.type != "video":
                    raise TrackNotFoundError(
                        f"{self.source.url}: track {track} is a {st.type} stream, not video; "
                        f"video tracks: {[v.id or v.index for v in videos]}"
                    )
                return st
        raise TrackNotFoundError(
            f"{self.source.url}: no track {track} in the {self.format_name} container; "
            f"video tracks: {[v.id or v.index for v in videos]}"
        )

    def _check_video(self) -> None:
        """Refuse what no frame can come from: still images, streams without a decoder."""
        fmt = self.format_name
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise NotAVideoError(f"{self.source.url}: a still image ({fmt}), not a video")
        ctx = self._stream.codec_context
        if ctx is None or not ctx.name:
            raise NotAVideoError(f"{self.source.url}: the video stream has no codec FFmpeg can decode")
        if not ctx.width or not ctx.height:
            raise NotAVideoError(f"{self.source.url}: the {ctx.name} video stream has no picture size")

    @property
    def format_name(self) -> str:
        return self._container.format.name.split(",")[0]

    @property
    def codec(self) -> str:
        return self._stream.codec_context.name

    @property
    def width(self) -> int:
        return self._stream.codec_context.width

    @property
    def height(self) -> int:
        return self._stream.codec_context.height

    @property
    def pixel_format(self) -> str | None:
        fmt = self._stream.codec_context.pix_fmt
        return str(fmt) if fmt else None

    @property
    def table(self) -> DemuxTable:
        if self._table is None:
            log.info("%s: reading the %s packet table (one pass, no decoding)", self.source.url, self.format_name)
            rows = []
            try:
                self._container.seek(0)
                for p in self._container.demux(self._stream):
                    if p.size == 0 or p.pts is None:
                        continue
                    dts = p.dts if p.dts is not None else p.pts
                    rows.append((p.pts, dts, p.duration or 0, bool(p.is_keyframe)))
            except av.FFmpegError as e:
                raise ContainerError(
                    f"{self.source.url}: the {self.format_name} demuxer failed reading packets ({_reason(e)})"
                ) from None
            if not rows:
                raise NotAVideoError(f"{self.source.url}: the {self.format_name} video stream has no frames")
            self._table = DemuxTable.from_packets(rows, url=self.source.url)
        return self._table

    def _codec_context(self) -> av.CodecContext:
        src = self._stream.codec_context
        ctx = av.CodecContext.create(ffmpeg_decoder_name(src.name), "r")
        if src.extradata:
            ctx.extradata = src.extradata
        ctx.thread_count = self._thread_count
        ctx.thread_type = "AUTO"
        return ctx

    def decode_frames(self, frames: list[int]) -> dict[int, torch.Tensor]:
        """Decode the given frame indices exactly; ``{frame: tensor}``."""
        t = self.table
        wanted_by_sample = {int(t.frame_to_sample[f]): f for f in set(frames)}
        syncs = np.flatnonzero(t.is_sync)
        # Group targets by the sync sample they decode from (as the planner does).
        groups: dict[int, int] = {}
        for s in sorted(wanted_by_sample):
            start = start_sample(t.pts, syncs, s)
            groups[start] = max(groups.get(start, s), s)
        out: dict[int, torch.Tensor] = {}
        for start, last in sorted(groups.items()):
            wanted_pts = {int(t.pts[s]): f for s, f in wanted_by_sample.items() if start <= s <= last}
            got = self._decode_group(start, last, wanted_pts)
            for pts, f in wanted_pts.items():
                if pts not in got:
                    raise CorruptVideoError(f"{self.source.url}: the decoder produced no frame for index {f} (pts {pts})")
                out[f] = got[pts]
        return out

    def decode_at_seconds(self, seconds: list[float]) -> tuple[list[torch.Tensor], list[float], list[float]]:
        """The frame on screen at each time, found by seeking, without the packet table.

        Returns:
            (frames, pts_seconds, duration_seconds), in the order asked.

        Raises:
            IndexError: a time before the first frame or past the last one.
        """
        found = {t: self._decode_at(t) for t in sorted(set(seconds))}
        frames = [found[t][0] for t in seconds]
        return frames, [found[t][1] for t in seconds], [found[t][2] for t in seconds]

    def _decode_at(self, t: float) -> tuple[torch.Tensor, float, float]:
        tb = self.time_base
        if not math.isfinite(t):
            raise IndexError(f"{self.source.url}: time {t} is not a finite number of seconds")
        target = t / float(tb)
        first_pts = self._stream.start_time or 0
        back_seconds = 0.0
        for _ in range(8):
            seek_ticks = int(math.floor(target - back_seconds / float(tb)))
            if seek_ticks <= first_pts:
                # Demuxers seek on dts, which starts below the first pts with
                # B-frames (MPEG-TS): go well before the start.
                seek_ticks = first_pts - int(10 / float(tb))
            got = self._decode_forward(seek_ticks, target)
            if got is not None:
                frame, pts, next_pts = got
                if next_pts is None:
                    dur = frame.duration if getattr(frame, "duration", None) else None
                    if not dur:
                        raise IndexError(f"{self.source.url}: time {t} s is past the last frame")
                    next_pts = pts + dur
                    if target >= next_pts:
                        raise IndexError(f"{self.source.url}: time {t} s is past the end of the video")
                tensor = frame_to_tensor(frame, self.output, self._reformatter)
                return tensor, float(pts * tb), float((next_pts - pts) * tb)
            if seek_ticks < first_pts:
                raise IndexError(f"{self.source.url}: time {t} s is before the first frame")
            back_seconds = max(1.0, 2 * back_seconds)  # the seek landed after t: go further back
        raise CorruptVideoError(f"{self.source.url}: could not seek to a keyframe before {t} s")

    def _decode_forward(self, seek_ticks: int, target: float):
        """Seek to the keyframe at or before ``seek_ticks`` and decode until the
        frame on screen at ``target`` is known: ``(frame, pts, next_pts or None)``,
        or None when the first frame decoded is already after ``target``."""
        ctx = self._codec_context()
        prev = None

        def scan(frames):
            nonlocal prev
            for fr in frames:
                if fr.pts is None:
                    continue
                if fr.is_corrupt:
                    raise CorruptVideoError(f"{self.source.url}: the decoder flagged frame pts={fr.pts} as damaged")
                if fr.pts > target:
                    return ("late", None) if prev is None else ("done", (prev, prev.pts, fr.pts))
                prev = fr
            return None

        try:
            self._container.seek(seek_ticks, stream=self._stream, backward=True, any_frame=False)
            started = False
            for p in self._container.demux(self._stream):
                if p.size == 0:
                    continue
                if not started and not p.is_keyframe:
                    continue
                started = True
                self.decoded_nbytes += p.size
                hit = scan(ctx.decode(p))
                if hit is not None:
                    return hit[1]
            hit = scan(ctx.decode(None))
            if hit is not None:
                return hit[1]
            return None if prev is None else (prev, prev.pts, None)
        except av.FFmpegError as e:
            raise CorruptVideoError(f"{self.source.url}: decoding failed ({_reason(e)})") from None
        finally:
            ctx.flush_buffers()

    def _packets_from(self, start: int) -> Iterator[av.Packet]:
        """Demux packets from sample ``start`` (a keyframe) on, in decode order."""
        t = self.table
        target_dts = int(t.dts[start])
        for seek_ts in (int(t.pts[start]), int(t.dts[start]) - 1, None):
            if seek_ts is None:
                self._container.seek(0)
            else:
                self._container.seek(seek_ts, stream=self._stream, backward=True, any_frame=False)
            it = self._container.demux(self._stream)
            for p in it:
                if p.size == 0 or p.pts is None:
                    continue
                dts = p.dts if p.dts is not None else p.pts
                if dts < target_dts:
                    continue
                if dts > target_dts:
                    break  # the seek landed after our keyframe: seek earlier
                yield p
                yield from (q for q in it if q.size and q.pts is not None)
                return
        raise CorruptVideoError(f"{self.source.url}: could not seek back to the keyframe at dts {target_dts}")

    def _decode_group(self, start: int, last: int, wanted_pts: dict[int, int]) -> dict[int, torch.Tensor]:
        ctx = self._codec_context()
        out: dict[int, torch.Tensor] = {}
        todo = len(wanted_pts)
        start_pts = int(self.table.pts[start])
        tainted = False

        def keep(frames) -> None:
            # The same corrupt-frame rule as the packet path: a frame FFmpeg
            # flags, or any later one (it may reference the damage), is never
            # returned; leading pictures of an open GOP taint nothing.
            nonlocal tainted
            for fr in frames:
                if fr.is_corrupt and fr.pts is not None and fr.pts >= start_pts:
                    tainted = True
                if fr.pts in wanted_pts and fr.pts not in out:
                    if tainted or fr.is_corrupt:
                        raise CorruptVideoError(
                            f"{self.source.url}: the decoder concealed damage in frame pts={fr.pts} "
                            "or a frame it references"
                        )
                    out[fr.pts] = frame_to_tensor(fr, self.output, self._reformatter)

        try:
            fed = 0
            for p in self._packets_from(start):
                self.decoded_nbytes += p.size
                keep(ctx.decode(p))
                fed += 1
                if fed > last - start or len(out) == todo:
                    break
            keep(ctx.decode(None))
        except av.FFmpegError as e:
            raise CorruptVideoError(f"{self.source.url}: decoding failed ({_reason(e)})") from None
        finally:
            # Freeing a frame-threaded decoder with work in flight can deadlock.
            ctx.flush_buffers()
        return out

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            self._file.close()
