"""The fragment walk of an MP4 without sidx or mfra, in concurrent lanes.

Without a fragment table, a moof's offset is known only from the box before
it: each moof read also brings the next box header (normally its mdat), whose
end is the next moof. Walked as one chain, that is one round trip per
fragment (300 round trips for a 10-minute file cut in 2-second fragments).

Here the walk runs in *lanes*. Lane 0 starts at the first moof. Once the first
fragment's size is known, the rest of the fragment area is split into regions
(how many: ``plan_lanes``), and each region's lane starts at the first moof at
or after the region's start, found by *resynchronising*: windows read at the
region's start are scanned for a box header ``size 'moof'`` whose first child
is an ``mfhd`` (16 bytes, version and flags 0), and a candidate is taken only
if the whole moof parses (``parse_moof``), its size is within the caps and the
box after it is an ``mdat`` or ``moof`` ending inside the file. Windows start
at an eighth of the first fragment's size (at least ``MIN_WINDOW_BYTES``) and
double each round up to ``MAX_RESYNC_WINDOW_BYTES``; a scan stops at its
region's end. mfhd sequence numbers are not used (some muxers write 0 or
repeat them).

Every lane then steps from box to box exactly as the single chain does, all
lanes' next reads in one ``read_ranges`` call per round. A lane stops at an
offset another lane has already visited (normally the next lane's start).

The result is the chain from the first moof, followed offset by offset
through what the lanes visited: the same moofs, in the same order, as the
sequential walk. A lane is on the chain only if the chain reaches its start
exactly, and a walk from an offset the chain reaches is a walk of the file
itself; a lane started at a false 'moof' inside mdat payload costs bytes but
never changes the index, and errors met by a lane are raised only if the
chain uses the box where they were met.

The cost model (``plan_lanes``): each extra lane's scan costs about
``SCAN_COST_FRACTION`` of a fragment in bytes (the next moof lies on average
half a fragment past the region's start; doubling windows overshoot), and
each round trip saved is worth the source's ``round_trip_cost_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import ContainerError, MP4ParseError, UnsupportedFormatError
from .._types import ByteRange
from ._boxes import Box, Buffer, parse_box_header
from ._fragments import FragmentState, parse_moof
from ._limits import (
    MAX_FRAGMENT_BOX_BYTES,
    MAX_INDEX_BYTES,
    MAX_RESYNC_LANES,
    MAX_RESYNC_SCAN_BYTES,
    MAX_RESYNC_WINDOW_BYTES,
    MAX_SAMPLES,
)
from ._locate import IndexSource, Layout
from ._moov import TrackExtends

__all__ = ["MIN_WINDOW_BYTES", "SCAN_COST_FRACTION", "FragmentWalk", "plan_lanes", "walk_fragments"]

#: Smallest window a scan reads in its first round.
MIN_WINDOW_BYTES = 32 * 1024
#: Bytes one lane's scan costs, as a fraction of a fragment: the next moof lies
#: on average half a fragment past the region's start, and windows that double
#: from an eighth of a fragment read about 0.8 of one before they hold it.
SCAN_COST_FRACTION = 0.8
#: A region holds at least this many fragments (shorter ones save too little).
MIN_REGION_FRAGMENTS = 2
#: Bytes of a moof candidate's header the quick check needs: the moof header
#: (8) and its mfhd (16).
_CANDIDATE_HEAD = 24
_MFHD_HEAD = b"\x00\x00\x00\x10mfhd\x00\x00\x00\x00"


def first_window(fragment_bytes: int) -> int:
    """A scan's first window: an eighth of a fragment, within the window bounds."""
    return max(MIN_WINDOW_BYTES, min(MAX_RESYNC_WINDOW_BYTES, fragment_bytes // 8))


def scan_rounds(fragment_bytes: int) -> int:
    """Rounds doubling windows take to cover one fragment (a scan's worst case on regular fragments)."""
    window = first_window(fragment_bytes)
    covered, rounds = 0, 0
    while covered < fragment_bytes:
        covered += window
        window = min(2 * window, MAX_RESYNC_WINDOW_BYTES)
        rounds += 1
    return max(rounds, 1)


def plan_lanes(*, area: int, fragment_bytes: int, round_trip_cost_bytes: int, max_lanes: int) -> int:
    """How many lanes to start by resynchronising (0: walk one chain).

    With ``n = area / fragment_bytes`` fragments left, one chain costs ``n``
    round trips. ``k`` more lanes split the area into ``k + 1`` regions: the
    walk then takes about ``scan_rounds + n / (k + 1)`` rounds and the scans
    read about ``k x SCAN_COST_FRACTION x fragment_bytes``. The ``k`` that
    minimises ``bytes + rounds x round_trip_cost_bytes`` wins; a region holds
    at least ``MIN_REGION_FRAGMENTS`` fragments.

    Args:
        area: bytes of the fragment area after the first fragment.
        fragment_bytes: size of the first fragment (moof + mdat): the estimate
            of every fragment's size.
        round_trip_cost_bytes: what one round trip is worth, in bytes.
        max_lanes: the most lanes to start.
    """
    if area <= 0 or fragment_bytes <= 0 or round_trip_cost_bytes <= 0 or max_lanes <= 0:
        return 0
    n = area / fragment_bytes
    extra_rounds = scan_rounds(fragment_bytes)
    best_k, best_cost = 0, n * round_trip_cost_bytes
    for k in range(1, max_lanes + 1):
        if n / (k + 1) < MIN_REGION_FRAGMENTS:
            break
        cost = k * SCAN_COST_FRACTION * fragment_bytes + (extra_rounds + math.ceil(n / (k + 1))) * round_trip_cost_bytes
        if cost < best_cost:
            best_k, best_cost = k, cost
    return best_k


@dataclass
class _Node:
    """What the walk found at one offset: a moof (with the bytes holding it) or another box."""

    next: int | None = None
    buf: Buffer | None = None
    box: Box | None = None
    error: ContainerError | None = None


@dataclass
class _Scan:
    """One region's search for its first moof."""

    pos: int
    """Next offset that may start a moof."""
    stop: int
    """The region's end: a moof starting here or later belongs to the next region."""
    window: int
    need: int = 0
    """Bytes the next read must hold (a candidate moof longer than the window)."""


@dataclass
class FragmentWalk:
    """The walk's result and what it cost."""

    moofs: list[tuple[Buffer, Box]]
    """The chain's moofs, in file order, each with a buffer holding it and 16 bytes after."""
    lanes: list[int]
    """Offsets where resynchronised lanes started (on the chain or not)."""
    rounds: int
    scan_bytes: int
    header_bytes: int


class _Walker:
    def __init__(
        self,
        source: IndexSource,
        layout: Layout,
        *,
        limit: int,
        track_ID: int,
        trex: TrackExtends,
        round_trip_cost_bytes: int,
        max_lanes: int,
    ) -> None:
        self.source = source
        self.layout = layout
        self.url = source.url
        self.size = int(source.size)
        self.limit = limit
        self.track_ID = track_ID
        self.trex = trex
        self.round_trip_cost_bytes = round_trip_cost_bytes
        self.max_lanes = max_lanes
        self.nodes: dict[int, _Node] = {}
        self.seen: set[int] = set()
        self.scans: list[_Scan] = []
        self.lanes: list[int] = []
        self.max_moof = 0
        self.rounds = 0
        self.scan_bytes = 0
        self.header_bytes = 0
        self.max_samples = min(self.size, MAX_SAMPLES)

    # -- one offset ----------------------------------------------------------------------

    def _visit(self, off: int, buf: Buffer) -> int | None:
        """Record the box at ``off`` (``buf`` holds it, and 16 bytes after a moof); return the next offset."""
        node = _Node()
        self.nodes[off] = node
        try:
            box = parse_box_header(buf, off, self.size)
            if box.type == "moof":
                self._moof_size(off, buf)  # raises past the cap
                node.buf, node.box = buf, box
                nxt_pos = box.end
                if nxt_pos + 8 <= self.limit:
                    covered = buf.covers(nxt_pos, min(self.size, nxt_pos + 16))
                    nxt = parse_box_header(buf, nxt_pos, self.size) if covered else None
                    if nxt is None or nxt.type == "moof":
                        node.next = nxt_pos
                    elif nxt.type != "mfra":
                        node.next = nxt.end
            elif box.type != "mfra":
                node.next = box.end
        except ContainerError as e:
            node.error = e
            node.next = None
        return node.next

    def _moof_size(self, off: int, buf: Buffer) -> int | None:
        """The moof's size when ``buf`` starts a moof, else None; MP4ParseError past the cap."""
        box = parse_box_header(buf, off, self.size)
        if box.type != "moof":
            return None
        if box.size > MAX_FRAGMENT_BOX_BYTES:
            raise MP4ParseError(
                f"{self.url}: moof at offset {off} claims {box.size} bytes; expected at most "
                f"{MAX_FRAGMENT_BOX_BYTES} (the file is corrupt)."
            )
        return box.size

    # -- resynchronising -----------------------------------------------------------------

    def _candidate(self, off: int, data: bytes) -> Buffer | None:
        """A buffer holding the moof at ``off`` (``data`` starts there) when it is one, else None."""
        buf = Buffer(data, off, url=self.url, file_size=self.size)
        try:
            box = parse_box_header(buf, off, self.size)
            if box.type != "moof" or box.size > MAX_FRAGMENT_BOX_BYTES or box.end + 8 > self.size:
                return None
            if not buf.covers(box.end, min(self.size, box.end + 16)):
                return None
            state = FragmentState(self.track_ID, self.trex)
            parse_moof(buf, box, state, max_samples=self.max_samples)
            nxt = parse_box_header(buf, box.end, self.size)
        except ContainerError:
            return None
        if nxt.type not in ("mdat", "moof") or nxt.end > self.size:
            return None
        return buf

    def _scan(self, scan: _Scan, start: int, data: bytes) -> int | None:
        """Look for a moof in ``data`` (read at ``start``); its offset, or None (``scan`` moves on)."""
        at_eof = start + len(data) >= self.size
        i = data.find(b"moof", 4)
        while i != -1:
            c = i - 4
            off = start + c
            if off >= scan.stop:
                scan.pos = scan.stop
                return None
            if c + _CANDIDATE_HEAD > len(data):
                if at_eof:
                    break
                scan.pos, scan.need = off, _CANDIDATE_HEAD
                return None
            if data[c + 8 : c + 20] == _MFHD_HEAD:
                moof_size = int.from_bytes(data[c : c + 4], "big")
                if _CANDIDATE_HEAD < moof_size <= MAX_FRAGMENT_BOX_BYTES:
                    want = min(self.size - off, moof_size + 16)
                    if c + want > len(data):
                        scan.pos, scan.need = off, want
                        return None
                    buf = self._candidate(off, bytes(data[c : c + want]))
                    if buf is not None:
                        if off not in self.seen:
                            self.seen.add(off)
                            self.lanes.append(off)
                            self._visit(off, buf)
                        return off
            i = data.find(b"moof", i + 1)
        scan.need = 0
        scan.pos = scan.stop if at_eof else max(scan.pos + 1, start + len(data) - (_CANDIDATE_HEAD - 1))
        scan.window = min(2 * scan.window, MAX_RESYNC_WINDOW_BYTES)
        return None

    def _start_lanes(self, first: int) -> None:
        node = self.nodes.get(first)
        if node is None or node.next is None or node.error is not None:
            return
        start = node.next
        area = self.limit - start
        fragment = start - first
        k = plan_lanes(
            area=area,
            fragment_bytes=fragment,
            round_trip_cost_bytes=self.round_trip_cost_bytes,
            max_lanes=self.max_lanes,
        )
        bounds = [start + area * i // (k + 1) for i in range(1, k + 2)]
        window = first_window(fragment)
        self.scans = [_Scan(pos=a, stop=b, window=window) for a, b in zip(bounds[:-1], bounds[1:], strict=False)]

    # -- rounds --------------------------------------------------------------------------

    def _read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        self.rounds += 1
        return [bytes(d) for d in self.source.read_ranges([ByteRange(a, b) for a, b in ranges])]

    def _charge_headers(self, nbytes: int) -> None:
        self.header_bytes += nbytes
        if self.header_bytes > MAX_INDEX_BYTES:
            raise UnsupportedFormatError(f"{self.url}: fragment headers exceed {MAX_INDEX_BYTES} bytes.")

    def run(self, first: int) -> FragmentWalk:
        size, layout = self.size, self.layout
        held = layout.buffer_for(first, first + 16)
        if held is not None:
            self.max_moof = parse_box_header(held, first, size).size
        pending = [first]
        planned = False
        while True:
            todo: list[tuple[int, int]] = []
            ready: list[tuple[int, Buffer]] = []
            for off in sorted(set(pending)):
                if off in self.seen or off + 8 > self.limit:
                    continue
                self.seen.add(off)
                buf = layout.buffer_for(off, min(size, off + 16))
                if buf is not None:
                    try:
                        box = parse_box_header(buf, off, size)
                    except ContainerError:
                        ready.append((off, buf))  # _visit records the error
                        continue
                    if buf.covers(off, min(size, box.end + 16 if box.type == "moof" else off + 16)):
                        ready.append((off, buf))
                        continue
                todo.append((off, min(size, off + (self.max_moof + 16 if self.max_moof else 16))))
            scans = [s for s in self.scans if s.pos < s.stop]
            if self.scan_bytes >= MAX_RESYNC_SCAN_BYTES:
                scans = []
            scan_ranges = [(s.pos, min(size, s.pos + max(s.window, s.need))) for s in scans]
            if not todo and not ready and not scan_ranges:
                break
            if todo or scan_ranges:
                self._charge_headers(sum(b - a for a, b in todo))
                self.scan_bytes += sum(b - a for a, b in scan_ranges)
                datas = self._read(todo + scan_ranges)
                for (a, _b), data in zip(todo, datas, strict=False):
                    ready.append((a, Buffer(data, a, url=self.url, file_size=size)))
                scan_datas = datas[len(todo) :]
            else:
                scan_datas = []
            # Moofs larger than what was read: one concurrent round of exact reads.
            short = []
            for i, (off, buf) in enumerate(ready):
                try:
                    moof_size = self._moof_size(off, buf)
                except ContainerError:
                    continue
                if moof_size is not None:
                    self.max_moof = max(self.max_moof, moof_size)
                    stop = min(size, off + moof_size + 16)
                    if not buf.covers(off, stop):
                        short.append((i, off, stop))
            if short:
                self._charge_headers(sum(b - a for _i, a, b in short))
                datas = self._read([(a, b) for _i, a, b in short])
                for (i, a, _b), data in zip(short, datas, strict=False):
                    ready[i] = (a, Buffer(data, a, url=self.url, file_size=size))
            pending = []
            for off, buf in ready:
                nxt = self._visit(off, buf)
                if nxt is not None:
                    pending.append(nxt)
            for scan, (a, _b), data in zip(scans, scan_ranges, scan_datas, strict=False):
                found = self._scan(scan, a, data)
                if found is not None:
                    scan.pos = scan.stop
                    nxt = self.nodes[found].next
                    if nxt is not None:
                        pending.append(nxt)
            if not planned and first in self.nodes:
                planned = True
                self._start_lanes(first)
        return FragmentWalk(self._chain(first), self.lanes, self.rounds, self.scan_bytes, self.header_bytes)

    def _chain(self, first: int) -> list[tuple[Buffer, Box]]:
        out: list[tuple[Buffer, Box]] = []
        pos: int | None = first
        while pos is not None and pos + 8 <= self.limit:
            node = self.nodes.get(pos)
            if node is None:  # pragma: no cover - every offset the chain names is visited
                raise MP4ParseError(f"{self.url}: the fragment walk lost its place at offset {pos}.")
            if node.error is not None:
                raise node.error
            if node.buf is not None and node.box is not None:
                out.append((node.buf, node.box))
            pos = node.next
        return out


def walk_fragments(
    source: IndexSource,
    layout: Layout,
    *,
    first: int,
    limit: int,
    track_ID: int,
    trex: TrackExtends,
    round_trip_cost_bytes: int,
    max_concurrency: int,
) -> FragmentWalk:
    """Every moof from ``first`` to ``limit``, walked in resynchronised lanes (module docstring).

    Args:
        source: where the bytes come from.
        layout: the top-level walk's result (its buffers are reused).
        first: offset of the first moof.
        limit: end of the fragment area (the file size, or the mfra's start).
        track_ID: the indexed track (its trex defaults validate candidates).
        trex: that track's fragment defaults.
        round_trip_cost_bytes: what one round trip is worth in bytes (the cost model's price).
        max_concurrency: requests the source keeps in flight at once: one
            round holds a walk read and a scan read per lane, so at most half
            of this many lanes start (and at most ``MAX_RESYNC_LANES``).

    Raises:
        MP4ParseError, TruncatedFileError: a box on the chain is broken or
            runs past the end of the file (as the sequential walk raises).
        UnsupportedFormatError: the headers read exceed ``MAX_INDEX_BYTES``.
    """
    max_lanes = max(0, min(MAX_RESYNC_LANES, max_concurrency // 2 - 1))
    walker = _Walker(
        source,
        layout,
        limit=limit,
        track_ID=track_ID,
        trex=trex,
        round_trip_cost_bytes=round_trip_cost_bytes,
        max_lanes=max_lanes,
    )
    return walker.run(first)
