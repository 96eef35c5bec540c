"""Demux packets: containers we do not index, read by PyAV's demuxer over the tracked file.

Matroska/WebM, MPEG-TS, AVI and MP4 variants the index path cannot handle are
opened by FFmpeg through ``RangeSource.open_file()``, so every byte is still
recorded. What is specific to this source lives here and nothing else:

* the packet table: the demuxer's packets (pts, dts, keyframe flag), read once
  without decoding, in the same container-neutral :class:`SampleIndex` the MP4
  index produces (no byte ranges). Reading it costs about one pass over the
  file, so it is done on first need (metadata or a frame by index);
* packets of a decode group, found by seeking to the group's keyframe;
* frames by time without the table: seek to the keyframe before a time and
  decode forward.

Planning, the decoder, the corrupt-frame rule and the conversion to tensors
are the reader's, shared with the index path.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import av
import numpy as np
import torch

from ._decode import in_order_asked
from ._errors import ContainerError, CorruptVideoError, NotAVideoError, TrackNotFoundError, VideoLoaderError
from ._fork import ProcessLocal
from ._packets import SampleIndex, first_shared_time
from ._plan import DecodeGroup
from .decoders import DecoderBackend, Packet, StreamConfig
from .io import RangeSource

__all__ = ["DemuxPackets"]

log = logging.getLogger(__name__)


def _reason(e: BaseException) -> str:
    """FFmpeg's words for an error, without the file name PyAV appends."""
    if isinstance(e, av.FFmpegError):
        return e.strerror or type(e).__name__
    return type(e).__name__


class _Demuxer:
    """One process's open container and the chosen video stream."""

    def __init__(self, source: RangeSource, track: int | None) -> None:
        self.url = source.url
        self.file = source.open_file()
        try:
            self.container = av.open(self.file, mode="r")
        except VideoLoaderError:
            self.file.close()
            raise
        except (av.FFmpegError, ValueError, OSError) as e:
            self.file.close()
            raise NotAVideoError(
                f"{source.url}: neither an MP4 we can index nor a container FFmpeg can open ({_reason(e)})"
            ) from None
        try:
            self.stream = self._pick_stream(track)
        except BaseException:
            self.close()
            raise

    @property
    def format_name(self) -> str:
        return str(self.container.format.name).split(",")[0]

    def _pick_stream(self, track: int | None) -> Any:
        videos = list(self.container.streams.video)
        listed = [v.id or v.index for v in videos]
        if track is None:
            if not videos:
                raise NotAVideoError(f"{self.url}: the {self.format_name} container has no video stream")
            return videos[0]
        for st in self.container.streams:
            if st.id == track or (st.id == 0 and st.index == track):
                if st.type != "video":
                    raise TrackNotFoundError(
                        f"{self.url}: track {track} is a {st.type} stream, not video; video tracks: {listed}"
                    )
                return st
        raise TrackNotFoundError(
            f"{self.url}: no track {track} in the {self.format_name} container; video tracks: {listed}"
        )

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.file.close()


class DemuxPackets:
    """Packets of one video stream, demuxed by FFmpeg.

    Args:
        source: the tracked source.
        track: the container's stream id to read (default: the first video stream).

    Raises:
        NotAVideoError: FFmpeg cannot open it, it has no video stream, or it is
            a still image or a stream without a decoder or a picture size.
        TrackNotFoundError: ``track`` is missing or not video.
    """

    access_path = "demux"
    cpu_only = True  # FFmpeg's demuxed packets (Annex-B or not) go to the CPU decoder
    rotation = 0  # not read from other containers

    def __init__(self, source: RangeSource, *, track: int | None = None) -> None:
        self.source = source
        self._track = track
        self._demuxer: ProcessLocal[_Demuxer] = ProcessLocal(functools.partial(_Demuxer, source, track))
        d = self._demuxer.get()
        fmt, ctx = d.format_name, d.stream.codec_context
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise NotAVideoError(f"{source.url}: a still image ({fmt}), not a video")
        if ctx is None or not ctx.name:
            raise NotAVideoError(f"{source.url}: the video stream has no codec FFmpeg can decode")
        if not ctx.width or not ctx.height:
            raise NotAVideoError(f"{source.url}: the {ctx.name} video stream has no picture size")
        tb = d.stream.time_base
        # Table ticks are 1/den seconds; stream ticks are num/den: ticks = pts * num.
        self._tb_num, self._tb_den = int(tb.numerator), int(tb.denominator)
        self.container = fmt
        self.pixel_format: str | None = str(ctx.pix_fmt) if ctx.pix_fmt else None
        self.config = StreamConfig(
            codec=str(ctx.name),
            extradata=bytes(ctx.extradata) if ctx.extradata else None,
            width=int(ctx.width),
            height=int(ctx.height),
            timescale=self._tb_den,
        )
        self._start_ticks = int(d.stream.start_time or 0) * self._tb_num
        self._table: SampleIndex | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_demuxer"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._demuxer = ProcessLocal(functools.partial(_Demuxer, self.source, self._track))

    # -- the packet table -------------------------------------------------------------------

    @property
    def has_table(self) -> bool:
        """Whether the packet table has been read (reading it is one pass over the file)."""
        return self._table is not None

    @property
    def table(self) -> SampleIndex:
        """The packet table, read on first use."""
        if self._table is None:
            self._table = self._read_table()
        return self._table

    def _read_table(self) -> SampleIndex:
        d = self._demuxer.get()
        log.info("%s: reading the %s packet table (one pass, no decoding)", self.source.url, self.container)
        rows = []
        try:
            d.container.seek(0)
            for p in d.container.demux(d.stream):
                if p.size == 0 or p.pts is None:
                    continue
                dts = p.dts if p.dts is not None else p.pts
                rows.append((p.pts, dts, p.duration or 0, bool(p.is_keyframe)))
        except av.FFmpegError as e:
            raise ContainerError(
                f"{self.source.url}: the {self.container} demuxer failed reading packets ({_reason(e)})"
            ) from None
        if not rows:
            raise NotAVideoError(f"{self.source.url}: the {self.container} video stream has no frames")
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        pts = arr[:, 0] * self._tb_num
        shared = first_shared_time(pts)
        if shared is not None:
            raise ContainerError(
                f"{self.source.url}: two packets share the presentation time {shared} ticks of "
                f"1/{self._tb_den} s; frame order is ambiguous"
            )
        c = self.config
        return SampleIndex(
            offsets=np.full(len(arr), -1, dtype=np.int64),
            sizes=np.zeros(len(arr), dtype=np.int64),
            dts=arr[:, 1] * self._tb_num,
            pts=pts,
            durations=arr[:, 2] * self._tb_num,
            is_sync=arr[:, 3].astype(bool),
            timescale=self._tb_den,
            codec=c.codec,
            extradata=c.extradata,
            width=c.width,
            height=c.height,
        )

    # -- packets of decode groups -----------------------------------------------------------

    def group_samples(self, groups: Sequence[DecodeGroup]) -> Iterator[tuple[DecodeGroup, Iterator[tuple[int, bytes]]]]:
        """``(group, samples)`` for each group; ``samples`` yields ``(sample index, bytes)``
        from the group's keyframe on, in decode order, found by seeking."""
        for g in groups:
            yield g, self._samples(g)

    def _samples(self, group: DecodeGroup) -> Iterator[tuple[int, bytes]]:
        s = group.first_sample
        try:
            for p in self._packets_from(s):
                yield s, bytes(p)
                if s == group.last_sample:
                    return
                s += 1
        except av.FFmpegError as e:
            raise ContainerError(f"{self.source.url}: demuxing failed ({_reason(e)})") from None

    def _packets_from(self, start: int) -> Iterator[Any]:
        """Demuxed packets from sample ``start`` (a keyframe) on, in decode order."""
        d = self._demuxer.get()
        t = self.table
        target_dts = int(t.dts[start]) // self._tb_num
        for seek_ts in (int(t.pts[start]) // self._tb_num, target_dts - 1, None):
            if seek_ts is None:
                d.container.seek(0)
            else:
                d.container.seek(seek_ts, stream=d.stream, backward=True, any_frame=False)
            it = d.container.demux(d.stream)
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

    # -- frames by time, without the table --------------------------------------------------

    def frames_at_seconds(
        self, seconds: Sequence[float], decoder: DecoderBackend
    ) -> tuple[list[torch.Tensor], list[float], list[float], int]:
        """The frame on screen at each time, found by seeking instead of reading the table.

        Returns:
            (frames, pts_seconds, duration_seconds, compressed bytes fed), in the order asked.

        Raises:
            IndexError: a time before the first frame or past the last one.
        """
        fed = 0
        found: dict[float, tuple[torch.Tensor, float, float]] = {}
        for t in sorted(set(seconds)):
            frame, pts, dur, nbytes = self._frame_at(t, decoder)
            found[t] = (frame, pts, dur)
            fed += nbytes
        return (*in_order_asked(found, seconds), fed)

    def _frame_at(self, t: float, decoder: DecoderBackend) -> tuple[torch.Tensor, float, float, int]:
        if not math.isfinite(t):
            raise IndexError(f"{self.source.url}: time {t} is not a finite number of seconds")
        target = t * self._tb_den  # in table ticks
        back = 0.0
        fed = 0
        for _ in range(8):
            seek_ticks = int(math.floor(target - back * self._tb_den))
            if seek_ticks <= self._start_ticks:
                # Demuxers seek on dts, which starts below the first pts with
                # B-frames (MPEG-TS): go well before the start.
                seek_ticks = self._start_ticks - 10 * self._tb_den
            got, nbytes = self._decode_forward(seek_ticks, target, decoder)
            fed += nbytes
            if got is not None:
                frame, pts, next_pts = got
                if next_pts is None:
                    raise IndexError(f"{self.source.url}: time {t} s is past the last frame")
                if target >= next_pts:
                    raise IndexError(f"{self.source.url}: time {t} s is past the end of the video")
                tensor = decoder.convert(frame)
                return tensor, pts / self._tb_den, (next_pts - pts) / self._tb_den, fed
            if seek_ticks < self._start_ticks:
                raise IndexError(f"{self.source.url}: time {t} s is before the first frame")
            back = max(1.0, 2 * back)  # the seek landed after t: go further back
        raise CorruptVideoError(f"{self.source.url}: could not seek to a keyframe before {t} s")

    def _decode_forward(self, seek_ticks: int, target: float, decoder: DecoderBackend) -> tuple[Any, int]:
        """Seek to the keyframe at or before ``seek_ticks`` and decode until the
        frame on screen at ``target`` is known.

        Returns:
            ``((frame, pts, next_pts) or None, bytes fed)``: None when the
            first frame decoded is already after ``target``; ``next_pts`` is
            None for a last frame whose packet has no duration.
        """
        d = self._demuxer.get()
        prev = None
        fed = 0
        # Packet durations by pts: the last frame ends where its packet says.
        durations: dict[int, int] = {}

        def scan(frames: list[Any]) -> tuple[str, Any] | None:
            nonlocal prev
            for fr in frames:
                if fr.pts < -(2**61):
                    continue  # no pts
                if fr.pts > target:
                    return ("late", None) if prev is None else ("done", (prev, prev.pts, fr.pts))
                prev = fr
            return None

        try:
            d.container.seek(seek_ticks // self._tb_num, stream=d.stream, backward=True, any_frame=False)
            started = False
            for p in d.container.demux(d.stream):
                if p.size == 0 or p.pts is None:
                    continue
                if not started and not p.is_keyframe:
                    continue
                started = True
                fed += p.size
                dts = p.dts if p.dts is not None else p.pts
                packet = Packet(
                    data=bytes(p),
                    pts=int(p.pts) * self._tb_num,
                    dts=int(dts) * self._tb_num,
                    duration=int(p.duration or 0) * self._tb_num,
                    is_sync=bool(p.is_keyframe),
                )
                durations[packet.pts] = packet.duration
                hit = scan(decoder.send(packet))
                if hit is not None:
                    return hit[1], fed
            hit = scan(decoder.flush())
            if hit is not None:
                return hit[1], fed
            if prev is None:
                return None, fed
            dur = durations.get(prev.pts, 0)
            return (prev, prev.pts, prev.pts + dur if dur > 0 else None), fed
        except av.FFmpegError as e:
            raise ContainerError(f"{self.source.url}: demuxing failed ({_reason(e)})") from None
        finally:
            decoder.reset()

    def close(self) -> None:
        """Close this process's container (an inherited one is left alone)."""
        d = self._demuxer.reset()
        if d is not None:
            d.close()
