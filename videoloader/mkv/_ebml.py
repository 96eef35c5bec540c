"""EBML primitives: variable-length integers, element headers, typed payloads.

Matroska is EBML: each element is an ID (1-4 bytes, marker bit kept), a size
(1-8 bytes, marker bit removed; all ones means "unknown") and a payload.
Everything here reads from a :class:`Window` (bytes at a known file offset)
and raises :class:`~videoloader._errors.MatroskaParseError` on bytes that
cannot be a valid element, so callers never see ``IndexError`` or
``struct.error``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .._errors import MatroskaParseError

__all__ = [
    "ID",
    "LEVEL1_IDS",
    "Element",
    "Window",
    "children",
    "header_len_at",
    "read_element",
    "read_float",
    "read_signed",
    "read_string",
    "read_uint",
]


class ID:
    """Element IDs (marker bits kept, as written in the file)."""

    EBML = 0x1A45DFA3
    DOC_TYPE = 0x4282
    SEGMENT = 0x18538067
    SEEK_HEAD = 0x114D9B74
    SEEK = 0x4DBB
    SEEK_ID = 0x53AB
    SEEK_POSITION = 0x53AC
    INFO = 0x1549A966
    TIMESTAMP_SCALE = 0x2AD7B1
    DURATION = 0x4489
    TRACKS = 0x1654AE6B
    TRACK_ENTRY = 0xAE
    TRACK_NUMBER = 0xD7
    TRACK_TYPE = 0x83
    CODEC_ID = 0x86
    CODEC_PRIVATE = 0x63A2
    DEFAULT_DURATION = 0x23E383
    CONTENT_ENCODINGS = 0x6D80
    VIDEO = 0xE0
    PROJECTION = 0x7670
    PROJECTION_TYPE = 0x7671
    PROJECTION_POSE_YAW = 0x7673
    PROJECTION_POSE_PITCH = 0x7674
    PROJECTION_POSE_ROLL = 0x7675
    PIXEL_WIDTH = 0xB0
    PIXEL_HEIGHT = 0xBA
    COLOUR = 0x55B0
    BITS_PER_CHANNEL = 0x55B2
    CUES = 0x1C53BB6B
    CUE_POINT = 0xBB
    CUE_TIME = 0xB3
    CUE_TRACK_POSITIONS = 0xB7
    CUE_TRACK = 0xF7
    CUE_CLUSTER_POSITION = 0xF1
    CLUSTER = 0x1F43B675
    TIMESTAMP = 0xE7
    SIMPLE_BLOCK = 0xA3
    BLOCK_GROUP = 0xA0
    BLOCK = 0xA1
    BLOCK_DURATION = 0x9B
    REFERENCE_BLOCK = 0xFB
    ENCRYPTED_BLOCK = 0xAF
    TAGS = 0x1254C367
    CHAPTERS = 0x1043A770
    ATTACHMENTS = 0x1941A469
    VOID = 0xEC
    CRC32 = 0xBF


#: Elements that live directly in the Segment; inside a Cluster of unknown
#: size, one of these ends the Cluster.
LEVEL1_IDS = frozenset(
    {ID.SEEK_HEAD, ID.INFO, ID.TRACKS, ID.CUES, ID.CLUSTER, ID.TAGS, ID.CHAPTERS, ID.ATTACHMENTS, ID.EBML}
)

_UNKNOWN = -1


@dataclass(frozen=True)
class Element:
    """One element header: where it is and how long its payload is."""

    id: int
    start: int
    """File offset of the ID's first byte."""
    data_start: int
    """File offset of the payload."""
    size: int
    """Payload size in bytes, or -1 for an unknown size."""

    @property
    def unknown_size(self) -> bool:
        return self.size == _UNKNOWN

    @property
    def end(self) -> int:
        """File offset just past the payload (only for a known size)."""
        return self.data_start + self.size


class Window:
    """Bytes ``data`` that sit at file offset ``start`` of the file at ``url``."""

    __slots__ = ("data", "start", "url")

    def __init__(self, data: bytes, start: int, url: str) -> None:
        self.data = data
        self.start = start
        self.url = url

    @property
    def stop(self) -> int:
        return self.start + len(self.data)

    def covers(self, start: int, stop: int) -> bool:
        return self.start <= start and stop <= self.stop

    def get(self, start: int, stop: int) -> bytes:
        if not self.covers(start, stop):
            raise MatroskaParseError(
                f"{self.url}: needed bytes [{start}, {stop}) but only [{self.start}, {self.stop}) were read "
                "(an element runs past its parent or the end of the file)."
            )
        return self.data[start - self.start : stop - self.start]


def _vint(w: Window, pos: int, *, max_len: int, keep_marker: bool, what: str) -> tuple[int, int]:
    """``(value, length)`` of the variable-length integer at ``pos``; value -1 for all ones (size only)."""
    first = w.get(pos, pos + 1)[0]
    if first == 0:
        raise MatroskaParseError(f"{w.url}: invalid EBML {what} at offset {pos} (a zero first byte).")
    length = 9 - first.bit_length()
    if length > max_len:
        raise MatroskaParseError(f"{w.url}: EBML {what} at offset {pos} is {length} bytes long; at most {max_len}.")
    raw = w.get(pos, pos + length)
    value = int.from_bytes(raw, "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    if value == (1 << (7 * length)) - 1:
        return _UNKNOWN, length
    return value, length


def read_element(w: Window, pos: int) -> Element:
    """The element header at ``pos`` (ID and size must be inside ``w``)."""
    eid, n = _vint(w, pos, max_len=4, keep_marker=True, what="element ID")
    size, m = _vint(w, pos + n, max_len=8, keep_marker=False, what="element size")
    return Element(eid, pos, pos + n + m, size)


def header_len_at(data: bytes, rel: int) -> int | None:
    """Bytes the header at ``data[rel:]`` needs, or None when its first bytes are not there yet."""
    if rel >= len(data) or data[rel] == 0:
        return None
    n = 9 - data[rel].bit_length()
    if rel + n >= len(data) or data[rel + n] == 0:
        return None
    return n + 9 - data[rel + n].bit_length()


def _payload(w: Window, e: Element, max_size: int, what: str) -> bytes:
    if e.unknown_size or e.size > max_size:
        raise MatroskaParseError(
            f"{w.url}: {what} element at offset {e.start} has size {'unknown' if e.unknown_size else e.size}; "
            f"expected at most {max_size} bytes."
        )
    return w.get(e.data_start, e.end)


def read_uint(w: Window, e: Element, what: str) -> int:
    """An unsigned integer payload (0-8 bytes)."""
    return int.from_bytes(_payload(w, e, 8, what), "big")


def read_signed(w: Window, e: Element, what: str) -> int:
    """A signed integer payload (0-8 bytes)."""
    return int.from_bytes(_payload(w, e, 8, what), "big", signed=True)


def read_float(w: Window, e: Element, what: str) -> float:
    """A float payload (0, 4 or 8 bytes)."""
    raw = _payload(w, e, 8, what)
    if len(raw) == 0:
        return 0.0
    if len(raw) == 4:
        return float(struct.unpack(">f", raw)[0])
    if len(raw) == 8:
        return float(struct.unpack(">d", raw)[0])
    raise MatroskaParseError(f"{w.url}: {what} at offset {e.start} is a {len(raw)}-byte float; expected 4 or 8.")


def read_string(w: Window, e: Element, what: str, max_size: int = 1024) -> str:
    """An ASCII/UTF-8 string payload, trailing NULs removed."""
    return _payload(w, e, max_size, what).rstrip(b"\0").decode("utf-8", errors="replace")


def children(w: Window, parent: Element) -> list[Element]:
    """The child elements of ``parent`` (known size, payload inside ``w``)."""
    if parent.unknown_size:
        raise MatroskaParseError(f"{w.url}: element {parent.id:#x} at offset {parent.start} has an unknown size.")
    out = []
    pos = parent.data_start
    while pos < parent.end:
        e = read_element(w, pos)
        if e.unknown_size or e.end > parent.end:
            raise MatroskaParseError(
                f"{w.url}: element {e.id:#x} at offset {e.start} runs past its parent {parent.id:#x} "
                f"(which ends at {parent.end}); the file is corrupt."
            )
        out.append(e)
        pos = e.end
    return out
