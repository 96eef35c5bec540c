"""Sample descriptions (stsd, ISO 14496-12 8.5.2) of video tracks.

A VisualSampleEntry is ``SampleEntry`` (6 reserved bytes +
data_reference_index) followed by 16 bytes of pre-defined/reserved fields,
width, height, resolutions, frame_count, compressorname[32], depth and
pre_defined: 78 bytes in all, then child boxes (avcC, hvcC, av1C, vpcC, esds,
pasp, colr, sinf...).

``extradata`` is what FFmpeg puts in ``codecpar->extradata``: the body of the
codec configuration box (avcC, hvcC, av1C), the DecoderSpecificInfo of esds
for MPEG-4 Part 2, and nothing for VP9 (FFmpeg only reads colour fields from
vpcC; the VP9 decoder needs no extradata).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import MP4ParseError, UnsupportedFormatError
from ._boxes import Box, Buffer, FieldReader, iter_children

__all__ = ["CodecInfo", "parse_stsd"]

#: sample entry type -> (FFmpeg decoder family, configuration box)
VIDEO_ENTRIES = {
    "avc1": ("h264", "avcC"),
    "avc3": ("h264", "avcC"),
    "avc2": ("h264", "avcC"),
    "avc4": ("h264", "avcC"),
    "hvc1": ("hevc", "hvcC"),
    "hev1": ("hevc", "hvcC"),
    "dvh1": ("hevc", "hvcC"),
    "dvhe": ("hevc", "hvcC"),
    "av01": ("av1", "av1C"),
    "vp09": ("vp9", "vpcC"),
    "vp08": ("vp8", "vpcC"),
    "mp4v": ("mpeg4", "esds"),
}
ENCRYPTED_ENTRIES = frozenset({"encv", "resv", "drmi", "enca"})
_VISUAL_ENTRY_HEADER = 78


@dataclass
class CodecInfo:
    sample_entry: str
    codec: str
    width: int
    height: int
    extradata: bytes | None
    bit_depth: int | None


def parse_stsd(buf: Buffer, box: Box, *, track_id: int) -> CodecInfo:
    """Parse the first sample entry of a video track's stsd.

    Raises:
        UnsupportedFormatError: encrypted, or a codec the index path does not know.
        MP4ParseError: the box is broken.
    """
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    if entry_count == 0 or entry_count > box.size // 8 or entry_count > 1024:
        raise MP4ParseError(f"{buf.url}: track {track_id}: stsd at offset {box.start} has {entry_count} entries.")
    inner = Box("stsd", box.start, box.header_size + 8, box.size)
    entries = list(iter_children(buf, inner))
    if not entries:
        raise MP4ParseError(f"{buf.url}: track {track_id}: stsd at offset {box.start} holds no sample entry.")
    entry = entries[0]
    fourcc = entry.type
    if fourcc in ENCRYPTED_ENTRIES:
        original = _original_format(buf, entry)
        raise UnsupportedFormatError(
            f"{buf.url}: track {track_id} is encrypted or restricted (sample entry '{fourcc}', "
            f"original format '{original}'); the index path cannot read protected samples."
        )
    if fourcc not in VIDEO_ENTRIES:
        raise UnsupportedFormatError(
            f"{buf.url}: track {track_id} uses sample entry '{fourcc}', which the MP4 index path does not "
            f"handle (known: {', '.join(sorted(VIDEO_ENTRIES))}); use the demux fallback."
        )
    codec, config_type = VIDEO_ENTRIES[fourcc]
    er = FieldReader(buf, entry)
    er.skip(6 + 2 + 16, "SampleEntry and pre-defined fields")
    width = er.u16("width")
    height = er.u16("height")
    er.skip(_VISUAL_ENTRY_HEADER - 28, "VisualSampleEntry fields")
    children_box = Box(entry.type, entry.start, entry.header_size + _VISUAL_ENTRY_HEADER, entry.size)
    config: Box | None = None
    for child in iter_children(buf, children_box):
        if child.type == config_type:
            config = child
            break
    extradata: bytes | None = None
    bit_depth: int | None = None
    if config is not None:
        body = bytes(buf.view(config.body_start, config.end))
        if codec == "h264":
            extradata = body
            bit_depth = _avcc_bit_depth(body)
        elif codec == "hevc":
            extradata = body
            if len(body) > 18:
                bit_depth = (body[17] & 0x07) + 8
        elif codec == "av1":
            extradata = body
            if len(body) >= 3:
                high, twelve = bool(body[2] & 0x40), bool(body[2] & 0x20)
                bit_depth = 12 if (high and twelve) else 10 if high else 8
        elif codec in ("vp9", "vp8"):
            extradata = None
            if len(body) >= 7 and body[0] == 1:
                bit_depth = body[6] >> 4
        elif codec == "mpeg4":
            extradata = _esds_decoder_specific_info(body)
            bit_depth = 8
    elif codec in ("h264", "hevc", "av1"):
        raise MP4ParseError(
            f"{buf.url}: track {track_id}: '{fourcc}' sample entry has no '{config_type}' box; "
            "the decoder cannot be configured."
        )
    return CodecInfo(fourcc, codec, width, height, extradata, bit_depth)


def _original_format(buf: Buffer, entry: Box) -> str:
    """Original format from sinf/frma of a protected entry (best effort)."""
    data = bytes(buf.view(entry.start, entry.end))
    at = data.find(b"frma")
    if at >= 4 and at + 8 <= len(data):
        return data[at + 4 : at + 8].decode("latin-1")
    return "?"


def _avcc_bit_depth(body: bytes) -> int | None:
    """bit_depth_luma from the avcC high-profile extension, else 8."""
    if len(body) < 7:
        return None
    profile = body[1]
    pos = 5
    num_sps = body[pos] & 0x1F
    pos += 1
    for _ in range(num_sps):
        if pos + 2 > len(body):
            return 8
        length = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2 + length
    if pos >= len(body):
        return 8
    num_pps = body[pos]
    pos += 1
    for _ in range(num_pps):
        if pos + 2 > len(body):
            return 8
        length = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2 + length
    if profile in (100, 110, 122, 244) and pos + 3 <= len(body):
        return (body[pos + 1] & 0x07) + 8
    return 8


def _esds_decoder_specific_info(body: bytes) -> bytes | None:
    """DecoderSpecificInfo (tag 5) inside ES_Descriptor (3) / DecoderConfigDescriptor (4)."""
    pos = 4  # version + flags

    def read_descr(p: int) -> tuple[int, int, int]:
        tag = body[p]
        p += 1
        length = 0
        for _ in range(4):
            if p >= len(body):
                break
            b = body[p]
            p += 1
            length = (length << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        return tag, length, p

    try:
        tag, _length, pos = read_descr(pos)
        if tag == 0x03:
            pos += 2  # ES_ID
            flags = body[pos]
            pos += 1
            if flags & 0x80:
                pos += 2
            if flags & 0x40:
                pos += 1 + body[pos]
            if flags & 0x20:
                pos += 2
            tag, _length, pos = read_descr(pos)
        if tag == 0x04:
            pos += 13
            tag, length, pos = read_descr(pos)
            if tag == 0x05:
                return body[pos : pos + length]
    except IndexError:
        return None
    return None
