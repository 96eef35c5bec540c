"""A seekable read-only file over a RangeSource, for FFmpeg/PyAV demuxing."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import WriteableBuffer

    from ._source import RangeSource

__all__ = ["RangeFile"]

# readall() fetches the rest of the object in pieces of this size, so a size
# claimed by a server (and never backed by bytes) costs no memory up front.
_READALL_PIECE_BYTES = 8 * 1024 * 1024


class RangeFile(io.RawIOBase):
    """Read-only, seekable binary file; each miss fetches ``max(asked, read_ahead_bytes)`` bytes.

    Every fetch goes through ``RangeSource.read_ranges``, so it is coalesced,
    retried, checked and recorded like any other read. Reads past the end
    return fewer bytes (``b""`` at EOF), as files do. One buffer is kept: the
    last fetch, which also serves short backward seeks inside it.

    Args:
        source: the RangeSource to read from (not closed by ``close()``).
        read_ahead_bytes: minimum bytes per fetch.
    """

    def __init__(self, source: RangeSource, *, read_ahead_bytes: int) -> None:
        super().__init__()
        if read_ahead_bytes < 0:
            raise ValueError(f"RangeFile.read_ahead_bytes must be >= 0, got {read_ahead_bytes}")
        self._source = source
        self._read_ahead = int(read_ahead_bytes)
        self._size = source.size
        self._pos = 0
        self._buf = b""
        self._buf_start = 0
        self.name = source.url

    @property
    def size(self) -> int:
        """Size of the object in bytes."""
        return self._size

    @property
    def source(self) -> RangeSource:
        """The RangeSource this file reads through."""
        return self._source

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._checkClosed()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"RangeFile.seek: whence must be 0, 1 or 2, got {whence}")
        if pos < 0:
            raise ValueError(f"RangeFile.seek: negative position {pos}")
        self._pos = int(pos)
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        done = 0
        while done < want:
            pos = self._pos
            offset = pos - self._buf_start
            if 0 <= offset < len(self._buf):
                n = min(want - done, len(self._buf) - offset)
                view[done : done + n] = self._buf[offset : offset + n]
                done += n
                self._pos += n
                continue
            stop = min(self._size, pos + max(want - done, self._read_ahead))
            self._buf = self._source.read(pos, stop)
            self._buf_start = pos
        return done

    def readall(self) -> bytes:
        """The rest of the object, fetched in bounded pieces: memory follows the
        bytes that arrive, never the size the server claimed."""
        self._checkClosed()
        parts = []
        piece = max(self._read_ahead, _READALL_PIECE_BYTES)
        while self._pos < self._size:
            data = self.read(min(piece, self._size - self._pos))
            if not data:
                break
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        self._buf = b""
        super().close()

    def __repr__(self) -> str:
        return f"RangeFile({self.name!r}, size={self._size}, pos={self._pos})"
