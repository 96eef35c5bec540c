"""Small videos for the hardware-decoder tests (annexb, colour, backends).

Self-contained on purpose: these helpers depend on neither the mp4 parser nor
the shared corpus, only on PyAV encoding and demuxing, so a parser bug cannot
hide a decoder bug (the backend conformance suite adds the index on top).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9"}


@dataclass
class Sample:
    data: bytes
    pts: int
    dts: int
    is_sync: bool


@dataclass
class Demuxed:
    codec: str
    extradata: bytes | None
    time_base: Fraction
    samples: list[Sample]
    width: int
    height: int


def pattern(i: int, width: int, height: int, *, noise: int = 12, seed: int = 0) -> np.ndarray:
    """RGB frame ``i``: gradients, a moving box and some noise, all frames distinct."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack(
        [
            (xx * 200 // max(width - 1, 1) + 3 * i) % 256,
            (yy * 200 // max(height - 1, 1) + 20),
            ((xx + yy) * 120 // max(width + height, 1) + 7 * i) % 256,
        ],
        -1,
    ).astype(np.int32)
    x0 = (4 * i) % max(width - 16, 1)
    img[height // 4 : height // 4 + 12, x0 : x0 + 16] = (230, 40, 60)
    if noise:
        img += np.random.default_rng(seed + i).integers(-noise, noise + 1, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def smooth_pattern(i: int, width: int, height: int) -> np.ndarray:
    """RGB frame with only smooth gradients (no sharp chroma edges)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 30 + 190 * xx / max(width - 1, 1)
    g = 40 + 170 * yy / max(height - 1, 1)
    b = 220 - 160 * (xx + yy) / max(width + height - 2, 1) + 2 * i
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def encode(
    codec: str,
    *,
    width: int = 64,
    height: int = 48,
    num_frames: int = 36,
    gop: int = 12,
    bframes: int = 2,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    colorspace: int | None = None,
    color_range: int | None = None,
    color_primaries: int | None = None,
    color_trc: int | None = None,
    smooth: bool = False,
    seed: int = 0,
    fmt: str = "mp4",
) -> bytes:
    """Encode a small clip into an in-memory container and return its bytes."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        s = out.add_stream(ENCODERS[codec], rate=30)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        opts = dict(options or {})
        if codec in ("h264", "hevc"):
            s.codec_context.gop_size = gop
            s.codec_context.max_b_frames = bframes
        elif codec == "av1":
            opts.setdefault("preset", "12")
            s.codec_context.gop_size = gop
        elif codec == "vp9":
            s.codec_context.gop_size = gop
            opts.setdefault("deadline", "realtime")
        s.options = opts
        cc = s.codec_context
        if colorspace is not None:
            cc.colorspace = colorspace
        if color_range is not None:
            cc.color_range = color_range
        if color_primaries is not None:
            cc.color_primaries = color_primaries
        if color_trc is not None:
            cc.color_trc = color_trc
        for i in range(num_frames):
            img = smooth_pattern(i, width, height) if smooth else pattern(i, width, height, seed=seed)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            kw = {}
            if colorspace is not None:
                kw["dst_colorspace"] = colorspace
            if color_range is not None:
                kw["dst_color_range"] = color_range
            frame = frame.reformat(format=pix_fmt, **kw)
            if colorspace is not None:
                frame.colorspace = colorspace
            if color_range is not None:
                frame.color_range = color_range
            frame.pts = i
            frame.time_base = Fraction(1, 30)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def demux(data: bytes) -> Demuxed:
    """Samples (decode order) and extradata, as our own index would give them."""
    with av.open(io.BytesIO(data)) as c:
        st = c.streams.video[0]
        samples = [Sample(bytes(p), int(p.pts), int(p.dts), bool(p.is_keyframe)) for p in c.demux(st) if p.size]
        cc = st.codec_context
        return Demuxed(
            st.codec_context.name if cc.name != "libdav1d" else "av1",
            cc.extradata,
            st.time_base,
            samples,
            cc.width,
            cc.height,
        )


def reference_frames(data: bytes) -> list[tuple[int, np.ndarray]]:
    """``(pts, raw YUV planes as one ndarray)`` of a plain sequential decode."""
    out = []
    with av.open(io.BytesIO(data)) as c:
        for f in c.decode(video=0):
            out.append((int(f.pts), planes(f)))
    return out


def planes(frame: av.VideoFrame) -> np.ndarray:
    """All planes of a frame, cropped to the picture, concatenated as bytes (bit-exact compare)."""
    parts = []
    bpp = 2 if ("10" in frame.format.name or "12" in frame.format.name) else 1
    for p in frame.planes:
        a = np.frombuffer(bytes(p), np.uint8).reshape(-1, p.line_size)
        parts.append(a[: p.height, : p.width * bpp].ravel())
    return np.concatenate(parts)


def decoder_name(codec: str) -> str:
    return "libdav1d" if codec == "av1" else codec
