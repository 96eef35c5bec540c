"""H.264 / AVC (ITU-T H.264, ISO 14496-10; in MP4 per ISO 14496-15 section 5).

The ``avcC`` record, non-reference pictures (``nal_ref_idc == 0``) and the
SPS colour description. Conversion to Annex-B is :class:`._nal.AnnexBConverter`.
"""

from __future__ import annotations

import functools

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._base import NonReferenceTest
from ._bits import BitReader, unescape_rbsp
from ._colour_info import ColourInfo, read_vui_colour
from ._nal import NalCodec, ParameterSets, iter_length_prefixed, need_bytes

__all__ = ["H264", "H264Codec", "colour_info_from_h264_sps", "h264_is_disposable", "parse_avcc"]

# NAL unit types (H.264 table 7-1).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
_NAL_PARTITIONS = (2, 3, 4)
# profile_idc values whose SPS carries chroma format and bit depth (7.3.2.1.1).
_HIGH_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)
# profile_idc values whose avcC carries the high-profile extension fields (ISO 14496-15 5.3.3.1).
_AVCC_EXT_PROFILES = (100, 110, 122, 144)


def h264_is_disposable(sample: bytes | memoryview, nal_length_size: int) -> bool:
    """True when an H.264 sample's slices all have ``nal_ref_idc == 0``.

    Such a picture is never used to predict another (ISO 14496-10 7.4.1), so
    a reader that does not want it can leave it out of the decoder altogether
    (what FFmpeg's ``skip_frame=NONREF`` does, per packet instead of per stream).

    Raises:
        CorruptVideoError: the sample's length fields do not add up.
    """
    vcl = False
    for nal in iter_length_prefixed(sample, nal_length_size):
        nal_type = nal[0] & 0x1F
        if nal_type in (NAL_SLICE, NAL_IDR):
            if nal[0] & 0x60:
                return False
            vcl = True
        elif nal_type in _NAL_PARTITIONS:  # data partitions: keep, rare and not worth parsing
            return False
    return vcl


def parse_avcc(extradata: bytes) -> ParameterSets:
    """Parse an ``AVCDecoderConfigurationRecord`` (ISO 14496-15 5.3.3.1).

    Raises:
        CorruptVideoError: truncated record.
        UnsupportedFormatError: not version 1 (e.g. Annex-B extradata from MKV).
    """
    b = bytes(extradata)
    need_bytes(b, 0, 6, "avcC")
    if b[0] != 1:
        raise UnsupportedFormatError(
            f"avcC: configurationVersion is {b[0]}, expected 1 (extradata that starts with a start "
            f"code is already Annex-B and needs no conversion)"
        )
    nal_length_size = (b[4] & 0x03) + 1
    if nal_length_size == 3:
        raise CorruptVideoError("avcC: lengthSizeMinusOne is 2; only 1, 2 and 4 byte lengths are allowed")
    units: list[bytes] = []
    sps: list[bytes] = []
    pos = 5
    num_sps = b[pos] & 0x1F
    pos += 1
    for _ in range(num_sps):
        need_bytes(b, pos, 2, "avcC SPS length")
        n = int.from_bytes(b[pos : pos + 2], "big")
        need_bytes(b, pos + 2, n, "avcC SPS")
        nal = b[pos + 2 : pos + 2 + n]
        units.append(nal)
        sps.append(nal)
        pos += 2 + n
    need_bytes(b, pos, 1, "avcC numOfPictureParameterSets")
    num_pps = b[pos]
    pos += 1
    for _ in range(num_pps):
        need_bytes(b, pos, 2, "avcC PPS length")
        n = int.from_bytes(b[pos : pos + 2], "big")
        need_bytes(b, pos + 2, n, "avcC PPS")
        units.append(b[pos + 2 : pos + 2 + n])
        pos += 2 + n
    # High-profile extension (chroma format, bit depth, SPS extensions): the SPS
    # extension NAL units are needed by the decoder too.
    if pos + 4 <= len(b) and sps and len(sps[0]) > 1 and sps[0][1] in _AVCC_EXT_PROFILES:
        num_ext = b[pos + 3]
        pos += 4
        for _ in range(num_ext):
            if pos + 2 > len(b):
                break
            n = int.from_bytes(b[pos : pos + 2], "big")
            if pos + 2 + n > len(b):
                break
            units.append(b[pos + 2 : pos + 2 + n])
            pos += 2 + n
    return ParameterSets(nal_length_size=nal_length_size, nal_units=tuple(units), sps=tuple(sps))


def colour_info_from_h264_sps(sps: bytes) -> ColourInfo:
    """Colour description of an H.264 SPS NAL unit (7.3.2.1.1 and E.1.1).

    Raises:
        CorruptVideoError: the SPS is truncated or not an SPS.
    """
    if not sps or sps[0] & 0x1F != NAL_SPS:
        raise CorruptVideoError(f"H.264: expected an SPS NAL unit (type 7), got type {sps[0] & 0x1F if sps else None}")
    r = BitReader(unescape_rbsp(bytes(sps[1:])), "H.264 SPS")
    profile_idc = r.u(8)
    r.u(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    bit_depth = 8
    if profile_idc in _HIGH_PROFILES:
        if r.ue() == 3:  # chroma_format_idc
            r.u(1)  # separate_colour_plane_flag
        bit_depth = r.ue() + 8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8):  # 12 only for 4:4:4, which NVDEC's NV12 path never sees
                if r.u(1):
                    last, nxt = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    r.ue()
    r.ue()  # pic_width_in_mbs_minus1, pic_height_in_map_units_minus1
    if not r.u(1):  # frame_mbs_only_flag
        r.u(1)
    r.u(1)  # direct_8x8_inference_flag
    if r.u(1):  # frame_cropping_flag
        for _ in range(4):
            r.ue()
    if not r.u(1):  # vui_parameters_present_flag
        return ColourInfo(bit_depth=bit_depth)
    return read_vui_colour(r, bit_depth)


class H264Codec(NalCodec):
    """H.264: ``avcC`` records, ``nal_ref_idc`` non-reference pictures, Annex-B."""

    name = "h264"
    sps_type = NAL_SPS
    parameter_set_types = frozenset({NAL_SPS, NAL_PPS})

    @staticmethod
    def nal_type(nal: bytes | memoryview) -> int:
        """``nal_unit_type``: the low 5 bits of the one-byte header."""
        return nal[0] & 0x1F

    def is_random_access_point(self, nal_type: int) -> bool:
        """True for an IDR slice."""
        return nal_type == NAL_IDR

    def parse_config(self, extradata: bytes) -> ParameterSets:
        """The parameter sets of an ``avcC`` record (see :func:`parse_avcc`)."""
        return parse_avcc(extradata)

    def colour_info_from_sps(self, sps: bytes) -> ColourInfo:
        """See :func:`colour_info_from_h264_sps`."""
        return colour_info_from_h264_sps(sps)

    def non_reference_test(self, extradata: bytes | None) -> NonReferenceTest | None:
        """:func:`h264_is_disposable` with the record's NAL length size, when
        the samples are length-prefixed (an ``avcC`` record); None otherwise."""
        if not extradata or extradata[:1] != b"\x01":
            return None
        return functools.partial(h264_is_disposable, nal_length_size=parse_avcc(extradata).nal_length_size)


H264 = H264Codec()
"""The H.264 codec module."""
