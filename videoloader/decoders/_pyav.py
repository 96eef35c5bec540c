"""CPU backend: FFmpeg (through PyAV) fed the packets our index produced."""

from __future__ import annotations

import functools
from fractions import Fraction

import av
import av.filter
import numpy as np
import torch
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import Interpolation, VideoReformatter

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._base import BackendSpec, DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig

__all__ = ["SPEC", "PyAVDecoder", "ffmpeg_decoder_name", "frame_to_tensor", "probe", "probe_codec"]

SPEC = BackendSpec(
    name="cpu",
    factory=f"{__name__}:PyAVDecoder",
    probe=f"{__name__}:probe",
    codec_probe=f"{__name__}:probe_codec",
    codecs=frozenset(),  # whatever this FFmpeg build decodes
    install_hint="pip install av",
    priority=0,
)
"""Portable software decoding; what ``backend="auto"`` falls back to."""


def probe() -> tuple[bool, str]:
    """Always available where this module imports (PyAV is a core dependency)."""
    return True, f"PyAV {av.__version__}"


@functools.cache
def probe_codec(codec: str) -> tuple[bool, str]:
    """Whether this PyAV's FFmpeg has a decoder for ``codec``."""
    name = ffmpeg_decoder_name(codec)
    try:
        av.codec.Codec(name, "r")
    except Exception as e:  # UnknownCodecError, ValueError
        return False, f"FFmpeg in this PyAV build has no {name!r} decoder ({e})"
    return True, ""


# FFmpeg's native "av1" decoder needs a hardware accelerator; dav1d is the CPU one.
_DECODER_NAMES = {"av1": "libdav1d"}


def ffmpeg_decoder_name(codec: str) -> str:
    """The FFmpeg decoder to use on the CPU for a codec family name."""
    return _DECODER_NAMES.get(codec, codec)


def frame_to_tensor(
    frame: av.VideoFrame,
    output: OutputSpec,
    reformatter: VideoReformatter | None = None,
    crop_scaler: _CropScaler | None = None,
) -> torch.Tensor:
    """Colour-convert (and scale) one frame inside swscale: ``3 x H x W`` uint8.

    Pass a ``VideoReformatter`` kept across frames: ``frame.to_ndarray`` builds
    a new swscale context for every frame, which cost 8x the conversion itself
    at 1080p (24.6 ms vs 3.1 ms a frame, measured with PyAV 18.1). Likewise
    a ``_CropScaler`` for ``output.crop`` (its filter graph is built once).
    """
    reformatter = reformatter or VideoReformatter()
    src_h, src_w = (output.crop[2], output.crop[3]) if output.crop else (frame.height, frame.width)
    h, w = output.height, output.width
    if h is not None and w is None:
        w = round(src_w * h / src_h)
    elif w is not None and h is None:
        h = round(src_h * w / src_w)
    if output.crop is not None:
        size = (h, w) if h is not None and w is not None else None
        rgb = (crop_scaler or _CropScaler(output.crop, size, full_chroma=output.full_chroma)).convert(frame)
    elif h is None or w is None:
        rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    else:
        interp = _FULL_CHROMA_BILINEAR if output.full_chroma else Interpolation.BILINEAR
        rgb = reformatter.reformat(frame, format="rgb24", width=w, height=h, interpolation=interp).to_ndarray()
    if output.post_crop is not None:
        t, left, ch, cw = output.post_crop
        rgb = rgb[t : t + ch, left : left + cw]
    # A CHW view of the HWC array; the reader stacks it channel-last.
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)


_FULL_CHROMA_BILINEAR = Interpolation(
    Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
)


class _CropScaler:
    """Crop, scale and convert to rgb24 in one swscale pass: FFmpeg's ``crop``
    filter only moves the plane pointers, its ``scale`` filter then reads the
    window (a window with an odd edge is cut from the RGB frame instead). The
    graph is rebuilt when the input's size or format changes."""

    def __init__(
        self, crop: tuple[int, int, int, int], size: tuple[int, int] | None, *, full_chroma: bool = False
    ) -> None:
        self._crop = crop
        self._size = size
        self._full_chroma = full_chroma
        self._graph: av.filter.Graph | None = None
        self._key: tuple[int, int, str] | None = None

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name)
        if self._graph is None or key != self._key:
            t, left, ch, cw = self._crop
            if t + ch > frame.height or left + cw > frame.width:
                raise ValueError(f"crop {self._crop} does not fit in a {frame.height}x{frame.width} frame")
            g = av.filter.Graph()
            chain = [
                g.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1))
            ]
            if (t | left | ch | cw) & 1:
                # An odd edge falls between subsampled chroma samples: crop the RGB
                # frame instead (exact, at the price of a full-size conversion).
                chain.append(g.add("format", "rgb24"))
            chain.append(g.add("crop", f"w={cw}:h={ch}:x={left}:y={t}:exact=1"))
            if self._size is not None:
                flags = "bilinear+full_chroma_int+full_chroma_inp" if self._full_chroma else "bilinear"
                chain.append(g.add("scale", f"w={self._size[1]}:h={self._size[0]}:flags={flags}"))
            chain += [g.add("format", "rgb24"), g.add("buffersink")]
            for a, b in zip(chain, chain[1:], strict=False):
                a.link_to(b)
            g.configure()
            self._graph, self._key = g, key
        self._graph.push(frame)
        out = self._graph.pull()
        assert isinstance(out, av.VideoFrame)
        return out.to_ndarray()


class PyAVDecoder(DecoderBackend):
    """FFmpeg software decoding with FFmpeg's own threading.

    Damage FFmpeg reports is never passed off as a frame: a packet FFmpeg
    rejects, a wanted frame FFmpeg flags as corrupt (concealed errors), or any
    frame decoded after a flagged one in the same group (it may reference the
    damage) raises ``CorruptVideoError``. A wanted frame FFmpeg drops is
    reported by the reader. Damage FFmpeg does not notice (a bit flipped inside
    a slice's payload often decodes "successfully") cannot be caught here.

    Args:
        config: codec, extradata and size from the index.
        output: output size for the colour conversion.
        thread_count: FFmpeg decoder threads; 0 lets FFmpeg pick (one per core).
        thread_type: ``"AUTO"`` (frame + slice), ``"SLICE"``, ``"FRAME"`` or ``"NONE"``.
    """

    name = "cpu"
    supports_crop = True

    def __init__(
        self,
        config: StreamConfig,
        *,
        output: OutputSpec = OutputSpec(),
        thread_count: int = 0,
        thread_type: str = "AUTO",
    ) -> None:
        super().__init__(config, output=output)
        self._time_base = Fraction(1, config.timescale)
        self._thread_count = thread_count
        self._thread_type = thread_type
        self._ctx: VideoCodecContext | None = None
        self._dirty = False
        self._tainted = False
        self._start_pts: int | None = None
        self._pix_fmt: str | None = None  # set from the first decoded frame
        self._reformatter = VideoReformatter()
        self._crop_scaler: _CropScaler | None = None

    @classmethod
    def create(cls, config: StreamConfig, output: OutputSpec, *, num_threads: int = 0) -> DecoderBackend:
        """``num_threads`` becomes FFmpeg's ``thread_count`` (0: one per core)."""
        return cls(config, output=output, thread_count=num_threads)

    def _context(self) -> VideoCodecContext:
        if self._ctx is None:
            name = ffmpeg_decoder_name(self.config.codec)
            try:
                ctx = av.CodecContext.create(name, "r")
            except (av.FFmpegError, ValueError) as e:
                raise UnsupportedFormatError(
                    f"FFmpeg in this PyAV build has no decoder {name!r} for codec {self.config.codec!r}"
                ) from e
            if not isinstance(ctx, VideoCodecContext):
                raise UnsupportedFormatError(f"FFmpeg's {name!r} decoder is not a video decoder")
            if self.config.extradata:
                ctx.extradata = self.config.extradata
            ctx.thread_count = self._thread_count
            ctx.thread_type = self._thread_type
            self._ctx = ctx
        return self._ctx

    def _frames(self, packet: av.Packet | None) -> list[DecodedFrame]:
        ctx = self._context()
        try:
            frames = ctx.decode(packet)
        except av.FFmpegError as e:
            where = "while draining" if packet is None else f"at packet pts={packet.pts}"
            self.reset()
            raise CorruptVideoError(f"{self.config.codec} decoder failed {where}: {e}") from None
        out = []
        for f in frames:
            pts = int(f.pts) if f.pts is not None else -(2**62)
            corrupt = bool(f.is_corrupt)
            # Leading pictures of an open GOP (pts before the group's first
            # packet) may come out damaged by design when decoding starts at
            # that GOP; later frames never reference them, so they taint nothing.
            if corrupt and self._start_pts is not None and pts >= self._start_pts:
                self._tainted = True
            out.append(DecodedFrame(pts=pts, handle=f, corrupt=corrupt or self._tainted))
        if frames:
            self._pix_fmt = frames[-1].format.name
        return out

    def reset(self) -> None:
        # A frame-threaded FFmpeg decoder freed with work in flight after a
        # failed send can deadlock (seen with PyAV 18.1); flushing first is safe.
        if self._ctx is not None:
            try:
                self._ctx.flush_buffers()
            except av.FFmpegError:
                pass
        self._dirty = False
        self._tainted = False
        self._start_pts = None

    def send(self, packet: Packet) -> list[DecodedFrame]:
        p = av.Packet(packet.data)
        p.pts = packet.pts
        p.dts = packet.dts
        p.time_base = self._time_base
        if packet.is_sync:
            p.is_keyframe = True
        if not self._dirty:
            self._start_pts = packet.pts
        self._dirty = True
        return self._frames(p)

    def flush(self) -> list[DecodedFrame]:
        if not self._dirty:
            return []
        frames = self._frames(None)
        # After draining, FFmpeg's decoder sits at EOF until its buffers are flushed.
        self.reset()
        return frames

    def convert(self, frame: DecodedFrame) -> torch.Tensor:
        if frame.corrupt:
            raise CorruptVideoError(
                f"{self.config.codec} decoder concealed damage in frame pts={frame.pts} or a frame it references"
            )
        o = self.output
        if o.crop is not None and self._crop_scaler is None:
            ch, cw = o.crop[2], o.crop[3]
            h, w = o.height, o.width
            if h is not None and w is None:
                w = round(cw * h / ch)
            elif w is not None and h is None:
                h = round(ch * w / cw)
            size = (h, w) if h is not None and w is not None else None
            self._crop_scaler = _CropScaler(o.crop, size, full_chroma=o.full_chroma)
        return frame_to_tensor(frame.handle, o, self._reformatter, self._crop_scaler)

    def pixel_format(self) -> str | None:
        """Pixel format of the decoded frames (as swscale receives them), known after the first decode."""
        return self._pix_fmt

    def close(self) -> None:
        self.reset()
        self._ctx = None
