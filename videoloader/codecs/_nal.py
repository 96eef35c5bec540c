"""NAL unit streams (H.264, HEVC): length-prefixed samples, Annex-B, parameter sets.

MP4 and MKV store H.264/HEVC samples length-prefixed (AVCC/HVCC, ISO
14496-15) with SPS/PPS (and VPS) in the ``avcC``/``hvcC`` record. A bare
parser such as NVDEC's takes no extradata: it wants Annex-B (start codes,
parameter sets in-band). :class:`AnnexBConverter` does that conversion.

FFmpeg's ``h264_mp4toannexb`` / ``hevc_mp4toannexb`` bitstream filters
(``av.BitStreamFilterContext`` in PyAV) do the same job as simply and faster
(about 1 us per 640x360 sample against our 5 us, both negligible beside
decoding; their output uses 3-byte start codes inside a sample, so it is not
byte-identical), and a caller that has PyAV anyway should prefer them. A
PyAV decoder needs neither: it takes the record as extradata. We keep our
own because the NVDEC path must run without PyAV and because the reader's
non-reference test walks the same length-prefixed NAL units before any
decoder is involved.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._base import Codec
from ._colour_info import ColourInfo

__all__ = [
    "AnnexBConverter",
    "NalCodec",
    "ParameterSets",
    "START_CODE",
    "is_annexb",
    "iter_annexb_nal_units",
    "iter_length_prefixed",
    "length_prefixed_to_annexb",
    "need_bytes",
]

START_CODE = b"\x00\x00\x00\x01"


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


def length_prefixed_to_annexb(sample: bytes | memoryview, nal_length_size: int) -> bytes:
    """One AVCC/HVCC sample as Annex-B: every length field becomes a start code.

    ``00 00 00 05 <5 bytes>`` -> ``00 00 00 01 <5 bytes>``.

    Raises:
        CorruptVideoError: the sample's length fields do not add up.
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


def is_annexb(extradata: bytes) -> bool:
    """True for extradata that is already Annex-B (starts with a start code), as MPEG-TS gives."""
    return extradata[:4] == START_CODE or extradata[:3] == b"\x00\x00\x01"


def need_bytes(buf: bytes, pos: int, n: int, what: str) -> None:
    """Check that a configuration record has ``n`` bytes at ``pos``.

    Raises:
        CorruptVideoError: it does not (the record is truncated).
    """
    if pos + n > len(buf):
        raise CorruptVideoError(
            f"{what}: need {n} bytes at offset {pos} but the box payload has {len(buf)} bytes; "
            f"the codec configuration is truncated"
        )


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


class NalCodec(Codec[ParameterSets]):
    """What H.264 and HEVC share: NAL unit streams with parameter sets.

    Subclasses say how to read a NAL unit type, which types are parameter
    sets and random access points, and how to read an SPS's colour description.
    """

    sps_type: int
    """NAL unit type of a sequence parameter set."""
    parameter_set_types: frozenset[int]
    """NAL unit types a decoder needs before a random access point (SPS, PPS, and VPS for HEVC)."""

    @staticmethod
    @abstractmethod
    def nal_type(nal: bytes | memoryview) -> int:
        """The ``nal_unit_type`` in a NAL unit header."""

    @abstractmethod
    def is_random_access_point(self, nal_type: int) -> bool:
        """True for the NAL unit types of a picture decoding can start at (IDR, IRAP)."""

    @abstractmethod
    def colour_info_from_sps(self, sps: bytes) -> ColourInfo:
        """Colour description of an SPS NAL unit.

        Raises:
            CorruptVideoError: the SPS is truncated or not an SPS.
        """

    @abstractmethod
    def reorder_depth_from_sps(self, sps: bytes) -> int:
        """How many frames can precede a frame in decode order yet be shown after it, per an SPS.

        Raises:
            CorruptVideoError: the SPS is truncated, out of range or not an SPS.
        """

    def reorder_depth(self, extradata: bytes | None) -> int | None:
        """The bound of the record's first SPS (``avcC``/``hvcC``, or Annex-B
        parameter sets); None without one or when it cannot be read."""
        if not extradata:
            return None
        try:
            if is_annexb(extradata):
                sps = [n for n in iter_annexb_nal_units(bytes(extradata)) if n and self.nal_type(n) == self.sps_type]
            else:
                sps = list(self.parse_config(extradata).sps)
            return self.reorder_depth_from_sps(sps[0]) if sps else None
        except (CorruptVideoError, UnsupportedFormatError):
            return None

    def stream_converter(self, extradata: bytes | None, *, temporal_delimiters: bool = False) -> AnnexBConverter:
        """An :class:`AnnexBConverter` for this track (``temporal_delimiters`` does not apply)."""
        return AnnexBConverter(self, extradata)

    def _colour_info(self, extradata: bytes | None, sample: bytes | memoryview | None) -> ColourInfo | None:
        sps: list[bytes] = []
        conv = AnnexBConverter(self, extradata)
        if sample is not None:
            data = conv.convert(sample, is_sync=True)
            sps = [n for n in iter_annexb_nal_units(data) if self.nal_type(n) == self.sps_type]
        elif conv.parameter_sets is not None:
            sps = list(conv.parameter_sets.sps)
        # The last SPS wins: in-band SPS follow the record's ones.
        return self.colour_info_from_sps(sps[-1]) if sps else None


class AnnexBConverter:
    """Turns one H.264/HEVC track's samples into Annex-B a bare parser accepts.

    Length prefixes become start codes; the ``avcC``/``hvcC`` parameter sets
    go before every sync sample (or unflagged IDR/IRAP sample) that does not
    already carry its own in-band, as FFmpeg's ``*_mp4toannexb`` filters do,
    so decoding can start at any keyframe. Samples that are Annex-B already
    (no record, or Annex-B extradata as MPEG-TS gives) pass through, with the
    extradata in front of sync samples that lack parameter sets.

    Args:
        codec: the H.264 or HEVC codec module.
        extradata: the ``avcC``/``hvcC`` payload, Annex-B parameter sets, or None.

    Raises:
        UnsupportedFormatError: extradata that is neither Annex-B nor a version-1 record.
        CorruptVideoError: a truncated record.
    """

    def __init__(self, codec: NalCodec, extradata: bytes | None) -> None:
        self.codec = codec
        self.parameter_sets: ParameterSets | None = None
        self._prefix = b""
        if extradata and not is_annexb(extradata):
            self.parameter_sets = codec.parse_config(extradata)
            self._prefix = self.parameter_sets.annexb()
        else:
            self._prefix = bytes(extradata or b"")

    @property
    def nal_length_size(self) -> int | None:
        """Length field size of the samples, or None when they are Annex-B already."""
        return self.parameter_sets.nal_length_size if self.parameter_sets else None

    def convert(self, sample: bytes | memoryview, *, is_sync: bool) -> bytes:
        """One sample (decode order) in the form the bare parser wants.

        Raises:
            CorruptVideoError: the sample's length fields do not add up.
        """
        nal_type = self.codec.nal_type
        if self.parameter_sets is None:
            body = bytes(sample)
            has_ps = False
            if is_sync and self._prefix:
                has_ps = self._has_parameter_sets({nal_type(n) for n in iter_annexb_nal_units(body)})
            return self._prefix + body if is_sync and not has_ps else body
        nals = list(iter_length_prefixed(sample, self.parameter_sets.nal_length_size))
        body = b"".join(START_CODE + bytes(n) for n in nals)
        # A sync sample the index did not flag (stss missing an IDR) still needs
        # parameter sets in front of it when decoding starts there.
        types = {nal_type(n) for n in nals}
        if (is_sync or any(self.codec.is_random_access_point(t) for t in types)) and not self._has_parameter_sets(
            types
        ):
            return self._prefix + body
        return body

    def _has_parameter_sets(self, types: set[int]) -> bool:
        return self.codec.parameter_set_types <= types
