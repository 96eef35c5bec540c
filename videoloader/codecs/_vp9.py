"""VP9 (VP9 bitstream specification v0.6; in MP4 per VP-Codec-ISOBMFF).

VP9 samples are what a bare parser takes already (no parameter sets to put
in-band), so conversion passes them through. The colour description is in
every keyframe's uncompressed header, which is what FFmpeg tags frames from;
the MP4 ``vpcC`` box repeats it for readers that have no sample yet.

Whether a VP9 frame is referenced is its ``refresh_frame_flags``, read only
after the loop filter and quantiser fields of the uncompressed header; that is
not done here, so VP9 has no non-reference test (every sample is decoded).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import CorruptVideoError
from ._base import Codec
from ._bits import BitReader
from ._colour_info import ColourInfo, colour_info_from_vpcc, read_vp9_color_config

__all__ = ["VP9", "Vp9Codec", "Vp9Config", "colour_info_from_vp9_frame"]

_FRAME_MARKER = 2
_SYNC_CODE = 0x498342
_KEY_FRAME = 0


def colour_info_from_vp9_frame(frame: bytes | memoryview) -> ColourInfo | None:
    """Colour description from a VP9 keyframe's uncompressed header (6.2).

    Returns None for a frame that carries none (inter frames, shown-existing,
    or a header too short to read).
    """
    if not frame:
        return None
    r = BitReader(bytes(frame[:16]), "VP9 frame header")
    try:
        if r.u(2) != _FRAME_MARKER:
            return None
        profile = r.u(1) | (r.u(1) << 1)
        if profile == 3:
            r.u(1)  # reserved_zero
        if r.u(1):  # show_existing_frame
            return None
        if r.u(1) != _KEY_FRAME:  # frame_type: only a keyframe carries color_config here
            return None
        r.u(2)  # show_frame, error_resilient_mode
        if r.u(24) != _SYNC_CODE:
            return None
        return read_vp9_color_config(r, profile)
    except CorruptVideoError:
        return None


@dataclass(frozen=True)
class Vp9Config:
    """The fields of a ``vpcC`` record (version 1)."""

    profile: int
    level: int
    colour: ColourInfo


class Vp9Codec(Codec[Vp9Config]):
    """VP9: ``vpcC`` records, pass-through conversion, keyframe colour description."""

    name = "vp9"

    def parse_config(self, extradata: bytes) -> Vp9Config:
        """The fields of a ``vpcC`` box body.

        Our MP4 index gives VP9 no extradata (FFmpeg's VP9 decoder needs
        none); this is for callers that hold the box.

        Raises:
            CorruptVideoError: the box is truncated.
            UnsupportedFormatError: not version 1.
        """
        colour = colour_info_from_vpcc(extradata)
        return Vp9Config(profile=extradata[4], level=extradata[5], colour=colour)

    def reorder_depth(self, extradata: bytes | None) -> int | None:
        """0: a hidden (alt-ref) frame travels in a superframe with a shown
        frame, so container timestamps never go backwards."""
        return 0

    def _colour_info(self, extradata: bytes | None, sample: bytes | memoryview | None) -> ColourInfo | None:
        # Only the keyframe header: extradata may be Matroska's CodecPrivate
        # (feature triplets), which a vpcC parser would misread.
        return colour_info_from_vp9_frame(sample) if sample is not None else None


VP9 = Vp9Codec()
"""The VP9 codec module."""
