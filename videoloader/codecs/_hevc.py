"""HEVC / H.265 (ITU-T H.265, ISO 23008-2; in MP4 per ISO 14496-15 section 8).

The ``hvcC`` record, sub-layer non-reference pictures, the SPS colour
description and how far pictures can be reordered. Conversion to Annex-B is :class:`._nal.AnnexBConverter`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._base import NonReferenceTest
from ._bits import BitReader, unescape_rbsp
from ._colour_info import ColourInfo, read_vui_colour
from ._nal import NalCodec, ParameterSets, iter_length_prefixed, need_bytes

__all__ = [
    "HEVC",
    "HevcCodec",
    "HevcSps",
    "colour_info_from_hevc_sps",
    "hevc_is_disposable",
    "hevc_reorder_depth",
    "hvcc_num_temporal_layers",
    "parse_hevc_sps",
    "parse_hvcc",
]

# NAL unit types (H.265 table 7-1).
NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_IRAP = range(16, 24)  # BLA, IDR, CRA and reserved IRAP types
_NAL_RESERVED_VCL_N_MAX = 14  # TRAIL_N..RSV_VCL_N14: the even types up to 14 are sub-layer non-reference
_NAL_FIRST_NON_VCL = 32
_MAX_DPB_SIZE = 16  # the largest MaxDpbSize of any level (A.4.2)


def hevc_is_disposable(sample: bytes | memoryview, nal_length_size: int) -> bool:
    """True when an HEVC sample's slices are all sub-layer non-reference
    pictures (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, reserved _N types).

    Only safe for streams with a single temporal sub-layer (hvcC
    ``numTemporalLayers == 1``): there a ``_N`` picture predicts nothing
    (ISO 23008-2 3.132); the caller checks that.

    Raises:
        CorruptVideoError: the sample's length fields do not add up.
    """
    vcl = False
    for nal in iter_length_prefixed(sample, nal_length_size):
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type < _NAL_FIRST_NON_VCL:
            if nal_type > _NAL_RESERVED_VCL_N_MAX or nal_type % 2:
                return False
            vcl = True
    return vcl


def hvcc_num_temporal_layers(extradata: bytes) -> int:
    """``numTemporalLayers`` of an hvcC record (0 means unknown).

    Raises:
        CorruptVideoError: the record is truncated.
    """
    b = bytes(extradata)
    need_bytes(b, 0, 23, "hvcC")
    return (b[21] >> 3) & 0x07


def parse_hvcc(extradata: bytes) -> ParameterSets:
    """Parse an ``HEVCDecoderConfigurationRecord`` (ISO 14496-15 8.3.3.1).

    Raises:
        CorruptVideoError: truncated record.
        UnsupportedFormatError: not version 1.
    """
    b = bytes(extradata)
    need_bytes(b, 0, 23, "hvcC")
    if b[0] != 1:
        raise UnsupportedFormatError(
            f"hvcC: configurationVersion is {b[0]}, expected 1 (extradata that starts with a start "
            f"code is already Annex-B and needs no conversion)"
        )
    nal_length_size = (b[21] & 0x03) + 1
    if nal_length_size == 3:
        raise CorruptVideoError("hvcC: lengthSizeMinusOne is 2; only 1, 2 and 4 byte lengths are allowed")
    num_arrays = b[22]
    pos = 23
    units: list[bytes] = []
    sps: list[bytes] = []
    for _ in range(num_arrays):
        need_bytes(b, pos, 3, "hvcC array header")
        nal_type = b[pos] & 0x3F
        count = int.from_bytes(b[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            need_bytes(b, pos, 2, "hvcC NAL length")
            n = int.from_bytes(b[pos : pos + 2], "big")
            need_bytes(b, pos + 2, n, "hvcC NAL unit")
            nal = b[pos + 2 : pos + 2 + n]
            if nal:  # a zero-length entry carries nothing (and has no header to sort by)
                units.append(nal)
                if nal_type == NAL_SPS:
                    sps.append(nal)
            pos += 2 + n
    # Decoders want VPS, SPS, PPS in that order whatever order the box used.
    order = {NAL_VPS: 0, NAL_SPS: 1, NAL_PPS: 2}
    units.sort(key=lambda nal: order.get((nal[0] >> 1) & 0x3F, 3))
    return ParameterSets(nal_length_size=nal_length_size, nal_units=tuple(units), sps=tuple(sps))


def _profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> None:
    r.u(8)  # general_profile_space, tier, profile_idc
    r.u(32)  # general_profile_compatibility_flag[32]
    r.u(4)  # progressive, interlaced, non_packed, frame_only
    r.u(43)
    r.u(1)
    r.u(8)  # general_level_idc
    profile_present, level_present = [], []
    for _ in range(max_sub_layers_minus1):
        profile_present.append(r.u(1))
        level_present.append(r.u(1))
    if max_sub_layers_minus1 > 0:
        for _ in range(max_sub_layers_minus1, 8):
            r.u(2)
    for i in range(max_sub_layers_minus1):
        if profile_present[i]:
            r.u(8)
            r.u(32)
            r.u(4)
            r.u(43)
            r.u(1)
        if level_present[i]:
            r.u(8)


def _scaling_list_data(r: BitReader) -> None:
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not r.u(1):  # scaling_list_pred_mode_flag
                r.ue()  # scaling_list_pred_matrix_id_delta
            else:
                if size_id > 1:
                    r.se()  # scaling_list_dc_coef_minus8
                for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                    r.se()


def _st_ref_pic_sets(r: BitReader, count: int) -> None:
    # Only the bit count matters here, but inter-RPS prediction (7.4.8) makes
    # it depend on the delta POCs of the reference set, so track those.
    sets: list[list[int]] = []
    for idx in range(count):
        inter = r.u(1) if idx != 0 else 0
        if inter:
            # In the SPS delta_idx_minus1 is absent (idx < count): RefRpsIdx = idx - 1.
            sign = r.u(1)
            delta_rps = (1 - 2 * sign) * (r.ue() + 1)
            ref = sets[idx - 1]
            new: list[int] = []
            for j in range(len(ref) + 1):
                used = r.u(1)
                use_delta = 1 if used else r.u(1)
                d_poc = (ref[j] + delta_rps) if j < len(ref) else delta_rps
                if use_delta and d_poc != 0:
                    new.append(d_poc)
            sets.append(new)
        else:
            neg, pos = r.ue(), r.ue()
            deltas: list[int] = []
            poc = 0
            for _ in range(neg):
                poc -= r.ue() + 1
                r.u(1)
                deltas.append(poc)
            poc = 0
            for _ in range(pos):
                poc += r.ue() + 1
                r.u(1)
                deltas.append(poc)
            sets.append(deltas)


@dataclass(frozen=True)
class HevcSps:
    """What the reader needs from an HEVC SPS: colour and reordering.

    Attributes:
        colour: the VUI colour description.
        max_num_reorder_pics: ``sps_max_num_reorder_pics[HighestTid]`` (7.4.3.2.1), the
            most pictures that can precede a picture in decode order and follow it in output order.
        max_dec_pic_buffering: ``sps_max_dec_pic_buffering_minus1[HighestTid] + 1``, the DPB size.
    """

    colour: ColourInfo
    max_num_reorder_pics: int
    max_dec_pic_buffering: int


def parse_hevc_sps(sps: bytes) -> HevcSps:
    """Walk an HEVC SPS NAL unit (7.3.2.2) up to its VUI colour fields (E.2.1).

    Raises:
        CorruptVideoError: the SPS is truncated or not an SPS.
    """
    if len(sps) < 3 or (sps[0] >> 1) & 0x3F != NAL_SPS:
        raise CorruptVideoError("HEVC: expected an SPS NAL unit (type 33)")
    r = BitReader(unescape_rbsp(bytes(sps[2:])), "HEVC SPS")
    r.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    r.u(1)  # sps_temporal_id_nesting_flag
    _profile_tier_level(r, max_sub_layers_minus1)
    r.ue()  # sps_seq_parameter_set_id
    if r.ue() == 3:  # chroma_format_idc
        r.u(1)
    r.ue()
    r.ue()  # pic_width/height_in_luma_samples
    if r.u(1):  # conformance_window_flag
        for _ in range(4):
            r.ue()
    bit_depth = r.ue() + 8
    r.ue()  # bit_depth_chroma_minus8
    log2_max_poc_lsb = r.ue() + 4
    ordering_all = r.u(1)
    # The last pass is HighestTid = sps_max_sub_layers_minus1, the whole stream's values.
    dec_buffering = reorder = 0
    for _ in range(0 if ordering_all else max_sub_layers_minus1, max_sub_layers_minus1 + 1):
        dec_buffering = r.ue() + 1  # sps_max_dec_pic_buffering_minus1
        reorder = r.ue()  # sps_max_num_reorder_pics
        r.ue()  # sps_max_latency_increase_plus1
    for _ in range(6):  # log2 cb/tb sizes, transform hierarchy depths
        r.ue()
    if r.u(1) and r.u(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _scaling_list_data(r)
    r.u(1)  # amp_enabled_flag
    r.u(1)  # sample_adaptive_offset_enabled_flag
    if r.u(1):  # pcm_enabled_flag
        r.u(8)
        r.ue()
        r.ue()
        r.u(1)
    _st_ref_pic_sets(r, r.ue())
    if r.u(1):  # long_term_ref_pics_present_flag
        for _ in range(r.ue()):
            r.u(log2_max_poc_lsb)
            r.u(1)
    r.u(1)  # sps_temporal_mvp_enabled_flag
    r.u(1)  # strong_intra_smoothing_enabled_flag
    colour = read_vui_colour(r, bit_depth) if r.u(1) else ColourInfo(bit_depth=bit_depth)  # vui_parameters_present
    return HevcSps(colour=colour, max_num_reorder_pics=reorder, max_dec_pic_buffering=dec_buffering)


def colour_info_from_hevc_sps(sps: bytes) -> ColourInfo:
    """Colour description of an HEVC SPS NAL unit (7.3.2.2 and E.2.1).

    Raises:
        CorruptVideoError: the SPS is truncated or not an SPS.
    """
    return parse_hevc_sps(sps).colour


def hevc_reorder_depth(sps: bytes) -> int:
    """How many pictures can precede a picture in decode order yet follow it in output order.

    ``sps_max_num_reorder_pics[HighestTid]`` of the SPS (7.4.3.2.1), which
    every HEVC SPS carries; FFmpeg's decoder delay (``has_b_frames``) is this value.

    Raises:
        CorruptVideoError: the SPS is truncated, out of range or not an SPS.
    """
    info = parse_hevc_sps(sps)
    if info.max_dec_pic_buffering > _MAX_DPB_SIZE or info.max_num_reorder_pics >= _MAX_DPB_SIZE:
        raise CorruptVideoError(
            f"HEVC SPS: sps_max_dec_pic_buffering_minus1 {info.max_dec_pic_buffering - 1} and "
            f"sps_max_num_reorder_pics {info.max_num_reorder_pics} must be at most {_MAX_DPB_SIZE - 1}"
        )
    return info.max_num_reorder_pics


class HevcCodec(NalCodec):
    """HEVC: ``hvcC`` records, ``_N`` non-reference pictures, Annex-B."""

    name = "hevc"
    sps_type = NAL_SPS
    parameter_set_types = frozenset({NAL_VPS, NAL_SPS, NAL_PPS})

    @staticmethod
    def nal_type(nal: bytes | memoryview) -> int:
        """``nal_unit_type``: bits 1..6 of the two-byte header."""
        return (nal[0] >> 1) & 0x3F

    def is_random_access_point(self, nal_type: int) -> bool:
        """True for an IRAP slice (BLA, IDR, CRA)."""
        return nal_type in NAL_IRAP

    def parse_config(self, extradata: bytes) -> ParameterSets:
        """The parameter sets of an ``hvcC`` record (see :func:`parse_hvcc`)."""
        return parse_hvcc(extradata)

    def colour_info_from_sps(self, sps: bytes) -> ColourInfo:
        """See :func:`colour_info_from_hevc_sps`."""
        return colour_info_from_hevc_sps(sps)

    def reorder_depth_from_sps(self, sps: bytes) -> int:
        """See :func:`hevc_reorder_depth`."""
        return hevc_reorder_depth(sps)

    def non_reference_test(self, extradata: bytes | None) -> NonReferenceTest | None:
        """:func:`hevc_is_disposable` with the record's NAL length size, for
        an ``hvcC`` stream with a single temporal sub-layer; None otherwise
        (with several sub-layers a ``_N`` picture may still be referenced)."""
        if not extradata or extradata[:1] != b"\x01" or hvcc_num_temporal_layers(extradata) != 1:
            return None
        return functools.partial(hevc_is_disposable, nal_length_size=parse_hvcc(extradata).nal_length_size)


HEVC = HevcCodec()
"""The HEVC codec module."""
