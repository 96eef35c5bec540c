"""Fragment lookup by time without reading the whole fragment table.

For fragmented files with neither sidx nor mfra, ``FragmentLocator`` finds
the fragment holding a decode time by bisection over byte offsets: read a
small window at the midpoint, resynchronise on the next moof (a 'moof'
fourcc whose first child is a 16-byte 'mfhd'), read its tfdt, halve. Each
step costs one read, plus a few doubling reads when the window lands in a
long mdat, so a lookup is O(log n) small reads for n fragments.
"""

from __future__ import annotations

import struct

from .._errors import MP4ParseError
from .._types import ByteRange
from ._boxes import Box, Buffer, parse_box_header
from ._edits import simple_time_offset
from ._fragments import FragmentState, MoofSamples, moof_first_tfdt, parse_moof
from ._limits import MAX_FRAGMENT_BOX_BYTES
from ._locate import locate, walk_after_moov
from ._moov import TrackExtends, parse_moov
from ._read import _select_track

__all__ = ["FragmentLocator"]

_WINDOW_BYTES = 16 * 1024
_MAX_MOOF_BYTES = 16 * 1024 * 1024


class FragmentLocator:
    """Finds the fragment of a fragmented MP4 that holds a given decode time.

    Args:
        source: a RangeSource.
        track: track_ID, default the first video track.
    """

    def __init__(self, source, *, track: int | None = None) -> None:
        self.source = source
        self.url = source.url
        self.size = int(source.size)
        layout = locate(source)
        movie = parse_moov(layout.moov_buf, layout.moov)
        trak = _select_track(movie, track, self.url)
        self.track_id = trak.track_ID
        self.timescale = trak.timescale or movie.timescale or 1
        self._trex = movie.trex.get(trak.track_ID) or TrackExtends(trak.track_ID, 1, 0, 0, 0)
        self.time_offset = (
            simple_time_offset(trak.edits, movie_timescale=movie.timescale, media_timescale=self.timescale)
            if trak.edits else 0
        )
        walk_after_moov(source, layout)
        if layout.first_moof is None:
            raise MP4ParseError(f"{self.url}: fragmented file without any moof after the moov.")
        self._first = layout.first_moof
        self.requests = 0
        self._first_moof: tuple[Buffer, Box] | None = None

    def _read(self, start: int, stop: int) -> Buffer:
        stop = min(stop, self.size)
        self.requests += 1
        data = self.source.read_ranges([ByteRange(start, stop)])[0]
        return Buffer(bytes(data), start, url=self.url, file_size=self.size)

    def _moof_at(self, pos: int, buf: Buffer | None = None) -> tuple[Buffer, Box]:
        if buf is None or not buf.covers(pos, min(self.size, pos + 16)):
            buf = self._read(pos, pos + _WINDOW_BYTES)
        box = parse_box_header(buf, pos, self.size)
        if box.type != "moof":
            raise MP4ParseError(f"{self.url}: expected a moof at offset {pos}, found '{box.type}'.")
        if box.size > MAX_FRAGMENT_BOX_BYTES:
            raise MP4ParseError(
                f"{self.url}: moof at offset {pos} claims {box.size} bytes; expected at most "
                f"{MAX_FRAGMENT_BOX_BYTES} (the file is corrupt)."
            )
        if not buf.covers(pos, min(self.size, box.end + 16)):
            buf = self._read(pos, box.end + 16)
        return buf, box

    def _next_moof_after(self, pos: int, stop: int) -> tuple[int, Buffer] | None:
        """First verified moof start in ``[pos, stop)`` and the bytes read there,
        reading doubling windows."""
        window = _WINDOW_BYTES
        while pos < stop:
            end = min(stop + 16, pos + window, self.size)
            buf = self._read(pos, end)
            data = buf.data
            at = data.find(b"moof", 4)
            while at >= 0:
                q = at - 4
                if q + 16 <= len(data):
                    size, = struct.unpack_from(">I", data, q)
                    if (16 <= size <= _MAX_MOOF_BYTES and data[q + 12 : q + 16] == b"mfhd"
                            and struct.unpack_from(">I", data, q + 8)[0] == 16 and pos + q < stop):
                        return pos + q, buf
                at = data.find(b"moof", at + 1)
            if end >= min(stop + 16, self.size):
                return None  # scanned up to stop
            pos = max(pos + 1, end - 16)  # overlap so a header split across windows is seen
            window *= 2
        return None

    def _after(self, buf: Buffer, box: Box) -> int:
        """Offset just past the box that follows a moof (normally its mdat)."""
        if box.end + 8 > self.size:
            return self.size
        nxt = parse_box_header(buf, box.end, self.size)
        return nxt.start if nxt.type == "moof" else nxt.end

    def _tfdt(self, buf: Buffer, box: Box) -> int:
        t = moof_first_tfdt(buf, box, self.track_id)
        if t is None:
            raise MP4ParseError(f"{self.url}: moof at {box.start} has no tfdt for track {self.track_id}; "
                                "bisection needs tfdt (use the complete index).")
        return t - self.time_offset

    def fragment_for_time(self, dts_ticks: int) -> MoofSamples:
        """Samples of the last fragment whose first dts is <= ``dts_ticks``."""
        if self._first_moof is None:
            self._first_moof = self._moof_at(self._first)
        lo_buf, lo_box = self._first_moof
        lo = lo_box.start
        hi = self.size
        while True:
            nxt = self._after(lo_buf, lo_box)
            if nxt >= hi:
                break  # no fragment starts between lo and hi
            mid = max((lo + hi) // 2, nxt)
            found = self._next_moof_after(mid, hi)
            if found is None:
                # No fragment starts in [mid, hi): the answer starts before mid.
                hi = mid
                continue
            cand, window = found
            buf, box = self._moof_at(cand, window)
            if self._tfdt(buf, box) <= dts_ticks:
                lo, lo_buf, lo_box = cand, buf, box
            else:
                hi = cand
        state = FragmentState(self.track_id, self._trex, time_offset=self.time_offset)
        return parse_moof(lo_buf, lo_box, state, max_samples=self.size)
