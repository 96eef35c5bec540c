"""Info and Tracks: the timestamp scale and the video track's codec setup.

Maps Matroska CodecIDs to FFmpeg decoder names and CodecPrivate to the
extradata FFmpeg's matroska demuxer exposes: the avcC / hvcC / av1C body for
H.264 / HEVC / AV1 (as in MP4), nothing for VP9 (its CodecPrivate holds only
optional feature flags, which FFmpeg does not pass to the decoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._errors import MatroskaParseError, TrackNotFoundError, UnsupportedFormatError
from ..mp4._codec import _avcc_bit_depth
from ._ebml import ID, Element, Window, children, read_float, read_string, read_uint

__all__ = ["CODECS", "SegmentInfo", "TrackEntry", "codec_setup", "parse_info", "parse_tracks", "select_track"]

#: Matroska CodecID -> FFmpeg decoder name, for the codecs the index serves.
CODECS = {
    "V_MPEG4/ISO/AVC": "h264",
    "V_MPEGH/ISO/HEVC": "hevc",
    "V_VP9": "vp9",
    "V_AV1": "av1",
    "V_VP8": "vp8",
}
#: CodecPrivate larger than this is refused (real ones are a few hundred bytes).
MAX_CODEC_PRIVATE = 1 << 20
_TRACK_TYPES = {1: "video", 2: "audio", 3: "complex", 16: "logo", 17: "subtitle", 18: "buttons", 32: "control"}


@dataclass(frozen=True)
class SegmentInfo:
    timestamp_scale: int
    """Nanoseconds per timestamp tick (default 1,000,000: milliseconds)."""
    duration: float | None
    """Segment duration in ticks, when given."""


@dataclass(frozen=True)
class TrackEntry:
    number: int
    track_type: int
    codec_id: str
    codec_private: bytes | None
    default_duration_ns: int
    width: int
    height: int
    bits_per_channel: int | None
    encoded: bool
    """ContentEncodings present (compression or encryption of the blocks)."""
    rotation_cw: int = 0
    """Degrees the frame turns clockwise for display (0/90/180/270), from the
    Projection's pose roll, as FFmpeg reads it (rectangular projection only)."""

    @property
    def type_name(self) -> str:
        return _TRACK_TYPES.get(self.track_type, f"type {self.track_type}")


def parse_info(w: Window, info: Element) -> SegmentInfo:
    scale = 1_000_000
    duration = None
    for e in children(w, info):
        if e.id == ID.TIMESTAMP_SCALE:
            scale = read_uint(w, e, "TimestampScale")
        elif e.id == ID.DURATION:
            duration = read_float(w, e, "Duration")
    if not 0 < scale < 1 << 40:
        raise MatroskaParseError(f"{w.url}: TimestampScale is {scale} ns; expected 1..2^40 (the file is corrupt).")
    return SegmentInfo(scale, duration)


def parse_tracks(w: Window, tracks: Element) -> list[TrackEntry]:
    out = []
    for entry in children(w, tracks):
        if entry.id != ID.TRACK_ENTRY:
            continue
        number = track_type = default_duration = width = height = 0
        codec_id = ""
        private: bytes | None = None
        bits: int | None = None
        encoded = False
        rotation_cw = 0
        for e in children(w, entry):
            if e.id == ID.TRACK_NUMBER:
                number = read_uint(w, e, "TrackNumber")
            elif e.id == ID.TRACK_TYPE:
                track_type = read_uint(w, e, "TrackType")
            elif e.id == ID.CODEC_ID:
                codec_id = read_string(w, e, "CodecID")
            elif e.id == ID.CODEC_PRIVATE:
                if e.size > MAX_CODEC_PRIVATE:
                    raise MatroskaParseError(
                        f"{w.url}: CodecPrivate at offset {e.start} claims {e.size} bytes; at most "
                        f"{MAX_CODEC_PRIVATE} (the file is corrupt)."
                    )
                private = w.get(e.data_start, e.end)
            elif e.id == ID.DEFAULT_DURATION:
                default_duration = read_uint(w, e, "DefaultDuration")
            elif e.id == ID.CONTENT_ENCODINGS:
                encoded = True
            elif e.id == ID.VIDEO:
                for v in children(w, e):
                    if v.id == ID.PIXEL_WIDTH:
                        width = read_uint(w, v, "PixelWidth")
                    elif v.id == ID.PIXEL_HEIGHT:
                        height = read_uint(w, v, "PixelHeight")
                    elif v.id == ID.COLOUR:
                        for c in children(w, v):
                            if c.id == ID.BITS_PER_CHANNEL:
                                bits = read_uint(w, c, "BitsPerChannel") or None
                    elif v.id == ID.PROJECTION:
                        rotation_cw = _projection_rotation(w, v)
        if number <= 0 or number >= 1 << 32:
            raise MatroskaParseError(f"{w.url}: TrackEntry at offset {entry.start} has TrackNumber {number}.")
        if width >= 1 << 16 or height >= 1 << 16:
            raise MatroskaParseError(f"{w.url}: track {number} claims {width}x{height} pixels (the file is corrupt).")
        out.append(
            TrackEntry(
                number, track_type, codec_id, private, default_duration, width, height, bits, encoded, rotation_cw
            )
        )
    return out


def _projection_rotation(w: Window, projection: Element) -> int:
    """Clockwise display rotation from a Projection element: a rectangular
    projection (type 0) with no yaw or pitch and a roll that is a multiple of
    90 degrees (the roll is counter-clockwise, as FFmpeg's display matrix
    angle); anything else displays unrotated."""
    kind, yaw, pitch, roll = 0, 0.0, 0.0, 0.0
    for e in children(w, projection):
        if e.id == ID.PROJECTION_TYPE:
            kind = read_uint(w, e, "ProjectionType")
        elif e.id == ID.PROJECTION_POSE_YAW:
            yaw = read_float(w, e, "ProjectionPoseYaw")
        elif e.id == ID.PROJECTION_POSE_PITCH:
            pitch = read_float(w, e, "ProjectionPosePitch")
        elif e.id == ID.PROJECTION_POSE_ROLL:
            roll = read_float(w, e, "ProjectionPoseRoll")
    if kind != 0 or yaw != 0 or pitch != 0 or not math.isfinite(roll):
        return 0
    quarter = round(roll / 90)
    if abs(roll - 90 * quarter) > 0.01:
        return 0
    return (-90 * quarter) % 360


def select_track(tracks: list[TrackEntry], track: int | None, url: str) -> TrackEntry:
    """The track to index: TrackNumber ``track`` when given, else the first video track."""
    video = [t.number for t in tracks if t.track_type == 1]
    if track is not None:
        for t in tracks:
            if t.number == track:
                if t.track_type != 1:
                    raise TrackNotFoundError(
                        f"{url}: track {track} is a {t.type_name} track, not video; the video tracks are {video}."
                    )
                return t
        raise TrackNotFoundError(
            f"{url}: no track with TrackNumber {track}; the video tracks are {video} "
            f"(all tracks: {[t.number for t in tracks]})."
        )
    for t in tracks:
        if t.track_type == 1:
            return t
    raise UnsupportedFormatError(f"{url}: no video track (tracks: {[t.type_name for t in tracks] or 'none'}).")


def codec_setup(t: TrackEntry, url: str) -> tuple[str, bytes | None, int | None]:
    """``(FFmpeg codec name, extradata, luma bit depth)`` of a video track.

    Raises:
        UnsupportedFormatError: a codec the index does not serve, or encoded
            (compressed or encrypted) blocks: the reader demuxes with FFmpeg.
        MatroskaParseError: H.264 / HEVC / AV1 without a usable CodecPrivate.
    """
    codec = CODECS.get(t.codec_id)
    if codec is None:
        raise UnsupportedFormatError(
            f"{url}: track {t.number} has codec {t.codec_id!r}, which the index does not read."
        )
    if t.encoded:
        raise UnsupportedFormatError(
            f"{url}: track {t.number} has ContentEncodings (compressed or encrypted blocks); "
            "its samples are not the bytes in the file."
        )
    body = t.codec_private
    bit_depth = t.bits_per_channel
    if codec in ("h264", "hevc", "av1") and not body:
        raise MatroskaParseError(f"{url}: {t.codec_id} track {t.number} has no CodecPrivate; it cannot be decoded.")
    if codec == "h264" and body:
        bit_depth = _avcc_bit_depth(body)
    elif codec == "hevc" and body and len(body) > 18:
        bit_depth = (body[17] & 0x07) + 8
    elif codec == "av1" and body and len(body) >= 3:
        high, twelve = bool(body[2] & 0x40), bool(body[2] & 0x20)
        bit_depth = 12 if (high and twelve) else 10 if high else 8
    elif codec == "vp9" and body and bit_depth is None:
        bit_depth = _vp9_private_bit_depth(body)
    extradata = body if codec in ("h264", "hevc", "av1") else None
    return codec, extradata, bit_depth


def _vp9_private_bit_depth(body: bytes) -> int | None:
    """Bit depth from VP9 CodecPrivate features (ID, length, value triples; ID 3 is the bit depth)."""
    pos = 0
    while pos + 2 <= len(body):
        fid, n = body[pos], body[pos + 1]
        if fid == 3 and n == 1 and pos + 3 <= len(body):
            return body[pos + 2]
        pos += 2 + n
    return None
