"""H.264 / AVC (ITU-T H.264, ISO 14496-10; in MP4 per ISO 14496-15 section 5).

The ``avcC`` record, non-reference pictures (``nal_ref_idc == 0``), the
SPS colour description and how far frames can be reordered. Conversion to Annex-B is :class:`._nal.AnnexBConverter`.
"""

from __future__ import annotations

import dataclasses
import functools

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._base import NonReferenceTest
from ._bits import BitReader, unescape_rbsp
from ._colour_info import ColourInfo, read_vui_colour
from ._nal import NalCodec, ParameterSets, iter_length_prefixed, need_bytes

__all__ = [
    "H264",
    "H264Codec",
    "H264Sps",
    "colour_info_from_h264_sps",
    "h264_is_disposable",
    "h264_max_dpb_frames",
    "h264_reorder_depth",
    "parse_avcc",
    "parse_h264_sps",
]

# NAL unit types (H.264 table 7-1).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
_NAL_PARTITIONS = (2, 3, 4)
# profile_idc values whose SPS carries chroma format and bit depth (7.3.2.1.1).
_HIGH_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)
# profile_idc values whose SPS infers max_num_reorder_frames = 0 with constraint_set3 (intra profiles, E.2.1).
_INTRA_WITH_SET3_PROFILES = (44, 86, 100, 110, 122, 244)
# profile_idc values where constraint_set5_flag means "no B slices" (7.4.2.1.1; Constrained High).
_CONSTRAINT_SET5_NO_B_PROFILES = (77, 88, 100)
_PROFILE_BASELINE = 66
_MAX_DPB_FRAMES = 16
# level_idc -> MaxDpbMbs (Table A-1); 9 is level 1b, 11 is level 1.1 (or 1b with constraint_set3).
_MAX_DPB_MBS = {
    9: 396,
    10: 396,
    11: 900,
    12: 2376,
    13: 2376,
    20: 2376,
    21: 4752,
    22: 8100,
    30: 8100,
    31: 18000,
    32: 20480,
    40: 32768,
    41: 32768,
    42: 34816,
    50: 110400,
    51: 184320,
    52: 184320,
    60: 696320,
    61: 696320,
    62: 696320,
}
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


@dataclasses.dataclass(frozen=True)
class H264Sps:
    """What the reader needs from an H.264 SPS: colour, picture size, reordering.

    Attributes:
        profile_idc: ``profile_idc`` (66 Baseline, 77 Main, 100 High...).
        constraint_flags: ``constraint_set0_flag`` .. ``constraint_set5_flag``
            and the two reserved bits, set0 in the top bit (bit 7).
        level_idc: ``level_idc`` (10 x the level number; 9 is level 1b).
        pic_order_cnt_type: 0, 1 or 2 (2: output order is decode order, 8.2.1.3).
        width_mbs: ``PicWidthInMbs``.
        frame_height_mbs: ``FrameHeightInMbs`` (both fields of an interlaced frame).
        colour: the VUI colour description.
        max_num_reorder_frames: the VUI ``bitstream_restriction`` value, None when not signalled.
        intact: the walk read every field and landed on well-formed
            ``rbsp_trailing_bits`` (7.3.2.11). False for a VUI cut short or
            misread after its colour fields (the colour description, which
            comes first, may still be good); the fields after it are then not
            to be trusted.
    """

    profile_idc: int
    constraint_flags: int
    level_idc: int
    pic_order_cnt_type: int
    width_mbs: int
    frame_height_mbs: int
    colour: ColourInfo
    max_num_reorder_frames: int | None = None
    intact: bool = False

    def constraint_set(self, n: int) -> bool:
        """``constraint_set<n>_flag``."""
        return bool(self.constraint_flags & (0x80 >> n))


def parse_h264_sps(sps: bytes) -> H264Sps:
    """Walk an H.264 SPS NAL unit (7.3.2.1.1) and its VUI (E.1.1).

    A VUI cut short after its colour fields still gives the colour
    description (``intact`` is then False); anything cut short before raises.

    Raises:
        CorruptVideoError: the SPS is truncated before its VUI colour fields, or not an SPS.
    """
    if not sps or sps[0] & 0x1F != NAL_SPS:
        raise CorruptVideoError(f"H.264: expected an SPS NAL unit (type 7), got type {sps[0] & 0x1F if sps else None}")
    r = BitReader(unescape_rbsp(bytes(sps[1:])), "H.264 SPS")
    profile_idc = r.u(8)
    constraint_flags = r.u(8)
    level_idc = r.u(8)
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
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    if r.u(1):  # frame_cropping_flag
        for _ in range(4):
            r.ue()
    info = H264Sps(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        pic_order_cnt_type=poc_type,
        width_mbs=width_mbs,
        frame_height_mbs=(2 - frame_mbs_only) * height_map_units,
        colour=ColourInfo(bit_depth=bit_depth),
    )
    if not r.u(1):  # vui_parameters_present_flag
        return dataclasses.replace(info, intact=r.at_rbsp_trailing_bits())
    info = dataclasses.replace(info, colour=read_vui_colour(r, bit_depth))
    try:
        reorder = _read_vui_reorder(r)
    except CorruptVideoError:
        return info
    return dataclasses.replace(info, max_num_reorder_frames=reorder, intact=r.at_rbsp_trailing_bits())


def _read_hrd_parameters(r: BitReader) -> None:
    """Skip ``hrd_parameters()`` (E.1.2)."""
    cpb_cnt = r.ue() + 1
    if cpb_cnt > 32:
        raise CorruptVideoError(f"H.264 SPS: cpb_cnt_minus1 is {cpb_cnt - 1}, at most 31 is allowed")
    r.u(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(cpb_cnt):
        r.ue()  # bit_rate_value_minus1
        r.ue()  # cpb_size_value_minus1
        r.u(1)  # cbr_flag
    r.u(20)  # four delay/offset field lengths


def _read_vui_reorder(r: BitReader) -> int | None:
    """``max_num_reorder_frames`` from the VUI after its colour fields (E.1.1), None when absent.

    Raises:
        CorruptVideoError: the VUI is truncated or the value is out of range.
    """
    if r.u(1):  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    if r.u(1):  # timing_info_present_flag
        r.u(32)  # num_units_in_tick
        r.u(32)  # time_scale
        r.u(1)  # fixed_frame_rate_flag
    nal_hrd = r.u(1)
    if nal_hrd:
        _read_hrd_parameters(r)
    vcl_hrd = r.u(1)
    if vcl_hrd:
        _read_hrd_parameters(r)
    if nal_hrd or vcl_hrd:
        r.u(1)  # low_delay_hrd_flag
    r.u(1)  # pic_struct_present_flag
    if not r.u(1):  # bitstream_restriction_flag
        return None
    r.u(1)  # motion_vectors_over_pic_boundaries_flag
    for _ in range(4):  # max_bytes_per_pic_denom, max_bits_per_mb_denom, log2_max_mv_length_*
        r.ue()
    reorder = r.ue()
    r.ue()  # max_dec_frame_buffering
    if reorder > _MAX_DPB_FRAMES:
        raise CorruptVideoError(f"H.264 SPS: max_num_reorder_frames is {reorder}, at most {_MAX_DPB_FRAMES}")
    return reorder


def colour_info_from_h264_sps(sps: bytes) -> ColourInfo:
    """Colour description of an H.264 SPS NAL unit (7.3.2.1.1 and E.1.1).

    Raises:
        CorruptVideoError: the SPS is truncated or not an SPS.
    """
    return parse_h264_sps(sps).colour


def h264_reorder_depth(sps: bytes) -> int:
    """How many frames can precede a frame in decode order yet follow it in output order.

    The VUI's ``max_num_reorder_frames`` when signalled (E.2.1); else 0 where
    output order must be decode order (``pic_order_cnt_type`` 2, 8.2.1.3;
    profiles or constraint flags that rule out B slices: Baseline and
    constrained Baseline, constraint_set0 (Baseline-conforming), constraint_set5
    on Main/Extended/High (Constrained High); the intra profiles, which E.2.1
    infers 0 for); else the level's DPB size in frames (MaxDpbFrames, A.3.1,
    at most 16), the largest reordering the level allows.

    Baseline's 0 assumes no P-frame reordering through picture order counts,
    which the standard allows but no encoder we know emits; FFmpeg's decoder
    makes the same assumption (it starts with no delay and grows it when it
    sees a frame out of order).

    Raises:
        CorruptVideoError: the SPS is truncated, out of range, does not end in
            its trailing bits where its fields say, or is not an SPS.
    """
    info = parse_h264_sps(sps)
    if not info.intact:
        raise CorruptVideoError("H.264 SPS: truncated or misread (it does not end where its fields say)")
    if info.pic_order_cnt_type > 2:
        raise CorruptVideoError(f"H.264 SPS: pic_order_cnt_type is {info.pic_order_cnt_type}, at most 2")
    if info.max_num_reorder_frames is not None:
        return info.max_num_reorder_frames
    profile = info.profile_idc
    no_b_slices = (
        profile == _PROFILE_BASELINE
        or info.constraint_set(0)
        or (profile in _CONSTRAINT_SET5_NO_B_PROFILES and info.constraint_set(5))
    )
    intra_only = profile in _INTRA_WITH_SET3_PROFILES and info.constraint_set(3)
    if info.pic_order_cnt_type == 2 or no_b_slices or intra_only:
        return 0
    return h264_max_dpb_frames(info.level_idc, info.width_mbs, info.frame_height_mbs)


def h264_max_dpb_frames(level_idc: int, width_mbs: int, frame_height_mbs: int) -> int:
    """``MaxDpbFrames`` (A.3.1 item h, Table A-1): the level's DPB size in frames of this size, at most 16.

    An unknown level, or a picture too big for its level to hold one frame
    of (a stream that breaks its own level), gives 16, the most any level
    allows. Level 1.1 and level 1b share ``level_idc`` 11 in
    Baseline/Main/Extended; the larger (1.1) is used.
    """
    mbs = _MAX_DPB_MBS.get(level_idc)
    frames = mbs // (width_mbs * frame_height_mbs) if mbs is not None and width_mbs * frame_height_mbs > 0 else 0
    return min(frames, _MAX_DPB_FRAMES) if frames > 0 else _MAX_DPB_FRAMES


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

    def reorder_depth_from_sps(self, sps: bytes) -> int:
        """See :func:`h264_reorder_depth`."""
        return h264_reorder_depth(sps)

    def non_reference_test(self, extradata: bytes | None) -> NonReferenceTest | None:
        """:func:`h264_is_disposable` with the record's NAL length size, when
        the samples are length-prefixed (an ``avcC`` record); None otherwise."""
        if not extradata or extradata[:1] != b"\x01":
            return None
        return functools.partial(h264_is_disposable, nal_length_size=parse_avcc(extradata).nal_length_size)


H264 = H264Codec()
"""The H.264 codec module."""
