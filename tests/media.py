"""Test media made with PyAV: a fixed corpus of small videos plus a generic recipe.

Every video is generated here (tests make their own media); no
ffmpeg binary and no network. Where FFmpeg's muxer cannot write a variant we
rewrite the MP4 boxes in Python (``co64``, ``frag_nosidx``).

Public API:

- :func:`make_corpus` builds every entry of :data:`KINDS` into a folder.
- :func:`make_video` is the generic recipe (also for 720p/1080p benchmark files).
- :func:`decode_all_frames` is the reference decode other tests compare against.
- :func:`read_frame_number` reads back the frame number drawn into each frame.
- :func:`iter_boxes` / :func:`top_level_boxes` / :func:`find_boxes` walk ISO-BMFF boxes.

Every frame carries its *presentation* frame number (0-based, in encode order)
as a 16-bit barcode along the top rows, plus a moving bar, a shifting noise
texture and a frame-dependent chroma tint, so two frames never look alike and a
wrong frame is detectable even after lossy compression.

What FFmpeg (PyAV 18.1, libavformat 62) does with each corpus file is recorded in
``KINDS[name].decoded_frames`` (frames yielded by a plain sequential
``container.decode(video=0)``) and ``KINDS[name].notes``.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "KINDS",
    "MKV_KINDS",
    "Box",
    "MediaKind",
    "decode_all_frames",
    "find_boxes",
    "iter_boxes",
    "make_corpus",
    "make_kind",
    "make_video",
    "parse_elst",
    "read_frame_number",
    "remux",
    "rotated_copy",
    "top_level_boxes",
]

_BARCODE_BITS = 16
_CONTAINER_FORMATS = {"mp4": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm", "ts": "mpegts"}
_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}


# --------------------------------------------------------------------------- frames


def _barcode_geometry(width: int, height: int) -> tuple[int, int]:
    """Cell width and height of the frame-number barcode (one cell per bit)."""
    cell_w = width // _BARCODE_BITS
    cell_h = max(4, height // 12)
    if cell_w < 4:
        raise ValueError(f"width {width} too small for a {_BARCODE_BITS}-bit barcode; need >= 64")
    return cell_w, cell_h


class _FrameSource:
    """Makes distinct yuv420p frames cheaply (one noise tile, rolled per frame)."""

    def __init__(self, width: int, height: int, *, seed: int = 0, noise: int = 24) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"width and height must be even, got {width}x{height}")
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        # Gradient + noise: not trivially compressible, still cheap at 1080p.
        yy, xx = np.mgrid[0:height, 0:width]
        gradient = 48 + (96 * xx / max(1, width - 1) + 48 * yy / max(1, height - 1))
        noise_tile = rng.integers(-noise, noise + 1, size=(height, width)) if noise else 0
        self._base = np.clip(gradient + noise_tile, 16, 235).astype(np.uint8)
        self._cell_w, self._cell_h = _barcode_geometry(width, height)
        cy, cx = np.mgrid[0 : height // 2, 0 : width // 2]
        ramp = 2 * np.pi * (cx / max(1, width // 2 - 1) + cy / max(1, height // 2 - 1))
        self._u = (128 + 80 * np.sin(ramp)).astype(np.uint8)
        self._v = (128 + 80 * np.cos(2 * ramp)).astype(np.uint8)
        half_cell = (self._cell_h + 1) // 2
        self._u[:half_cell], self._v[:half_cell] = 128, 128  # grey barcode survives subsampling
        self._half_cell = half_cell

    def yuv(self, index: int) -> np.ndarray:
        """Frame ``index`` as a (H*3/2, W) uint8 yuv420p array."""
        w, h = self.width, self.height
        out = np.empty(h * w * 3 // 2, np.uint8)
        y = out[: h * w].reshape(h, w)
        y[...] = np.roll(self._base, shift=(index * 2, index * 3), axis=(0, 1))
        bar_x = (index * 5) % max(1, w - 6)
        y[self._cell_h :, bar_x : bar_x + 6] = 235
        bar_y = self._cell_h + (index * 3) % max(1, h - self._cell_h - 4)
        y[bar_y : bar_y + 4, :] = 16
        # The barcode: bit k of the frame number is cell k (white = 1), MSB first.
        for bit in range(_BARCODE_BITS):
            on = (index >> (_BARCODE_BITS - 1 - bit)) & 1
            y[: self._cell_h, bit * self._cell_w : (bit + 1) * self._cell_w] = 235 if on else 16
        # Chroma: the colour pattern slides sideways (rows under the barcode stay grey).
        quarter = (h // 2) * (w // 2)
        hc = self._half_cell
        u = out[h * w : h * w + quarter].reshape(h // 2, w // 2)
        v = out[h * w + quarter :].reshape(h // 2, w // 2)
        u[:hc], v[:hc] = 128, 128
        u[hc:] = np.roll(self._u[hc:], index * 2, axis=1)
        v[hc:] = np.roll(self._v[hc:], -index * 3, axis=1)
        return out.reshape(h * 3 // 2, w)

    def frame(self, index: int):
        import av

        return av.VideoFrame.from_ndarray(self.yuv(index), format="yuv420p")


def read_frame_number(rgb: np.ndarray) -> int:
    """Read back the frame number drawn by this module from a decoded rgb24 frame.

    Args:
        rgb: (H, W, 3) uint8 array at the size the video was made (not resized).

    Returns:
        The presentation frame number the frame was generated with.
    """
    height, width = rgb.shape[:2]
    cell_w, cell_h = _barcode_geometry(width, height)
    luma = rgb[:cell_h, : cell_w * _BARCODE_BITS].astype(np.float32).mean(axis=2)
    value = 0
    for bit in range(_BARCODE_BITS):
        cell = luma[1 : cell_h - 1, bit * cell_w + 1 : (bit + 1) * cell_w - 1]
        value = (value << 1) | int(cell.mean() > 128)
    return value


# --------------------------------------------------------------------------- encoding


def _x264_params(gop: int, bframes: int, open_gop: bool, extra: str | None) -> str:
    # b-adapt=0: a fixed B-frame pattern, so the GOP structure (e.g. the open-GOP leading
    # frames) is known in advance. Note: with B-frames libx264 here still gives slightly
    # different bitstreams from run to run (even threads=1); frame content and structure
    # are stable, bytes are not.
    params = [
        "b-adapt=0",
        f"keyint={gop}",
        f"min-keyint={gop}",
        "scenecut=0",
        f"bframes={bframes}",
        f"b-pyramid={'normal' if bframes >= 2 else 'none'}",
        f"open-gop={1 if open_gop else 0}",
    ]
    if extra:
        params.append(extra)
    return ":".join(params)


def _x265_params(gop: int, bframes: int, open_gop: bool, extra: str | None) -> str:
    params = [
        "log-level=error",
        f"keyint={gop}",
        f"min-keyint={gop}",
        "scenecut=0",
        f"bframes={bframes}",
        f"open-gop={1 if open_gop else 0}",
        "info=0",
    ]
    if extra:
        params.append(extra)
    return ":".join(params)


def _add_video_stream(
    container,
    *,
    codec,
    width,
    height,
    fps,
    time_base,
    gop,
    bframes,
    pix_fmt,
    open_gop,
    preset,
    crf,
    options,
    threads,
    codec_tag,
):
    encoder = _ENCODERS.get(codec, codec)
    stream = container.add_stream(encoder, rate=fractions.Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = width, height
    stream.pix_fmt = pix_fmt
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.codec_context.gop_size = gop
    if codec_tag:
        stream.codec_tag = codec_tag
    opts: dict[str, str] = {}
    if encoder == "libx264":
        opts = {
            "preset": preset or "veryfast",
            "crf": str(crf if crf is not None else 20),
            "x264-params": _x264_params(gop, bframes, open_gop, (options or {}).pop("x264-params", None)),
        }
        stream.codec_context.max_b_frames = bframes
    elif encoder == "libx265":
        opts = {
            "preset": preset or "ultrafast",
            "crf": str(crf if crf is not None else 22),
            "x265-params": _x265_params(gop, bframes, open_gop, (options or {}).pop("x265-params", None)),
        }
        stream.codec_context.max_b_frames = bframes
    elif encoder == "libvpx-vp9":
        opts = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "row-mt": "1",
            "crf": str(crf if crf is not None else 30),
            "b": "0",
        }
    elif encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only; SVT-AV1 logs its config to stderr
        opts = {
            "preset": preset or "10",
            "crf": str(crf if crf is not None else 35),
            "svtav1-params": f"keyint={gop}:scd=0",
        }
    opts.update(options or {})
    stream.options = opts
    if threads is not None:
        stream.codec_context.thread_count = threads
    return stream


def _add_audio_stream(container, codec: str, sample_rate: int = 48000):
    stream = container.add_stream(codec, rate=sample_rate)
    stream.layout = "mono"
    stream.time_base = fractions.Fraction(1, sample_rate)
    return stream


def _audio_frames(stream, duration_seconds: float, sample_rate: int = 48000):
    import av

    frame_size = stream.codec_context.frame_size or 1024
    total = int(duration_seconds * sample_rate)
    for start in range(0, total, frame_size):
        # A rising chirp, made one frame at a time so long files need no big buffer.
        t = np.arange(start, min(total, start + frame_size), dtype=np.float64) / sample_rate
        chunk = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t % 8))).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, sample_rate)
        yield frame


def make_video(
    path: Path | str,
    *,
    codec: str = "h264",
    width: int = 160,
    height: int = 120,
    num_frames: int = 60,
    fps: float = 30,
    gop: int = 30,
    bframes: int = 0,
    container: str = "mp4",
    pix_fmt: str = "yuv420p",
    movflags: str | None = None,
    options: dict[str, str] | None = None,
    audio: bool = False,
    audio_first: bool = False,
    audio_codec: str | None = None,
    open_gop: bool = False,
    pts: Sequence[int] | None = None,
    time_base: fractions.Fraction | None = None,
    pts_shift_frames: int = 0,
    preset: str | None = None,
    crf: int | None = None,
    noise: int = 24,
    seed: int = 0,
    threads: int | None = None,
    codec_tag: str | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode a synthetic video with PyAV.

    Args:
        path: Output file.
        codec: "h264", "hevc", "vp9", "av1" or a PyAV encoder name.
        width: Frame width in pixels (even, >= 64 for the frame-number barcode).
        height: Frame height in pixels (even).
        num_frames: Frames to encode.
        fps: Nominal frame rate; the stream time base is 1/fps unless ``time_base`` is given.
        gop: Keyframe interval in frames (closed GOPs, no scene cuts, unless ``open_gop``).
        bframes: Max consecutive B-frames (x264/x265; b-pyramid when >= 2).
        container: "mp4", "mov", "mkv", "webm" or "ts".
        pix_fmt: Encoder pixel format, e.g. "yuv420p" or "yuv420p10le".
        movflags: MP4 muxer movflags, e.g. "faststart" or "frag_keyframe+empty_moov".
        options: Extra encoder options (override the defaults chosen here).
        audio: Add a mono AAC track.
        audio_first: Add the audio stream before the video stream (implies ``audio``).
        audio_codec: Audio encoder; default "libopus" for WebM, else "aac".
        open_gop: x264/x265 open GOPs (non-IDR I frames with leading B frames).
        pts: Explicit per-frame pts in ``time_base`` units (for variable frame rate).
        time_base: Video time base; default ``1/fps``.
        pts_shift_frames: Subtract this many frame durations from every packet's pts
            and dts before muxing; in MP4 this makes FFmpeg write an edit list whose
            media_time hides the first ``pts_shift_frames`` frames.
        preset: Encoder preset (x264 default "veryfast"; use "ultrafast" for big files).
        crf: Quality (lower is better); defaults per codec.
        noise: Amplitude of the luma noise texture (0 for smooth, faster, smaller).
        seed: Noise seed.
        threads: Encoder thread count (None: encoder default).
        codec_tag: Sample entry fourcc, e.g. "hvc1" (FFmpeg writes "hev1" by default).
        container_options: Extra muxer options.

    Returns:
        ``path`` as a Path.
    """
    import av

    path = Path(path)
    fmt = _CONTAINER_FORMATS.get(container, container)
    fps_fraction = fractions.Fraction(fps).limit_denominator(1001)
    time_base = time_base or 1 / fps_fraction
    frame_ticks = 1 / (fps_fraction * time_base)
    if pts is not None and len(pts) != num_frames:
        raise ValueError(f"pts has {len(pts)} entries, expected num_frames={num_frames}")
    audio = audio or audio_first
    audio_codec = audio_codec or ("libopus" if fmt == "webm" else "aac")
    mux_options = dict(container_options or {})
    if movflags:
        mux_options["movflags"] = movflags
    source = _FrameSource(width, height, seed=seed, noise=noise)
    with av.open(str(path), mode="w", format=fmt, options=mux_options) as out:
        audio_stream = _add_audio_stream(out, audio_codec) if audio and audio_first else None
        video = _add_video_stream(
            out,
            codec=codec,
            width=width,
            height=height,
            fps=fps,
            time_base=time_base,
            gop=gop,
            bframes=bframes,
            pix_fmt=pix_fmt,
            open_gop=open_gop,
            preset=preset,
            crf=crf,
            options=dict(options or {}),
            threads=threads,
            codec_tag=codec_tag,
        )
        if audio and not audio_first:
            audio_stream = _add_audio_stream(out, audio_codec)
        shift = int(round(pts_shift_frames * frame_ticks))

        def mux(packets):
            for packet in packets:
                if shift:
                    if packet.pts is not None:
                        packet.pts -= shift
                    if packet.dts is not None:
                        packet.dts -= shift
                out.mux(packet)

        # Audio is generated alongside the video so the muxer can interleave the tracks.
        end = pts[-1] + frame_ticks if pts is not None else num_frames * frame_ticks
        audio_frames = iter(_audio_frames(audio_stream, float(end * time_base)) if audio_stream else ())
        pending_audio = next(audio_frames, None)
        for i in range(num_frames):
            frame = source.frame(i)
            frame.pts = int(pts[i]) if pts is not None else int(round(i * frame_ticks))
            frame.time_base = time_base
            mux(video.encode(frame))
            while pending_audio is not None and pending_audio.time <= float(frame.pts * time_base):
                out.mux(audio_stream.encode(pending_audio))
                pending_audio = next(audio_frames, None)
        mux(video.encode(None))
        if audio_stream is not None:
            while pending_audio is not None:
                out.mux(audio_stream.encode(pending_audio))
                pending_audio = next(audio_frames, None)
            out.mux(audio_stream.encode(None))
    return path


# --------------------------------------------------------------------------- reference decode


def decode_all_frames(path: Path | str, *, stream_index: int = 0) -> list[tuple[int, np.ndarray]]:
    """Decode every frame sequentially with PyAV's default options.

    Args:
        path: Video file.
        stream_index: Index among the video streams.

    Returns:
        ``[(pts, rgb24 ndarray (H, W, 3) uint8), ...]`` in presentation order, exactly
        what ``av.open(path).decode(video=stream_index)`` yields.
    """
    import av

    with av.open(str(path)) as container:
        return [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=stream_index)]


# --------------------------------------------------------------------------- boxes


@dataclasses.dataclass(frozen=True)
class Box:
    """One ISO-BMFF box as found in a byte string."""

    type: str
    """Four-character code, e.g. "moov"."""
    start: int
    """Offset of the box header in the buffer."""
    header_size: int
    """8, or 16 for a 64-bit ``largesize``."""
    size: int
    """Total size including the header."""

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def payload_start(self) -> int:
        return self.start + self.header_size


_CONTAINER_BOXES = {"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex", "moof", "traf", "mfra", "udta"}


def iter_boxes(data: bytes, start: int = 0, stop: int | None = None) -> Iterator[Box]:
    """Boxes directly inside ``data[start:stop]`` (no recursion)."""
    stop = len(data) if stop is None else stop
    offset = start
    while offset + 8 <= stop:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = stop - offset
        if size < header or offset + size > stop:
            raise ValueError(f"bad box {kind!r} at {offset}: size {size}, buffer ends at {stop}")
        yield Box(kind.decode("latin-1"), offset, header, size)
        offset += size


def top_level_boxes(data: bytes) -> list[str]:
    """Types of the top-level boxes in file order, e.g. ["ftyp", "moov", "mdat"]."""
    return [box.type for box in iter_boxes(data)]


def find_boxes(data: bytes, path: str) -> list[Box]:
    """All boxes at a slash path, e.g. ``find_boxes(data, "moov/trak/edts/elst")``."""
    parts = path.split("/")
    boxes = [b for b in iter_boxes(data) if b.type == parts[0]]
    for part in parts[1:]:
        boxes = [c for b in boxes for c in iter_boxes(data, b.payload_start, b.stop) if c.type == part]
    return boxes


def parse_elst(data: bytes, box: Box) -> list[tuple[int, int, float]]:
    """Entries of an ``elst`` box: (segment_duration, media_time, media_rate)."""
    version = data[box.payload_start]
    (count,) = struct.unpack_from(">I", data, box.payload_start + 4)
    entries, offset = [], box.payload_start + 8
    for _ in range(count):
        if version == 1:
            duration, media_time = struct.unpack_from(">Qq", data, offset)
            offset += 16
        else:
            duration, media_time = struct.unpack_from(">Ii", data, offset)
            offset += 8
        rate_int, rate_frac = struct.unpack_from(">hh", data, offset)
        offset += 4
        entries.append((duration, media_time, rate_int + rate_frac / 65536))
    return entries


def _rewrite_stco_as_co64(data: bytes) -> bytes:
    """Replace every ``stco`` with an equivalent ``co64`` (offsets fixed if moov precedes mdat).

    FFmpeg only writes co64 when an offset exceeds 4 GiB, which a small test file
    never does, so we widen the table ourselves. The moov grows by 4 bytes per
    chunk; if the moov sits before the media data every chunk offset moves by the
    same amount.
    """
    top = list(iter_boxes(data))
    moov = next(b for b in top if b.type == "moov")
    stcos = find_boxes(data, "moov/trak/mdia/minf/stbl/stco")
    if not stcos:
        raise ValueError("no stco box to rewrite")
    growth = sum(struct.unpack_from(">I", data, b.payload_start + 4)[0] * 4 for b in stcos)
    mdat = next(b for b in top if b.type == "mdat")
    shift = growth if moov.start < mdat.start else 0

    def rebuild(start: int, stop: int) -> bytes:
        out = bytearray()
        for box in iter_boxes(data, start, stop):
            if box.type == "stco":
                (count,) = struct.unpack_from(">I", data, box.payload_start + 4)
                offsets = np.frombuffer(data, ">u4", count, box.payload_start + 8).astype(np.uint64)
                body = data[box.payload_start : box.payload_start + 8] + (offsets + shift).astype(">u8").tobytes()
                out += struct.pack(">I4s", 8 + len(body), b"co64") + body
            elif box.type in _CONTAINER_BOXES:
                inner = rebuild(box.payload_start, box.stop)
                out += struct.pack(">I4s", 8 + len(inner), box.type.encode()) + inner
            else:
                out += data[box.start : box.stop]
        return out

    new_moov = rebuild(moov.start, moov.stop)
    return bytes(data[: moov.start] + new_moov + data[moov.stop :])


def _strip_top_level(data: bytes, kinds: set[str]) -> bytes:
    """Drop top-level boxes (only safe for boxes after all media, e.g. a trailing mfra)."""
    return b"".join(data[b.start : b.stop] for b in iter_boxes(data) if b.type not in kinds)


# --------------------------------------------------------------------------- corpus


@dataclasses.dataclass(frozen=True)
class MediaKind:
    """What one corpus file is and what FFmpeg does with it."""

    codec: str
    """"h264", "hevc", "vp9" or "av1"."""
    container: str
    """"mp4", "mkv", "webm" or "ts"."""
    fragmented: bool
    """True for fragmented MP4 (moof/mdat pairs)."""
    features: frozenset[str]
    """Properties the file is made to have (checked in tests/test_media.py)."""
    num_frames: int
    """Frames encoded (the number of video samples / packets in the file)."""
    decoded_frames: int
    """Frames a sequential ``av.open(p).decode(video=0)`` yields (FFmpeg applies edit lists)."""
    width: int
    height: int
    fps: float
    gop: int
    bframes: int = 0
    pix_fmt: str = "yuv420p"
    sync_frames: tuple[int, ...] = ()
    """Presentation frame numbers (barcodes) of the sync samples / keyframe packets."""
    notes: str = ""
    recipe: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    """Keyword arguments to :func:`make_video`."""
    post: str | None = None
    """Byte-level rewrite applied after muxing: "co64" or "strip_mfra"."""

    @property
    def suffix(self) -> str:
        return "." + self.container


_SMALL = dict(width=160, height=120)
_TINY = dict(width=64, height=48)
# Irregular frame durations (ms) for the vfr file: cycles through 20..70 ms.
_VFR_DURATIONS_MS = [33, 20, 50, 33, 70, 25, 40, 33]
_VFR_NUM_FRAMES = 45
_VFR_PTS = [0]
for _i in range(_VFR_NUM_FRAMES - 1):
    _VFR_PTS.append(_VFR_PTS[-1] + _VFR_DURATIONS_MS[_i % len(_VFR_DURATIONS_MS)])


def _kind(
    codec,
    container,
    num_frames,
    *,
    decoded=None,
    features=(),
    fragmented=False,
    gop=30,
    bframes=0,
    pix_fmt="yuv420p",
    fps=30,
    size=_SMALL,
    notes="",
    post=None,
    sync=None,
    **recipe,
) -> MediaKind:
    # threads=1: x264 writes one slice per frame on any machine; bitexact: Matroska then writes
    # no random segment UID. Files without B-frames are then byte-reproducible.
    recipe = dict(
        codec=codec,
        container=container,
        num_frames=num_frames,
        gop=gop,
        bframes=bframes,
        pix_fmt=pix_fmt,
        fps=fps,
        threads=1,
        container_options={"fflags": "+bitexact", **recipe.pop("mux_options", {})},
        **size,
        **recipe,
    )
    sync = tuple(range(0, num_frames, gop)) if sync is None else tuple(sync)
    return MediaKind(
        codec=codec,
        container=container,
        fragmented=fragmented,
        features=frozenset(features),
        num_frames=num_frames,
        decoded_frames=num_frames if decoded is None else decoded,
        width=size["width"],
        height=size["height"],
        fps=fps,
        gop=gop,
        bframes=bframes,
        pix_fmt=pix_fmt,
        sync_frames=sync,
        notes=notes,
        recipe=recipe,
        post=post,
    )


KINDS: dict[str, MediaKind] = {
    "h264_faststart": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        features={"faststart"},
        movflags="faststart",
        notes="moov before mdat; I/P only; keyframes at 0,15,30,45.",
    ),
    "h264_moov_end": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        features={"moov_end"},
        notes="moov after mdat (FFmpeg default); I/P only; keyframes at 0,15,30,45.",
    ),
    "h264_bframes": _kind(
        "h264",
        "mp4",
        60,
        gop=20,
        bframes=3,
        features={"bframes", "faststart", "editlist"},
        movflags="faststart",
        notes="B-pyramid (bframes=3, fixed pattern I/P B B B); ctts present; FFmpeg writes one elst entry "
        "whose media_time (1024 ticks of 15360 = 2 frames) is only the B-frame delay; "
        "demuxed packet pts start at 0, dts at -1024. Sequential decode yields all 60.",
    ),
    "h264_open_gop": _kind(
        "h264",
        "mp4",
        72,
        gop=24,
        bframes=3,
        open_gop=True,
        features={"bframes", "open_gop", "faststart"},
        movflags="faststart",
        notes="x264 open-gop=1: sync samples at frames 0 (IDR), 24 and 48 (non-IDR I "
        "frames, in stss). In decode order each is followed by leading B frames 22,21,23 "
        "(46,45,47) that reference the previous GOP. Sequential decode yields all 72 frames. "
        "Decoding that starts at the sync sample of frame 24 outputs 24,25,... only: FFmpeg's "
        "h264 decoder drops the leading frames 21..23, so they need decoding from frame 0's GOP.",
    ),
    "h264_editlist": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        bframes=2,
        pts_shift_frames=5,
        features={"bframes", "editlist", "faststart"},
        movflags="faststart",
        decoded=55,
        notes="Packets muxed with pts shifted back by 5 frames, so FFmpeg writes one elst entry "
        "(segment_duration 1834 in mvhd timescale 1000, media_time 3584 in mdhd timescale "
        "15360 = 7 frames of 512 ticks: 5 cut frames + 2 frames of B-frame delay). FFmpeg's "
        "demuxer flags the 5 samples presented before media_time with is_discard and the "
        "decoder drops them: a sequential decode yields 55 frames, barcodes 5..59, pts "
        "re-based to 0, 512, ... The first sync sample (frame 0) lies before the edit.",
    ),
    "hevc_8bit": _kind(
        "hevc",
        "mp4",
        48,
        gop=16,
        bframes=3,
        codec_tag="hvc1",
        features={"bframes", "hvc1", "faststart"},
        movflags="faststart",
        notes="libx265, closed GOP (open-gop=0), bframes=3, sample entry hvc1.",
    ),
    "hevc_10bit": _kind(
        "hevc",
        "mp4",
        36,
        gop=12,
        pix_fmt="yuv420p10le",
        features={"10bit", "hev1", "faststart"},
        movflags="faststart",
        notes="libx265 Main10, closed GOP, I/P only, FFmpeg's default sample entry hev1.",
    ),
    "av1": _kind(
        "av1",
        "mp4",
        40,
        gop=20,
        features={"faststart"},
        movflags="faststart",
        size=dict(width=128, height=96),
        notes="libsvtav1 preset 10 (random-access prediction structure, no frame reordering "
        "at the container level) in MP4: av01 + av1C; decoded with libdav1d.",
    ),
    "vp9_mp4": _kind(
        "vp9",
        "mp4",
        40,
        gop=20,
        features={"faststart"},
        movflags="faststart",
        notes="libvpx-vp9 realtime, no alt-ref (lag-in-frames=0), vp09 + vpcC.",
    ),
    "frag_nosidx": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        fragmented=True,
        features={"fragmented", "no_sidx", "no_mfra"},
        movflags="frag_keyframe+empty_moov+default_base_moof",
        post="strip_mfra",
        notes="empty moov + one moof/mdat per GOP (4 fragments); FFmpeg's trailing mfra removed.",
    ),
    "frag_sidx": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        fragmented=True,
        features={"fragmented", "sidx"},
        movflags="frag_keyframe+empty_moov+default_base_moof+global_sidx",
        post="strip_mfra",
        notes="global_sidx: one top-level sidx after the moov indexing all 4 fragments; FFmpeg's "
        "trailing mfra removed so the sidx is the only index.",
    ),
    "frag_mfra": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        fragmented=True,
        features={"fragmented", "mfra", "no_sidx"},
        movflags="frag_keyframe+empty_moov+default_base_moof",
        notes="FFmpeg writes mfra (tfra per track + mfro) at the end of a fragmented file.",
    ),
    "audio_first": _kind(
        "h264",
        "mp4",
        45,
        gop=15,
        audio_first=True,
        features={"audio", "audio_first", "faststart"},
        movflags="faststart",
        notes="track 1 = AAC mono 48 kHz (its elst media_time 1024 = encoder priming), "
        "track 2 = H.264 video (I/P, elst media_time 0); samples interleaved in the mdat.",
    ),
    "vfr": _kind(
        "h264",
        "mp4",
        _VFR_NUM_FRAMES,
        gop=15,
        time_base=fractions.Fraction(1, 1000),
        pts=_VFR_PTS,
        features={"vfr", "faststart"},
        movflags="faststart",
        size=_TINY,
        notes=f"time base 1/1000, frame durations cycle through {_VFR_DURATIONS_MS} ms.",
    ),
    "one_frame": _kind(
        "h264",
        "mp4",
        1,
        gop=15,
        features={"one_frame", "faststart"},
        movflags="faststart",
        size=_TINY,
        notes="a single IDR frame.",
    ),
    "co64": _kind(
        "h264",
        "mp4",
        60,
        gop=15,
        bframes=2,
        features={"co64", "faststart", "bframes"},
        movflags="faststart",
        post="co64",
        notes="stco rewritten as co64 after muxing (offsets shifted by the moov growth; all < 4 GiB).",
    ),
    "mkv_h264": _kind(
        "h264", "mkv", 60, gop=15, bframes=2, features={"matroska"}, notes="Matroska, H.264 with B-frames."
    ),
    "webm_vp9": _kind("vp9", "webm", 60, gop=20, features={"webm"}, notes="WebM, VP9 realtime."),
    "ts_h264": _kind(
        "h264",
        "ts",
        60,
        gop=15,
        bframes=2,
        features={"mpegts"},
        notes="MPEG-TS, H.264 with B-frames, 90 kHz timestamps: dts start at 0, the first "
        "frame's pts is 6000 (2 frames of B-frame delay).",
    ),
}


#: Matroska / WebM variants for the Matroska index's tests (built on demand by
#: :func:`make_kind`, not part of :func:`make_corpus`'s default set).
MKV_KINDS: dict[str, MediaKind] = {
    "mkv_hevc_10bit": _kind(
        "hevc",
        "mkv",
        36,
        gop=12,
        bframes=3,
        pix_fmt="yuv420p10le",
        features={"matroska", "10bit", "bframes"},
        notes="libx265 Main10 with B-frames in Matroska (V_MPEGH/ISO/HEVC, CodecPrivate = hvcC).",
    ),
    "webm_av1": _kind(
        "av1",
        "webm",
        30,
        gop=15,
        size=dict(width=128, height=96),
        features={"webm"},
        notes="libsvtav1 in WebM (V_AV1, CodecPrivate = av1C).",
    ),
    "mkv_no_cues": _kind(
        "h264",
        "mkv",
        60,
        gop=15,
        bframes=2,
        post="strip_cues",
        features={"matroska", "no_cues"},
        notes="mkv_h264 with its Cues element turned into a Void of the same size (the SeekHead still points there).",
    ),
    "mkv_vfr": _kind(
        "h264",
        "mkv",
        _VFR_NUM_FRAMES,
        gop=15,
        time_base=fractions.Fraction(1, 1000),
        pts=_VFR_PTS,
        size=_TINY,
        features={"matroska", "vfr"},
        notes=f"Matroska, frame durations cycle through {_VFR_DURATIONS_MS} ms.",
    ),
    "mkv_audio": _kind(
        "h264",
        "mkv",
        45,
        gop=15,
        bframes=2,
        audio=True,
        features={"matroska", "audio"},
        notes="H.264 track 1 and AAC track 2, blocks interleaved in the clusters.",
    ),
    "webm_audio_first": _kind(
        "vp9",
        "webm",
        40,
        gop=20,
        audio_first=True,
        features={"webm", "audio", "audio_first"},
        notes="Opus track 1 before VP9 track 2 in WebM.",
    ),
    "mkv_live": _kind(
        "h264",
        "mkv",
        40,
        gop=15,
        bframes=2,
        mux_options={"live": "1"},
        post="unknown_sizes",
        features={"matroska", "unknown_size", "no_cues"},
        notes="muxer option live=1 (Segment of unknown size, no Cues), then every Cluster's size "
        "rewritten as unknown, as a live recorder writes them.",
    ),
    "mkv_cues_front": _kind(
        "h264",
        "mkv",
        45,
        gop=15,
        mux_options={"cues_to_front": "1", "reserve_index_space": "1024"},
        features={"matroska", "cues_front"},
        notes="Cues written before the first Cluster (cues_to_front).",
    ),
}


def _strip_cues(data: bytes) -> bytes:
    """Turn the Matroska Cues element into a Void element of the same total size."""
    at = data.rfind(b"\x1c\x53\xbb\x6b")
    if at < 0:
        raise ValueError("no Cues element")
    first = data[at + 4]
    n = 9 - first.bit_length()
    size = int.from_bytes(data[at + 4 : at + 4 + n], "big") & ((1 << (7 * n)) - 1)
    # Void ID (1 byte) + the same payload size written in n + 3 bytes: same header length.
    header = b"\xec" + ((1 << (7 * (n + 3))) | size).to_bytes(n + 3, "big")
    return data[:at] + header + data[at + 4 + n :]


def _vint_at(data: bytes, pos: int) -> tuple[int, int]:
    n = 9 - data[pos].bit_length()
    return int.from_bytes(data[pos : pos + n], "big") & ((1 << (7 * n)) - 1), n


def _unknown_cluster_sizes(data: bytes) -> bytes:
    """Rewrite every top-level Cluster's size field as "unknown" (all ones, same length)."""
    out = bytearray(data)
    _, n = _vint_at(data, 4)
    pos = 4 + n + _vint_at(data, 4)[0]  # past the EBML header
    seg_id_len = 4
    _, n = _vint_at(data, pos + seg_id_len)
    pos += seg_id_len + n  # the Segment's payload
    while pos + 4 < len(data):
        eid = data[pos : pos + 4]
        size, n = _vint_at(data, pos + 4)
        if eid == b"\x1f\x43\xb6\x75":
            out[pos + 4 : pos + 4 + n] = ((1 << (7 * n + 1)) - 1 >> 0).to_bytes(n, "big")
            out[pos + 4] = 0xFF >> (n - 1)
        id_len = 9 - data[pos].bit_length()
        size, n = _vint_at(data, pos + id_len)
        pos += id_len + n + size
    return bytes(out)


_ROTATION_MATRICES = {  # counter-clockwise degrees (FFmpeg's and torchcodec's sign) -> tkhd matrix a, b, c, d
    0: (1, 0, 0, 1),
    90: (0, -1, 1, 0),
    -90: (0, 1, -1, 0),
    -180: (-1, 0, 0, -1),
}


def rotated_copy(src: Path, dst: Path, degrees: int) -> Path:
    """``src`` (an MP4) with its video track's tkhd matrix set to a ``degrees`` display rotation
    (counter-clockwise, as FFmpeg and torchcodec report it: 0, 90, -90 or -180).

    ``remux`` of the result to Matroska carries the rotation as the Projection's pose roll.
    """
    data = bytearray(Path(src).read_bytes())
    a, b, c, d = (v * 0x10000 for v in _ROTATION_MATRICES[degrees])
    for box in find_boxes(bytes(data), "moov/trak/tkhd"):
        offset = box.payload_start + 4 + (32 if data[box.payload_start] == 1 else 20) + 16
        struct.pack_into(">9i", data, offset, a, b, 0, c, d, 0, 0, 0, 0x40000000)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def remux(src: Path | str, dst: Path | str, *, options: dict[str, str] | None = None) -> Path:
    """Stream-copy every video and audio stream of ``src`` into ``dst`` (container from its suffix).

    No re-encoding: the packets (and so the frames) are the source's, only the
    container changes (e.g. an MP4 test video as Matroska).
    """
    import av

    dst = Path(dst)
    fmt = _CONTAINER_FORMATS[dst.suffix.lstrip(".")]
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(streams):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dst


def make_kind(name: str, directory: Path | str) -> Path:
    """Build one corpus entry ``KINDS[name]`` (or ``MKV_KINDS[name]``) as ``directory/name.<container>``."""
    kind = KINDS[name] if name in KINDS else MKV_KINDS[name]
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / f"{name}{kind.suffix}"
    make_video(path, **kind.recipe)
    if kind.post == "co64":
        path.write_bytes(_rewrite_stco_as_co64(path.read_bytes()))
    elif kind.post == "strip_mfra":
        path.write_bytes(_strip_top_level(path.read_bytes(), {"mfra"}))
    elif kind.post == "strip_cues":
        path.write_bytes(_strip_cues(path.read_bytes()))
    elif kind.post == "unknown_sizes":
        path.write_bytes(_unknown_cluster_sizes(path.read_bytes()))
    elif kind.post is not None:
        raise ValueError(f"unknown post step {kind.post!r}")
    return path


def make_corpus(directory: Path | str, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Build the corpus (every name in :data:`KINDS`, or ``names``) into ``directory``.

    Returns:
        ``{name: path}`` with paths ``directory/<name>.<container>``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {name: make_kind(name, directory) for name in (names or KINDS)}


if __name__ == "__main__":  # python tests/media.py OUTDIR: build the corpus and time each file
    import sys

    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    total = time.perf_counter()
    for kind_name in KINDS:
        t0 = time.perf_counter()
        p = make_kind(kind_name, out_dir)
        print(f"{kind_name:16s} {p.stat().st_size:8d} B {time.perf_counter() - t0:6.2f} s")
    print(f"total {time.perf_counter() - total:.2f} s")
