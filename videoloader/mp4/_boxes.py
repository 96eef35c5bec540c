"""ISO/IEC 14496-12 box headers and bounds-checked field reads.

A box is ``size(32) type(32) [largesize(64) if size == 1] [usertype(128) if
type == 'uuid']`` (ISO 14496-12 4.2). ``size == 0`` means "to the end of the
enclosing container" (the file, for a top-level box); ``1 < size < 8`` cannot
hold its own header and is broken.

Everything here works on bytes already in memory; ``_locate`` decides which
bytes to fetch. All positions are absolute file offsets, so error messages and
sample offsets never need translating.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .._errors import MP4ParseError, TruncatedFileError

__all__ = ["Box", "Buffer", "FieldReader", "iter_children", "parse_box_header"]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

#: Boxes that contain only other boxes (the ones the index path descends into).
CONTAINER_TYPES = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "edts", "mvex", "moof", "traf", "mfra", "dinf", "udta"}
)


@dataclass(frozen=True)
class Box:
    """One box header: where it starts, how long its header is, where it ends."""

    type: str
    """Four-character code (latin-1 decoded, so any 4 bytes round-trip)."""
    start: int
    """Absolute file offset of the first header byte."""
    header_size: int
    """8, 16 (largesize) or +16 for ``uuid``."""
    size: int
    """Total size in bytes, header included (size 0 already resolved)."""

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def body_start(self) -> int:
        return self.start + self.header_size


class Buffer:
    """Bytes of ``[start, start + len(data))`` of one file, plus the context
    errors need (redacted URL and file size)."""

    __slots__ = ("data", "start", "url", "file_size")

    def __init__(self, data: bytes, start: int, *, url: str, file_size: int) -> None:
        self.data = data
        self.start = start
        self.url = url
        self.file_size = file_size

    @property
    def stop(self) -> int:
        return self.start + len(self.data)

    def covers(self, start: int, stop: int) -> bool:
        return self.start <= start and stop <= self.stop

    def view(self, start: int, stop: int) -> memoryview:
        """Bytes ``[start, stop)`` (absolute offsets); they must be in the buffer."""
        if not self.covers(start, stop):
            raise MP4ParseError(
                f"{self.url}: internal read of [{start}, {stop}) outside the fetched bytes [{self.start}, {self.stop})"
            )
        return memoryview(self.data)[start - self.start : stop - self.start]


def parse_box_header(buf: Buffer, pos: int, limit: int, *, parent: str = "file") -> Box:
    """Read the box header at ``pos`` whose box must end by ``limit``.

    Args:
        buf: bytes holding at least the header.
        pos: absolute offset of the header.
        limit: end of the enclosing container (the file size at top level).
        parent: enclosing box type, for messages.

    Raises:
        TruncatedFileError: the header or the box runs past the end of the file.
        MP4ParseError: size 2..7, or the box overruns its parent.
    """
    url = buf.url
    if pos + 8 > limit:
        if limit >= buf.file_size and pos + 8 > buf.file_size:
            raise TruncatedFileError(
                f"{url}: box header at offset {pos} needs 8 bytes but the file ends at {buf.file_size}; "
                "the file is truncated."
            )
        raise MP4ParseError(
            f"{url}: {limit - pos} stray bytes at offset {pos} inside '{parent}' (a box header needs 8)."
        )
    if pos + 8 > buf.stop or pos < buf.start:
        raise MP4ParseError(f"{url}: internal: box header at {pos} not in fetched bytes [{buf.start}, {buf.stop})")
    size = _U32.unpack_from(buf.data, pos - buf.start)[0]
    btype = bytes(buf.data[pos - buf.start + 4 : pos - buf.start + 8]).decode("latin-1")
    header = 8
    if size == 1:
        if pos + 16 > limit or pos + 16 > buf.stop:
            if pos + 16 > buf.file_size:
                raise TruncatedFileError(
                    f"{url}: box '{btype}' at offset {pos} has a 64-bit size but the file ends at {buf.file_size}."
                )
            raise MP4ParseError(f"{url}: box '{btype}' at offset {pos}: 64-bit size field runs past '{parent}'.")
        size = _U64.unpack_from(buf.data, pos - buf.start + 8)[0]
        header = 16
        if size < 16:
            raise MP4ParseError(f"{url}: box '{btype}' at offset {pos} has 64-bit size {size} < 16.")
    elif size == 0:
        # "box extends to the end of the file" (or of its container).
        size = limit - pos
    elif size < 8:
        raise MP4ParseError(
            f"{url}: box '{btype}' at offset {pos} has size {size}; a box is at least 8 bytes (the file is corrupt)."
        )
    if btype == "uuid":
        header += 16
        if size < header:
            raise MP4ParseError(f"{url}: 'uuid' box at offset {pos} has size {size} < {header}.")
    end = pos + size
    if end > limit:
        if end > buf.file_size and limit >= buf.file_size:
            raise TruncatedFileError(
                f"{url}: box '{btype}' at offset {pos} claims {size} bytes (to {end}) but the file "
                f"ends at {buf.file_size}; the file is truncated."
            )
        if end > buf.file_size:
            raise TruncatedFileError(
                f"{url}: box '{btype}' at offset {pos} inside '{parent}' claims {size} bytes, past the "
                f"end of the file ({buf.file_size})."
            )
        raise MP4ParseError(
            f"{url}: box '{btype}' at offset {pos} claims {size} bytes, overrunning its parent "
            f"'{parent}' (ends at {limit})."
        )
    return Box(btype, pos, header, size)


def iter_children(buf: Buffer, parent: Box, *, max_children: int = 1_000_000) -> Iterator[Box]:
    """Yield the child boxes of ``parent`` (which must be entirely in ``buf``)."""
    pos = parent.body_start
    end = parent.end
    if parent.type == "meta":
        # 'meta' is a full box (version + flags) in ISO BMFF, a plain one in QuickTime.
        pos += 4
    count = 0
    while pos < end:
        if end - pos < 8:
            # Some muxers pad containers with up to 7 zero bytes; FFmpeg skips them too.
            if not any(buf.view(pos, end)):
                return
        child = parse_box_header(buf, pos, end, parent=parent.type)
        yield child
        pos = child.end
        count += 1
        if count > max_children:
            raise MP4ParseError(f"{buf.url}: more than {max_children} boxes inside '{parent.type}' at {parent.start}.")


class FieldReader:
    """Sequential big-endian reads inside one box body, each bounds-checked.

    Reading past the box raises MP4ParseError naming the box: a table whose
    count does not fit its box is broken, not truncated (the box header was
    already checked against the file size).
    """

    __slots__ = ("buf", "box", "pos", "end")

    def __init__(self, buf: Buffer, box: Box) -> None:
        self.buf = buf
        self.box = box
        self.pos = box.body_start
        self.end = box.end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or self.pos + nbytes > self.end:
            raise MP4ParseError(
                f"{self.buf.url}: '{self.box.type}' box at offset {self.box.start} ({self.box.size} bytes) "
                f"is too short for {what}: needs {nbytes} bytes at offset {self.pos}, has {self.end - self.pos}."
            )

    def bytes(self, nbytes: int, what: str = "its fields") -> bytes:
        self.need(nbytes, what)
        out = bytes(self.buf.view(self.pos, self.pos + nbytes))
        self.pos += nbytes
        return out

    def view(self, nbytes: int, what: str = "its table") -> memoryview:
        self.need(nbytes, what)
        out = self.buf.view(self.pos, self.pos + nbytes)
        self.pos += nbytes
        return out

    def _unpack(self, fmt: struct.Struct, what: str) -> int:
        self.need(fmt.size, what)
        value = fmt.unpack_from(self.buf.data, self.pos - self.buf.start)[0]
        self.pos += fmt.size
        return value

    def u8(self, what: str = "a field") -> int:
        return self._unpack(_S_U8, what)

    def u16(self, what: str = "a field") -> int:
        return self._unpack(_S_U16, what)

    def u24(self, what: str = "a field") -> int:
        hi = self.u8(what)
        return (hi << 16) | self.u16(what)

    def u32(self, what: str = "a field") -> int:
        return self._unpack(_U32, what)

    def s32(self, what: str = "a field") -> int:
        return self._unpack(_S_S32, what)

    def u64(self, what: str = "a field") -> int:
        return self._unpack(_U64, what)

    def s64(self, what: str = "a field") -> int:
        return self._unpack(_S_S64, what)

    def full_box(self) -> tuple[int, int]:
        """``(version, flags)`` of a FullBox."""
        version = self.u8("version")
        flags = self.u24("flags")
        return version, flags

    def skip(self, nbytes: int, what: str = "reserved fields") -> None:
        self.need(nbytes, what)
        self.pos += nbytes

    def check_table(self, count: int, entry_size: int, what: str) -> None:
        """Refuse ``count`` entries of ``entry_size`` bytes unless they fit the box
        (checked before anything is allocated)."""
        total = count * entry_size
        if total > self.end - self.pos:
            raise MP4ParseError(
                f"{self.buf.url}: '{self.box.type}' box at offset {self.box.start} claims {count} {what} "
                f"({total} bytes) but holds only {self.end - self.pos} bytes after its header; the box is corrupt."
            )


_S_U8 = struct.Struct(">B")
_S_U16 = struct.Struct(">H")
_S_S32 = struct.Struct(">i")
_S_S64 = struct.Struct(">q")
