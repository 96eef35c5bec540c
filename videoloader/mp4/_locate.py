"""Find the moov (and the start of the fragments) with a few small range reads.

The first ``HEAD_BYTES`` of the file are read once; top-level box headers are
walked from there. A header outside the bytes already fetched costs one read
of ``PROBE_BYTES`` starting at that header, which also brings in a small moov
sitting at the end of the file; when what is left of the file after that read
costs less than a round trip (the source's ``round_trip_cost_bytes``), the
read runs to the end instead, so a moov at the end of a long video arrives in
the same round trip. mdat bodies are never read otherwise. A moov larger than
what was fetched costs one more read of exactly its bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._errors import MP4ParseError, NotAVideoError, TruncatedFileError, UnsupportedFormatError
from .._types import ByteRange
from ._boxes import Box, Buffer, parse_box_header
from ._limits import MAX_SIDX_BYTES

__all__ = ["HEAD_BYTES", "IndexSource", "Layout", "locate", "probe_stop", "sniff"]

# The first read: ftyp + a short clip's moov. Small on purpose: what it holds
# beyond the moov is kept by the source and reused only if a frame needs it; a
# larger moov costs one more read, of only its bytes not yet fetched.
HEAD_BYTES = 16 * 1024
PROBE_BYTES = 64 * 1024
MAX_MOOV_BYTES = 256 * 1024 * 1024
MAX_TOP_LEVEL_READS = 64

#: Top-level box types that may start an ISO-BMFF / QuickTime file.
_FIRST_BOX_TYPES = frozenset(
    {
        "ftyp",
        "styp",
        "moov",
        "mdat",
        "free",
        "skip",
        "wide",
        "pdin",
        "moof",
        "sidx",
        "uuid",
        "meta",
        "junk",
        "pnot",
        "prfl",
    }
)
_TOP_LEVEL_AFTER_MOOV = frozenset(
    {"free", "skip", "wide", "sidx", "styp", "prft", "emsg", "uuid", "meta", "udta", "junk"}
)


class IndexSource(Protocol):
    """What the index is read through: a RangeSource, or the wrapper counting its reads.

    ``retain=True`` is passed only to a source whose ``supports_retain`` is
    true; a ``read_head(nbytes, *, retain)`` method is used when there is one.
    """

    @property
    def url(self) -> str: ...

    @property
    def size(self) -> int: ...

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]: ...


@dataclass
class Layout:
    """What the top-level walk found."""

    moov: Box
    moov_buf: Buffer
    head: Buffer
    top_level: list[Box] = field(default_factory=list)
    buffers: list[Buffer] = field(default_factory=list)
    first_moof: int | None = None
    """Offset of the first top-level moof after the moov, when seen."""
    sidx: list[Box] = field(default_factory=list)

    def buffer_for(self, start: int, stop: int) -> Buffer | None:
        for b in self.buffers:
            if b.covers(start, stop):
                return b
        return None


def sniff(data: bytes, url: str) -> None:
    """Raise NotAVideoError unless ``data`` (the file's first bytes) starts with
    an ISO-BMFF box header."""
    if len(data) >= 8:
        btype = data[4:8]
        if all(0x20 <= c < 0x7F for c in btype) and btype.decode("ascii") in _FIRST_BOX_TYPES:
            return
    head = data[:64]
    stripped = head.lstrip()
    if stripped[:1] == b"<":
        what = "an HTML/XML document"
    elif head[:4] == b"\x1a\x45\xdf\xa3":
        what = "a Matroska/WebM file"
    elif head[:1] == b"\x47" and (len(data) < 189 or data[188:189] == b"\x47"):
        what = "an MPEG transport stream"
    elif head[:4] == b"RIFF":
        what = "a RIFF (AVI/WAV) file"
    elif head[:4] == b"OggS":
        what = "an Ogg file"
    elif stripped[:1] in (b"{", b"["):
        what = "a JSON document"
    elif len(data) == 0:
        what = "an empty file"
    else:
        what = f"bytes {head[:8]!r}"
    raise NotAVideoError(
        f"{url}: not an ISO-BMFF (MP4/MOV) file: it starts with {what}, expected a box header "
        "such as 'ftyp' or 'moov'. Check the URL; other containers go through the demux fallback."
    )


def probe_stop(source: IndexSource, start: int, size: int) -> int:
    """Where a probe read from ``start`` ends: ``PROBE_BYTES`` on, or the end of
    the file when the bytes beyond that cost less than the round trip a second
    read would (``round_trip_cost_bytes`` of a source that prices one)."""
    stop = min(size, start + PROBE_BYTES)
    round_trip_cost = getattr(source, "round_trip_cost_bytes", None)
    if isinstance(round_trip_cost, int) and size - stop <= round_trip_cost:
        return size
    return stop


def _read(source: IndexSource, start: int, stop: int, url: str, size: int) -> Buffer:
    # retain=True: a RangeSource keeps probe blocks, which often hold the first
    # samples (or the whole of a small file), so the frames after need no re-read.
    if getattr(source, "supports_retain", False):
        data = source.read_ranges([ByteRange(start, stop)], retain=True)[0]
    else:
        data = source.read_ranges([ByteRange(start, stop)])[0]
    if len(data) != stop - start:
        raise TruncatedFileError(
            f"{url}: asked for bytes [{start}, {stop}) and got {len(data)}; the file is shorter than {size}."
        )
    return Buffer(bytes(data), start, url=url, file_size=size)


def locate(source: IndexSource, *, max_moov_bytes: int = MAX_MOOV_BYTES) -> Layout:
    """Walk the top-level boxes of ``source`` until the moov is in memory.

    Raises:
        NotAVideoError: not ISO-BMFF at all.
        TruncatedFileError: a top-level box runs past the end of the file.
        MP4ParseError: broken headers, or no moov.
    """
    url = source.url
    if hasattr(source, "read_head"):
        # One request learns the size too (no HEAD round trip on HTTP).
        data = source.read_head(HEAD_BYTES, retain=True)
        size = int(source.size)
        if size <= 0:
            raise NotAVideoError(f"{url}: the file is empty (0 bytes); expected an MP4.")
        head = Buffer(bytes(data), 0, url=url, file_size=size)
    else:
        size = int(source.size)
        if size <= 0:
            raise NotAVideoError(f"{url}: the file is empty (0 bytes); expected an MP4.")
        head = _read(source, 0, min(size, HEAD_BYTES), url, size)
    sniff(head.data, url)
    buffers = [head]
    top: list[Box] = []
    reads = 0

    def buffer_at(pos: int, nbytes: int) -> Buffer:
        nonlocal reads
        for b in buffers:
            if b.covers(pos, min(size, pos + nbytes)):
                return b
        reads += 1
        if reads > MAX_TOP_LEVEL_READS:
            raise MP4ParseError(
                f"{url}: no moov among the first {len(top)} top-level boxes after {MAX_TOP_LEVEL_READS} reads; "
                "the file is not a playable MP4."
            )
        b = _read(source, pos, probe_stop(source, pos, size), url, size)
        buffers.append(b)
        return b

    pos = 0
    moov: Box | None = None
    while pos < size:
        if size - pos < 8:
            # Trailing garbage shorter than a header: FFmpeg ignores it.
            break
        buf = buffer_at(pos, 16)
        box = parse_box_header(buf, pos, size)
        top.append(box)
        if box.size == 0:  # pragma: no cover - parse_box_header resolves size 0
            raise MP4ParseError(f"{url}: zero-size box at {pos}")
        if box.type == "moov":
            moov = box
            break
        pos = box.end
    if moov is None:
        raise MP4ParseError(
            f"{url}: walked {len(top)} top-level boxes ({', '.join(b.type for b in top[:8])}...) and found no "
            "'moov'; the file is incomplete (still being written?) or not a movie."
        )
    if moov.size > max_moov_bytes:
        raise UnsupportedFormatError(f"{url}: moov is {moov.size} bytes, above the {max_moov_bytes}-byte index limit.")
    moov_buf = None
    for b in buffers:
        if b.covers(moov.start, moov.end):
            moov_buf = b
    if moov_buf is None:
        moov_buf = _read(source, moov.start, moov.end, url, size)
        buffers.append(moov_buf)
    layout = Layout(moov=moov, moov_buf=moov_buf, head=head, top_level=top, buffers=buffers)
    return layout


def walk_after_moov(source: IndexSource, layout: Layout) -> None:
    """Find sidx boxes and the first moof after the moov of a fragmented file,
    reading only headers (and sidx bodies) that were not fetched yet."""
    url = source.url
    size = int(source.size)
    pos = layout.moov.end
    reads = 0
    while pos + 8 <= size:
        buf = layout.buffer_for(pos, min(size, pos + 16))
        if buf is None:
            reads += 1
            if reads > MAX_TOP_LEVEL_READS:
                break
            buf = _read(source, pos, min(size, pos + PROBE_BYTES), url, size)
            layout.buffers.append(buf)
        box = parse_box_header(buf, pos, size)
        layout.top_level.append(box)
        if box.type == "moof":
            layout.first_moof = box.start
            return
        if box.type == "sidx":
            if box.size > MAX_SIDX_BYTES:
                raise MP4ParseError(
                    f"{url}: sidx at offset {box.start} claims {box.size} bytes; a sidx holds at most "
                    f"{MAX_SIDX_BYTES} (the file is corrupt)."
                )
            if layout.buffer_for(box.start, box.end) is None:
                layout.buffers.append(_read(source, box.start, box.end, url, size))
            layout.sidx.append(box)
        elif box.type not in _TOP_LEVEL_AFTER_MOOV:
            # mdat (first fragment's data when the moov holds samples), mfra...
            if box.type == "mfra":
                return
        pos = box.end
