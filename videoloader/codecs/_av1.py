"""AV1 (AOMedia AV1 bitstream spec; in MP4 per AV1-ISOBMFF).

MP4 stores AV1 samples as low-overhead OBU streams without the sequence
header, which lives in the ``av1C`` record's config OBUs. A bare parser
(NVDEC) needs it in-band: :class:`Av1Converter` puts it before every sync
sample that lacks one. Note that this is the low-overhead format (AV1 5.2),
not the length-delimited "Annex B" format of AV1 spec annex B.

FFmpeg has no bitstream filter that inserts the sequence header before
keyframes (``av1_metadata`` only inserts or removes temporal delimiters), so
this module is the simplest way for PyAV users too.

Whether an AV1 frame is referenced is its ``refresh_frame_flags``, deep in an
uncompressed header that needs the sequence header's state to parse; that is
not done here, so AV1 has no non-reference test (every sample is decoded).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .._errors import CorruptVideoError
from ._base import Codec
from ._bits import BitReader, read_leb128
from ._colour_info import ColourInfo, read_av1_color_config

__all__ = [
    "AV1",
    "Av1Codec",
    "Av1Config",
    "Av1Converter",
    "av1_config_obus",
    "colour_info_from_av1_sequence_header",
    "iter_obus",
]

# OBU types (AV1 6.2.2).
OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2
TEMPORAL_DELIMITER_OBU = b"\x12\x00"  # type 2, has_size_field=1, size 0


def iter_obus(data: bytes | memoryview) -> Iterator[tuple[int, bytes]]:
    """Yield ``(obu_type, whole OBU bytes)`` of a low-overhead AV1 bitstream.

    An OBU without ``obu_has_size_field`` runs to the end of the data (allowed
    for the last OBU of an MP4 sample).

    Raises:
        CorruptVideoError: an OBU declares more bytes than remain.
    """
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
            size, pos = read_leb128(view, pos)
        else:
            size = len(view) - pos
        if pos + size > len(view):
            raise CorruptVideoError(
                f"AV1: OBU of type {obu_type} at offset {start} declares {size} payload bytes but only "
                f"{len(view) - pos} remain"
            )
        pos += size
        yield obu_type, bytes(view[start:pos])


def _obu_type(data: bytes) -> int:
    return (data[0] >> 3) & 0x0F


def _obu_payload(obu: bytes) -> bytes:
    header = obu[0]
    pos = 1 + (1 if header & 0x04 else 0)
    if header & 0x02:
        size, pos = read_leb128(obu, pos)
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


@dataclass(frozen=True)
class Av1Config:
    """What an ``av1C`` record holds that a bare parser needs."""

    config_obus: bytes
    """The record's ``configOBUs`` (all of them)."""
    sequence_header: bytes | None
    """The sequence header OBU among them, or None."""


def colour_info_from_av1_sequence_header(obu: bytes) -> ColourInfo:
    """Colour description of an AV1 sequence header OBU (5.5, color_config 5.5.2).

    Raises:
        CorruptVideoError: truncated or not a sequence header.
    """
    if not obu or _obu_type(obu) != OBU_SEQUENCE_HEADER:
        raise CorruptVideoError("AV1: expected a sequence header OBU (type 1)")
    r = BitReader(_obu_payload(obu), "AV1 sequence header")
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
    return read_av1_color_config(r, seq_profile)


class Av1Converter:
    """Turns one AV1 track's samples into an OBU stream a bare parser accepts.

    The ``av1C`` sequence header OBU goes before every sync sample that lacks
    one (after its temporal delimiter, if any); optionally each temporal unit
    gets a temporal delimiter OBU.

    Args:
        extradata: the ``av1C`` payload (or bare OBUs), or None.
        temporal_delimiters: start each temporal unit with a temporal
            delimiter OBU (the canonical low-overhead format, section 7.5).

    Raises:
        CorruptVideoError: the config OBUs are malformed.
    """

    def __init__(self, extradata: bytes | None, *, temporal_delimiters: bool = False) -> None:
        self.temporal_delimiters = temporal_delimiters
        self._prefix = b"".join(obu for t, obu in iter_obus(av1_config_obus(extradata)) if t == OBU_SEQUENCE_HEADER)

    def convert(self, sample: bytes | memoryview, *, is_sync: bool) -> bytes:
        """One sample (decode order) in the form the bare parser wants.

        Raises:
            CorruptVideoError: the sample's OBU sizes do not add up.
        """
        data = bytes(sample)
        starts_with_td = bool(data) and _obu_type(data) == OBU_TEMPORAL_DELIMITER
        prefix = TEMPORAL_DELIMITER_OBU if self.temporal_delimiters and not starts_with_td else b""
        if is_sync and self._prefix:
            types = {t for t, _ in iter_obus(data)}
            if OBU_SEQUENCE_HEADER not in types:
                if starts_with_td:
                    # Keep the delimiter first: TD, sequence header, frame.
                    td_len = len(next(iter_obus(data))[1])
                    return data[:td_len] + self._prefix + data[td_len:]
                return prefix + self._prefix + data
        return prefix + data


class Av1Codec(Codec[Av1Config]):
    """AV1: ``av1C`` records, sequence header insertion, colour description."""

    name = "av1"

    def parse_config(self, extradata: bytes) -> Av1Config:
        """The config OBUs of an ``av1C`` record (or of bare OBU extradata).

        Raises:
            CorruptVideoError: the config OBUs are malformed.
        """
        obus = av1_config_obus(extradata)
        seq = [obu for t, obu in iter_obus(obus) if t == OBU_SEQUENCE_HEADER]
        return Av1Config(config_obus=obus, sequence_header=seq[0] if seq else None)

    def reorder_depth(self, extradata: bytes | None) -> int | None:
        """0: an AV1 temporal unit holds every frame decoded with the one it
        shows, so container timestamps never go backwards (AV1 7.5)."""
        return 0

    def stream_converter(self, extradata: bytes | None, *, temporal_delimiters: bool = False) -> Av1Converter:
        """An :class:`Av1Converter` for this track."""
        return Av1Converter(extradata, temporal_delimiters=temporal_delimiters)

    def _colour_info(self, extradata: bytes | None, sample: bytes | memoryview | None) -> ColourInfo | None:
        obus = list(iter_obus(av1_config_obus(extradata)))
        if sample is not None:
            obus += list(iter_obus(sample))
        seq = [obu for t, obu in obus if t == OBU_SEQUENCE_HEADER]
        # The last sequence header wins: in-band ones follow the record's.
        return colour_info_from_av1_sequence_header(seq[-1]) if seq else None


AV1 = Av1Codec()
"""The AV1 codec module."""
