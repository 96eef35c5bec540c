"""MP4 samples -> elementary streams a hardware parser accepts, plus the
colour description hidden in the codec configuration.

NVDEC (PyNvVideoCodec) takes no extradata: H.264/HEVC must arrive as Annex-B
(start codes, parameter sets in-band) and AV1 must carry its sequence header.
MP4 stores H.264/HEVC samples length-prefixed (AVCC/HVCC, ISO 14496-15) with
SPS/PPS (and VPS) in the ``avcC``/``hvcC`` box, and AV1 samples without the
sequence header, which lives in ``av1C``. This module converts between the two
with the standard library and numpy only (STYLE.md rule 2), so the NVDEC
device check can run without PyAV.

It also reads the colour description (matrix coefficients, full/limited range,
bit depth) from the H.264/HEVC SPS VUI, the AV1 sequence header and the VP9
keyframe header: NVDEC hands back raw NV12/P016 planes, and our colour
conversion must use the same matrix FFmpeg's decoder would tag the frame with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .._errors import CorruptVideoError, UnsupportedFormatError

__all__ = [
    "AnnexBConverter",
    "ColourInfo",
    "ParameterSets",
    "av1_config_obus",
    "colour_info_from_av1_sequence_header",
    "colour_info_from_h264_sps",
    "colour_info_from_hevc_sps",
    "colour_info_from_vp9_frame",
    "iter_annexb_nal_units",
    "iter_length_prefixed",
    "iter_obus",
    "length_prefixed_to_annexb",
    "matrix_name",
    "parse_avcc",
    "parse_hvcc",
    "stream_colour_info",
]

START_CODE = b"\x00\x00\x00\x01"

# NAL unit types (ITU-T H.264 table 7-1, H.265 table 7-1).
H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_PPS = 8
HEVC_NAL_VPS = 32
HEVC_NAL_SPS = 33
HEVC_NAL_PPS = 34
HEVC_NAL_IRAP = range(16, 24)  # BLA, IDR, CRA and reserved IRAP types
# AV1 OBU types (AV1 spec 6.2.2).
OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2
TEMPORAL_DELIMITER_OBU = b"\x12\x00"  # type 2, has_size_field=1, size 0


# ----------------------------------------------------------------- length-prefixed <-> Annex-B


def iter_length_prefixed(sample: bytes | memoryview, nal_length_size: int) -> Iterator[memoryview]:
    """Yield the NAL units of one AVCC/HVCC sample (length-prefixed, big-endian).

    Raises:
        CorruptVideoError: a length field runs past the end of the sample.
    """
    if nal_length_size not in (1, 2, 3, 4):
        raise CorruptVideoError(f"NAL length size must be 1, 2, 3 or 4 bytes, got {nal_length_size}")
    view = memoryview(sample)
    pos, end = 0, len(view)
    while pos < end:
        if pos + nal_length_size > end:
            raise CorruptVideoError(
                f"sample of {end} bytes: a {nal_length_size}-byte NAL length field at offset {pos} "
                f"runs past its end; the sample is truncated or not length-prefixed"
            )
        size = int.from_bytes(view[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if pos + size > end:
            raise CorruptVideoError(
                f"sample of {end} bytes: NAL unit of {size} bytes at offset {pos} runs past its end; "
                f"the sample is truncated or the NAL length size ({nal_length_size}) is wrong"
            )
        if size:
            yield view[pos : pos + size]
        pos += size


def h264_is_disposable(sample: bytes | memoryview, nal_length_size: int) -> bool:
    """True when an H.264 sample's slices all have ``nal_ref_idc == 0``.

    Such a picture is never used to predict another (ISO 14496-10 7.4.1), so
    a reader that does not want it can leave it out of the decoder altogether
    (what FFmpeg's ``skip_frame=NONREF`` does, per packet instead of per stream).
    """
    vcl = False
    for nal in iter_length_prefixed(sample, nal_length_size):
        nal_type = nal[0] & 0x1F
        if nal_type in (1, 5):  # coded slice (non-IDR / IDR)
            if nal[0] & 0x60:
                return False
            vcl = True
        elif nal_type in (2, 3, 4):  # data partitions: keep, rare and not worth parsing
            return False
    return vcl


def hevc_is_disposable(sample: bytes | memoryview, nal_length_size: int) -> bool:
    """True when an HEVC sample's slices are all sub-layer non-reference
    pictures (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, reserved _N types).

    Only safe for streams with a single temporal sub-layer (hvcC
    ``numTemporalLayers == 1``): there a ``_N`` picture predicts nothing
    (ISO 23008-2 3.132); the caller checks that.
    """
    vcl = False
    for nal in iter_length_prefixed(sample, nal_length_size):
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type < 32:  # VCL
            if nal_type > 14 or nal_type % 2:
                return False
            vcl = True
    return vcl


def hvcc_num_temporal_layers(extradata: bytes) -> int:
    """``numTemporalLayers`` of an hvcC record (0 means unknown)."""
    b = bytes(extradata)
    _need(b, 0, 23, "hvcC")
    return (b[21] >> 3) & 0x07


def length_prefixed_to_annexb(sample: bytes | memoryview, nal_length_size: int) -> bytes:
    """One AVCC/HVCC sample as Annex-B: every length field becomes a start code.

    ``00 00 00 05 <5 bytes>`` -> ``00 00 00 01 <5 bytes>``.
    """
    return b"".join(START_CODE + bytes(nal) for nal in iter_length_prefixed(sample, nal_length_size))


def iter_annexb_nal_units(stream: bytes) -> Iterator[bytes]:
    """Split an Annex-B byte stream at its start codes (3- or 4-byte).

    Trailing zero bytes before a start code belong to the start code, as in
    H.264 B.2 (``trailing_zero_8bits``)."""
    n = len(stream)
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    i = 0
    while True:
        j = stream.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        k = j
        while k > 0 and stream[k - 1] == 0:
            k -= 1
        starts.append((k, j + 3))
        i = j + 3
    for idx, (_, payload) in enumerate(starts):
        stop = starts[idx + 1][0] if idx + 1 < len(starts) else n
        if stop > payload:
            yield stream[payload:stop]


def _nal_type(codec: str, nal: bytes | memoryview) -> int:
    if codec == "h264":
        return nal[0] & 0x1F
    return (nal[0] >> 1) & 0x3F


@dataclass(frozen=True)
class ParameterSets:
    """What an ``avcC``/``hvcC`` box holds that a decoder needs in-band."""

    nal_length_size: int
    """Bytes of the big-endian length before each NAL unit in a sample (1, 2 or 4)."""
    nal_units: tuple[bytes, ...]
    """VPS/SPS/PPS (and any SEI arrays) in the order the box lists them."""
    sps: tuple[bytes, ...] = ()
    """The SPS NAL units (also in ``nal_units``), for the colour description."""

    def annexb(self) -> bytes:
        """The parameter sets as one Annex-B chunk."""
        return b"".join(START_CODE + nal for nal in self.nal_units)


def _need(buf: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise CorruptVideoError(
            f"{what}: need {n} bytes at offset {pos} but the box payload has {len(buf)} bytes; "
            f"the codec configuration is truncated"
        )


def parse_avcc(extradata: bytes) -> ParameterSets:
    """Parse an ``AVCDecoderConfigurationRecord`` (ISO 14496-15 5.3.3.1).

    Raises:
        CorruptVideoError: truncated record.
        UnsupportedFormatError: not version 1 (e.g. Annex-B extradata from MKV).
    """
    b = bytes(extradata)
    _need(b, 0, 6, "avcC")
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
        _need(b, pos, 2, "avcC SPS length")
        n = int.from_bytes(b[pos : pos + 2], "big")
        _need(b, pos + 2, n, "avcC SPS")
        nal = b[pos + 2 : pos + 2 + n]
        units.append(nal)
        sps.append(nal)
        pos += 2 + n
    _need(b, pos, 1, "avcC numOfPictureParameterSets")
    num_pps = b[pos]
    pos += 1
    for _ in range(num_pps):
        _need(b, pos, 2, "avcC PPS length")
        n = int.from_bytes(b[pos : pos + 2], "big")
        _need(b, pos + 2, n, "avcC PPS")
        units.append(b[pos + 2 : pos + 2 + n])
        pos += 2 + n
    # High-profile extension (chroma format, bit depth, SPS extensions): the SPS
    # extension NAL units are needed by the decoder too.
    if pos + 4 <= len(b) and sps and len(sps[0]) > 1 and sps[0][1] in (100, 110, 122, 144):
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


def parse_hvcc(extradata: bytes) -> ParameterSets:
    """Parse an ``HEVCDecoderConfigurationRecord`` (ISO 14496-15 8.3.3.1).

    Raises:
        CorruptVideoError: truncated record.
        UnsupportedFormatError: not version 1.
    """
    b = bytes(extradata)
    _need(b, 0, 23, "hvcC")
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
        _need(b, pos, 3, "hvcC array header")
        nal_type = b[pos] & 0x3F
        count = int.from_bytes(b[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            _need(b, pos, 2, "hvcC NAL length")
            n = int.from_bytes(b[pos : pos + 2], "big")
            _need(b, pos + 2, n, "hvcC NAL unit")
            nal = b[pos + 2 : pos + 2 + n]
            units.append(nal)
            if nal_type == HEVC_NAL_SPS:
                sps.append(nal)
            pos += 2 + n
    # Decoders want VPS, SPS, PPS in that order whatever order the box used.
    order = {HEVC_NAL_VPS: 0, HEVC_NAL_SPS: 1, HEVC_NAL_PPS: 2}
    units.sort(key=lambda nal: order.get((nal[0] >> 1) & 0x3F, 3))
    return ParameterSets(nal_length_size=nal_length_size, nal_units=tuple(units), sps=tuple(sps))


# ----------------------------------------------------------------------------------- AV1


def _leb128(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos + i >= len(buf):
            raise CorruptVideoError(f"AV1: leb128 at offset {pos} runs past the end ({len(buf)} bytes)")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise CorruptVideoError(f"AV1: leb128 at offset {pos} is longer than 8 bytes")


def iter_obus(data: bytes | memoryview) -> Iterator[tuple[int, bytes]]:
    """Yield ``(obu_type, whole OBU bytes)`` of a low-overhead AV1 bitstream.

    An OBU without ``obu_has_size_field`` runs to the end of the data (allowed
    for the last OBU of an MP4 sample)."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        start = pos
        header = view[pos]
        obu_type = (header >> 3) & 0x0F
        has_ext = bool(header & 0x04)
        has_size = bool(header & 0x02)
        pos += 1 + (1 if has_ext else 0)
        if has_size:
            size, pos = _leb128(view, pos)
        else:
            size = len(view) - pos
        if pos + size > len(view):
            raise CorruptVideoError(
                f"AV1: OBU of type {obu_type} at offset {start} declares {size} payload bytes but only "
                f"{len(view) - pos} remain"
            )
        pos += size
        yield obu_type, bytes(view[start:pos])


def _obu_payload(obu: bytes) -> bytes:
    header = obu[0]
    pos = 1 + (1 if header & 0x04 else 0)
    if header & 0x02:
        size, pos = _leb128(obu, pos)
        return obu[pos : pos + size]
    return obu[pos:]


def av1_config_obus(extradata: bytes | None) -> bytes:
    """The ``configOBUs`` of an ``av1C`` box (AV1-ISOBMFF 2.3.3): normally the
    sequence header OBU. Returns b"" when the box carries none."""
    if not extradata:
        return b""
    b = bytes(extradata)
    if b[0] & 0x80 and len(b) >= 4:
        return b[4:]
    # Some muxers store bare OBUs as extradata.
    return b


# ------------------------------------------------------------------------------ converter


class AnnexBConverter:
    """Turns one track's MP4 samples into packets a bare bitstream parser accepts.

    - H.264/HEVC: length prefixes become start codes; the ``avcC``/``hvcC``
      parameter sets go before every sync sample that does not already carry
      its own SPS and PPS in-band (as FFmpeg's ``*_mp4toannexb`` filters do), so
      decoding can start at any keyframe.
    - AV1: the ``av1C`` sequence header OBU goes before every sync sample that
      lacks one; optionally each temporal unit gets a temporal delimiter OBU.
    - VP9 (and anything else): samples pass through unchanged.

    Args:
        codec: ``h264``, ``hevc``, ``av1``, ``vp9``...
        extradata: the ``avcC``/``hvcC``/``av1C`` payload, or None.
        temporal_delimiters: AV1 only: start each temporal unit with a temporal
            delimiter OBU (the canonical low-overhead format, section 7.5).

    Raises:
        UnsupportedFormatError: H.264/HEVC extradata that is not a version-1 record.
    """

    def __init__(self, codec: str, extradata: bytes | None, *, temporal_delimiters: bool = False) -> None:
        self.codec = codec
        self.temporal_delimiters = temporal_delimiters
        self.parameter_sets: ParameterSets | None = None
        self._prefix = b""
        self._annexb_input = False
        if codec in ("h264", "hevc"):
            if extradata and not (extradata[:4] == START_CODE or extradata[:3] == b"\x00\x00\x01"):
                self.parameter_sets = parse_avcc(extradata) if codec == "h264" else parse_hvcc(extradata)
                self._prefix = self.parameter_sets.annexb()
            else:
                # No record (or Annex-B extradata, as MPEG-TS gives): samples are Annex-B already.
                self._annexb_input = True
                self._prefix = bytes(extradata or b"")
        elif codec == "av1":
            self._prefix = b"".join(
                obu for t, obu in iter_obus(av1_config_obus(extradata)) if t == OBU_SEQUENCE_HEADER
            )

    @property
    def nal_length_size(self) -> int | None:
        return self.parameter_sets.nal_length_size if self.parameter_sets else None

    def convert(self, sample: bytes | memoryview, *, is_sync: bool) -> bytes:
        """One sample (decode order) in the form the bare parser wants.

        Raises:
            CorruptVideoError: the sample's length fields do not add up.
        """
        if self.codec in ("h264", "hevc"):
            if self._annexb_input:
                body = bytes(sample)
                has_ps = False
                if is_sync and self._prefix:
                    types = {_nal_type(self.codec, n) for n in iter_annexb_nal_units(body)}
                    has_ps = self._has_parameter_sets(types)
                return self._prefix + body if is_sync and not has_ps else body
            nals = list(iter_length_prefixed(sample, self.parameter_sets.nal_length_size))
            body = b"".join(START_CODE + bytes(n) for n in nals)
            if is_sync or self._has_random_access_point(nals):
                if not self._has_parameter_sets({_nal_type(self.codec, n) for n in nals}):
                    return self._prefix + body
            return body
        if self.codec == "av1":
            data = bytes(sample)
            prefix = b""
            if self.temporal_delimiters and not (data and ((data[0] >> 3) & 0x0F) == OBU_TEMPORAL_DELIMITER):
                prefix = TEMPORAL_DELIMITER_OBU
            if is_sync and self._prefix:
                types = {t for t, _ in iter_obus(data)}
                if OBU_SEQUENCE_HEADER not in types:
                    if data and ((data[0] >> 3) & 0x0F) == OBU_TEMPORAL_DELIMITER:
                        # Keep the delimiter first: TD, sequence header, frame.
                        td_len = len(next(iter_obus(data))[1])
                        return data[:td_len] + self._prefix + data[td_len:]
                    return prefix + self._prefix + data
            return prefix + data
        return bytes(sample)

    def _has_parameter_sets(self, types: set[int]) -> bool:
        if self.codec == "h264":
            return {H264_NAL_SPS, H264_NAL_PPS} <= types
        return {HEVC_NAL_VPS, HEVC_NAL_SPS, HEVC_NAL_PPS} <= types

    def _has_random_access_point(self, nals: list[memoryview]) -> bool:
        # A sync sample the index did not flag (stss missing an IDR) still needs
        # parameter sets in front of it when decoding starts there.
        if self.codec == "h264":
            return any(_nal_type("h264", n) == H264_NAL_IDR for n in nals)
        return any(_nal_type("hevc", n) in HEVC_NAL_IRAP for n in nals)


# ---------------------------------------------------------------------- colour description


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
        """The conversion matrix name :mod:`._colour` uses."""
        return matrix_name(self.matrix_coefficients)


_MATRIX_NAMES = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}


def matrix_name(matrix_coefficients: int) -> str:
    """H.273 MatrixCoefficients -> conversion matrix name; unspecified and
    unknown codes give ``bt601``, swscale's default (``SWS_CS_DEFAULT``)."""
    return _MATRIX_NAMES.get(int(matrix_coefficients), "bt601")


def _unescape(nal: bytes) -> bytes:
    """Drop emulation prevention bytes: ``00 00 03 xx`` -> ``00 00 xx``."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _Bits:
    """MSB-first bit reader with Exp-Golomb codes (H.264 9.1)."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def u(self, n: int) -> int:
        if self.pos + n > len(self.data) * 8:
            raise CorruptVideoError(
                f"{self.what}: wanted {n} bits at bit {self.pos} of {len(self.data) * 8}; the NAL unit is truncated"
            )
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CorruptVideoError(f"{self.what}: Exp-Golomb code longer than 32 bits at bit {self.pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def uvlc(self) -> int:  # AV1 4.10.3
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros) if zeros < 32 else (1 << 32) - 1


def _vui_colour(r: _Bits, bit_depth: int) -> ColourInfo:
    # The leading VUI fields are the same in H.264 (E.1.1) and H.265 (E.2.1).
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
        return ColourInfo(matrix_coefficients=mc, full_range=full, bit_depth=bit_depth,
                          colour_primaries=cp, transfer_characteristics=tc)
    return ColourInfo(full_range=full, bit_depth=bit_depth)


def colour_info_from_h264_sps(sps: bytes) -> ColourInfo:
    """Colour description of an H.264 SPS NAL unit (7.3.2.1.1 and E.1.1).

    Raises:
        CorruptVideoError: the SPS is truncated or not an SPS.
    """
    if not sps or sps[0] & 0x1F != H264_NAL_SPS:
        raise CorruptVideoError(f"H.264: expected an SPS NAL unit (type 7), got type {sps[0] & 0x1F if sps else None}")
    r = _Bits(_unescape(bytes(sps[1:])), "H.264 SPS")
    profile_idc = r.u(8)
    r.u(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    bit_depth = 8
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
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
    return _vui_colour(r, bit_depth)


def _hevc_profile_tier_level(r: _Bits, max_sub_layers_minus1: int) -> None:
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


def _hevc_scaling_list_data(r: _Bits) -> None:
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not r.u(1):  # scaling_list_pred_mode_flag
                r.ue()  # scaling_list_pred_matrix_id_delta
            else:
                if size_id > 1:
                    r.se()  # scaling_list_dc_coef_minus8
                for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                    r.se()


def _hevc_st_ref_pic_sets(r: _Bits, count: int) -> None:
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


def colour_info_from_hevc_sps(sps: bytes) -> ColourInfo:
    """Colour description of an HEVC SPS NAL unit (7.3.2.2 and E.2.1).

    Raises:
        CorruptVideoError: the SPS is truncated or not an SPS.
    """
    if len(sps) < 3 or (sps[0] >> 1) & 0x3F != HEVC_NAL_SPS:
        raise CorruptVideoError("HEVC: expected an SPS NAL unit (type 33)")
    r = _Bits(_unescape(bytes(sps[2:])), "HEVC SPS")
    r.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    r.u(1)  # sps_temporal_id_nesting_flag
    _hevc_profile_tier_level(r, max_sub_layers_minus1)
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
    for _ in range(0 if ordering_all else max_sub_layers_minus1, max_sub_layers_minus1 + 1):
        r.ue()
        r.ue()
        r.ue()
    for _ in range(6):  # log2 cb/tb sizes, transform hierarchy depths
        r.ue()
    if r.u(1) and r.u(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _hevc_scaling_list_data(r)
    r.u(1)  # amp_enabled_flag
    r.u(1)  # sample_adaptive_offset_enabled_flag
    if r.u(1):  # pcm_enabled_flag
        r.u(8)
        r.ue()
        r.ue()
        r.u(1)
    _hevc_st_ref_pic_sets(r, r.ue())
    if r.u(1):  # long_term_ref_pics_present_flag
        for _ in range(r.ue()):
            r.u(log2_max_poc_lsb)
            r.u(1)
    r.u(1)  # sps_temporal_mvp_enabled_flag
    r.u(1)  # strong_intra_smoothing_enabled_flag
    if not r.u(1):  # vui_parameters_present_flag
        return ColourInfo(bit_depth=bit_depth)
    return _vui_colour(r, bit_depth)


def colour_info_from_av1_sequence_header(obu: bytes) -> ColourInfo:
    """Colour description of an AV1 sequence header OBU (5.5, color_config 5.5.2).

    Raises:
        CorruptVideoError: truncated or not a sequence header.
    """
    if not obu or (obu[0] >> 3) & 0x0F != OBU_SEQUENCE_HEADER:
        raise CorruptVideoError("AV1: expected a sequence header OBU (type 1)")
    r = _Bits(_obu_payload(obu), "AV1 sequence header")
    seq_profile = r.u(3)
    r.u(1)  # still_picture
    reduced = r.u(1)
    if reduced:
        r.u(5)
    else:
        timing = r.u(1)
        decoder_model = 0
        buffer_delay_len = 0
        if timing:
            r.u(32)
            r.u(32)
            if r.u(1):  # equal_picture_interval
                r.uvlc()
            decoder_model = r.u(1)
            if decoder_model:
                buffer_delay_len = r.u(5) + 1
                r.u(32)
                r.u(5)
                r.u(5)
        initial_display_delay = r.u(1)
        for _ in range(r.u(5) + 1):  # operating points
            r.u(12)
            if r.u(5) > 7:  # seq_level_idx
                r.u(1)
            if decoder_model and r.u(1):
                r.u(buffer_delay_len)
                r.u(buffer_delay_len)
                r.u(1)
            if initial_display_delay and r.u(1):
                r.u(4)
    w_bits, h_bits = r.u(4) + 1, r.u(4) + 1
    r.u(w_bits)
    r.u(h_bits)
    if not reduced and r.u(1):  # frame_id_numbers_present_flag
        r.u(4)
        r.u(3)
    r.u(3)  # use_128x128_superblock, enable_filter_intra, enable_intra_edge
    if not reduced:
        r.u(4)  # interintra, masked compound, warped motion, dual filter
        order_hint = r.u(1)
        if order_hint:
            r.u(2)  # jnt_comp, ref_frame_mvs
        force_sct = 2 if r.u(1) else r.u(1)  # seq_choose_screen_content_tools
        if force_sct > 0 and not r.u(1):  # seq_choose_integer_mv
            r.u(1)
        if order_hint:
            r.u(3)
    r.u(3)  # enable_superres, enable_cdef, enable_restoration
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
    if cp == 1 and tc == 13 and mc == 0:  # sRGB
        return ColourInfo(mc, True, bit_depth, cp, tc)
    return ColourInfo(mc, bool(r.u(1)), bit_depth, cp, tc)


# VP9 color_space (VP9 bitstream spec 7.2.2) -> H.273 matrix coefficients.
_VP9_MATRIX = {0: 2, 1: 5, 2: 1, 3: 6, 4: 7, 5: 9, 6: 2, 7: 0}


def colour_info_from_vp9_frame(frame: bytes) -> ColourInfo | None:
    """Colour description from a VP9 keyframe's uncompressed header (6.2).

    Returns None for a frame that carries none (inter frames, shown-existing).
    """
    if not frame:
        return None
    r = _Bits(bytes(frame[:16]), "VP9 frame header")
    try:
        if r.u(2) != 2:  # frame_marker
            return None
        profile = r.u(1) | (r.u(1) << 1)
        if profile == 3:
            r.u(1)
        if r.u(1):  # show_existing_frame
            return None
        if r.u(1) != 0:  # frame_type: only KEY_FRAME (0) carries color_config here
            return None
        r.u(2)  # show_frame, error_resilient_mode
        if r.u(24) != 0x498342:
            return None
        bit_depth = 8
        if profile >= 2:
            bit_depth = 12 if r.u(1) else 10
        cs = r.u(3)
        full = True if cs == 7 else bool(r.u(1))
    except CorruptVideoError:
        return None
    return ColourInfo(matrix_coefficients=_VP9_MATRIX.get(cs, 2), full_range=full, bit_depth=bit_depth)


def stream_colour_info(codec: str, extradata: bytes | None, sample: bytes | None = None) -> ColourInfo:
    """Best colour description from the codec configuration and, where it
    lives there (VP9, in-band SPS), the first sync sample.

    Unknown or unparsable descriptions give the FFmpeg default (BT.601,
    limited range), which is what the CPU path then uses too.
    """
    try:
        if codec in ("h264", "hevc"):
            sps: list[bytes] = []
            conv = AnnexBConverter(codec, extradata)
            if sample is not None:
                data = conv.convert(sample, is_sync=True)
                sps = [n for n in iter_annexb_nal_units(data)
                       if _nal_type(codec, n) == (H264_NAL_SPS if codec == "h264" else HEVC_NAL_SPS)]
            elif conv.parameter_sets is not None:
                sps = list(conv.parameter_sets.sps)
            if sps:
                # The last SPS wins: in-band SPS follow the avcC ones.
                return (colour_info_from_h264_sps if codec == "h264" else colour_info_from_hevc_sps)(sps[-1])
        elif codec == "av1":
            obus = list(iter_obus(av1_config_obus(extradata)))
            if sample is not None:
                obus += list(iter_obus(sample))
            seq = [obu for t, obu in obus if t == OBU_SEQUENCE_HEADER]
            if seq:
                return colour_info_from_av1_sequence_header(seq[-1])
        elif codec == "vp9" and sample is not None:
            info = colour_info_from_vp9_frame(sample)
            if info is not None:
                return info
    except (CorruptVideoError, UnsupportedFormatError):
        pass
    return ColourInfo()
