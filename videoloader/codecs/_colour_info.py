"""Colour descriptions: which matrix, range and bit depth a stream's frames use.

NVDEC hands back raw NV12/P016 planes without colour tags, so our YUV->RGB
conversion (``videoloader.decoders._colour``) must pick the matrix and range
FFmpeg's software decoder would tag the frame with. The codes live in a
different syntax per codec; this module reads each syntax once the codec
module has walked its header up to it:

- H.264/HEVC: the VUI ``video_signal_type`` fields of the SPS (H.264 E.1.1, H.265 E.2.1);
- AV1: ``color_config()`` of the sequence header (AV1 5.5.2), which ``av1C``
  carries in its config OBUs;
- VP9: ``color_config()`` of a keyframe header (VP9 6.2.2), or the ``vpcC``
  box of MP4 (VP-Codec-ISOBMFF 2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._bits import BitReader

__all__ = [
    "ColourInfo",
    "colour_info_from_vpcc",
    "matrix_name",
    "read_av1_color_config",
    "read_vp9_color_config",
    "read_vui_colour",
]


@dataclass(frozen=True)
class ColourInfo:
    """The colour description FFmpeg's decoder would tag frames with.

    Codes are ISO/IEC 23091-2 (H.273) values: ``matrix_coefficients`` 1 =
    BT.709, 5/6 = BT.601, 9 = BT.2020 NCL, 2 = unspecified (FFmpeg then
    converts with BT.601)."""

    matrix_coefficients: int = 2
    full_range: bool = False
    bit_depth: int = 8
    colour_primaries: int = 2
    transfer_characteristics: int = 2

    @property
    def matrix(self) -> str:
        """The conversion matrix name ``videoloader.decoders._colour`` uses."""
        return matrix_name(self.matrix_coefficients)


_MATRIX_NAMES = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}


def matrix_name(matrix_coefficients: int) -> str:
    """H.273 MatrixCoefficients -> conversion matrix name; unspecified and
    unknown codes give ``bt601``, swscale's default (``SWS_CS_DEFAULT``)."""
    return _MATRIX_NAMES.get(int(matrix_coefficients), "bt601")


def read_vui_colour(r: BitReader, bit_depth: int) -> ColourInfo:
    """The colour fields of an H.264/HEVC VUI, ``r`` at ``vui_parameters()``.

    The leading VUI fields are the same in H.264 (E.1.1) and H.265 (E.2.1).

    Raises:
        CorruptVideoError: the VUI is truncated.
    """
    if r.u(1):  # aspect_ratio_info_present_flag
        if r.u(8) == 255:  # Extended_SAR
            r.u(32)
    if r.u(1):  # overscan_info_present_flag
        r.u(1)
    if not r.u(1):  # video_signal_type_present_flag
        return ColourInfo(bit_depth=bit_depth)
    r.u(3)  # video_format
    full = bool(r.u(1))
    if r.u(1):  # colour_description_present_flag
        cp, tc, mc = r.u(8), r.u(8), r.u(8)
        return ColourInfo(
            matrix_coefficients=mc,
            full_range=full,
            bit_depth=bit_depth,
            colour_primaries=cp,
            transfer_characteristics=tc,
        )
    return ColourInfo(full_range=full, bit_depth=bit_depth)


def read_av1_color_config(r: BitReader, seq_profile: int) -> ColourInfo:
    """AV1 ``color_config()`` (5.5.2), ``r`` at its first bit (``high_bitdepth``).

    Raises:
        CorruptVideoError: the sequence header is truncated.
    """
    high_bitdepth = r.u(1)
    bit_depth = 8
    if seq_profile == 2 and high_bitdepth:
        bit_depth = 12 if r.u(1) else 10
    elif high_bitdepth:
        bit_depth = 10
    mono = 0 if seq_profile == 1 else r.u(1)
    cp = tc = mc = 2
    if r.u(1):  # color_description_present_flag
        cp, tc, mc = r.u(8), r.u(8), r.u(8)
    if mono:
        return ColourInfo(mc, bool(r.u(1)), bit_depth, cp, tc)
    if cp == 1 and tc == 13 and mc == 0:  # sRGB: always full range, no color_range bit
        return ColourInfo(mc, True, bit_depth, cp, tc)
    return ColourInfo(mc, bool(r.u(1)), bit_depth, cp, tc)


# VP9 color_space (VP9 bitstream spec 7.2.2) -> H.273 matrix coefficients.
_VP9_MATRIX = {0: 2, 1: 5, 2: 1, 3: 6, 4: 7, 5: 9, 6: 2, 7: 0}


def read_vp9_color_config(r: BitReader, profile: int) -> ColourInfo:
    """VP9 ``color_config()`` (6.2.2) up to the range bit, ``r`` at its first bit.

    Raises:
        CorruptVideoError: the frame header is truncated.
    """
    bit_depth = 8
    if profile >= 2:
        bit_depth = 12 if r.u(1) else 10
    cs = r.u(3)
    full = True if cs == 7 else bool(r.u(1))  # CS_RGB is always full range
    return ColourInfo(matrix_coefficients=_VP9_MATRIX.get(cs, 2), full_range=full, bit_depth=bit_depth)


def colour_info_from_vpcc(body: bytes) -> ColourInfo:
    """Colour description of a ``vpcC`` box body (VP-Codec-ISOBMFF 2.2, version 1).

    FFmpeg tags VP9 frames from the keyframe header, not from this box; it is
    what an MP4 says before any sample is read.

    Raises:
        CorruptVideoError: the box is shorter than its fixed fields.
        UnsupportedFormatError: not version 1 (the pre-2017 draft layout).
    """
    b = bytes(body)
    if len(b) < 12:
        raise CorruptVideoError(f"vpcC: {len(b)} bytes, need at least 12; the codec configuration is truncated")
    if b[0] != 1:
        raise UnsupportedFormatError(f"vpcC: version {b[0]}, only version 1 is understood")
    return ColourInfo(
        matrix_coefficients=b[9],
        full_range=bool(b[6] & 0x01),
        bit_depth=b[6] >> 4,
        colour_primaries=b[7],
        transfer_characteristics=b[8],
    )
