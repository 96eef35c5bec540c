"""The cluster walk: every block of the video track, with its byte range.

Matroska has no sample table: a block's position is known only by walking
the elements before it. The walk runs in *lanes*, each starting at a known
top-level position (the Segment's start, a Cues cluster position, the end of
a Cluster whose size a lane has read) and stepping from element header to
element header, reading only the few bytes of each header (never a block's
payload). All lanes step together: one concurrent range call per round.

A lane stops where another lane starts (or at the end of the Segment). The
result is the chain of lanes from the Segment's start, each picking up where
the one before stopped: the same blocks, in the same order, as a sequential
walk of the file. A lane that started at a wrong position (a damaged cue)
is never on the chain unless the chain reaches its start exactly, and a walk
from a position the chain reaches is a walk of the file itself. Errors in a
lane are raised only if the chain uses that lane.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .._errors import MatroskaParseError, UnsupportedFormatError
from .._types import ByteRange
from ._ebml import ID, LEVEL1_IDS, Window, header_len_at, read_element

__all__ = ["Block", "PlanRead", "WalkResult", "walk_clusters", "walk_one_lane"]

#: Bytes read at a lane's position when it needs the next header: enough for
#: a block's element header (1-byte ID, size) plus its track number, relative
#: timestamp and flags as muxers write them (sizes of up to 8 bytes, 1-byte
#: track numbers), a Cluster header or a Timestamp.
STEP_BYTES = 16
#: Bytes read when the next header did not fit in ``STEP_BYTES``: the longest
#: header the walk reads (a block with an 8-byte size and an 8-byte track
#: number is 20 bytes; a 4-byte ID with an 8-byte size is 12).
MAX_STEP_BYTES = 32
#: Ranges of one round closer than this are read as one (and every lane in the
#: merged window steps through it): a few KiB of block payload buy the lanes
#: in the window their next headers without another round.
MERGE_GAP_BYTES = 8 * 1024
#: Blocks of all tracks a walk may visit (every block is at least a few bytes,
#: so a file cannot claim more than its size allows; this caps the work).
MAX_BLOCKS = 1 << 26
#: Video blocks (samples) one track may hold.
MAX_SAMPLES = 1 << 24

ReadRanges = Callable[[Sequence[ByteRange]], list[bytes]]
#: ``plan_read(blocks so far, bytes the next header needs)``: how many bytes to
#: read at the lane's position next, or None to stop the walk there.
PlanRead = Callable[[list["Block"], int], "int | None"]


@dataclass(frozen=True)
class Block:
    offset: int
    """File offset of the frame data (after the block header)."""
    size: int
    timestamp: int
    """Cluster timestamp + the block's relative timestamp (TimestampScale ticks)."""
    keyframe: bool
    duration: int
    """BlockDuration in ticks, or -1 when the block has none."""


@dataclass
class _Lane:
    start: int
    pos: int
    cluster_end: int | None = None
    """End of the Cluster the lane is in; -1 for a Cluster of unknown size; None at top level."""
    cluster_ts: int | None = None
    group_end: int | None = None
    group_block: tuple[int, int, int] | None = None
    group_refs: bool = False
    group_duration: int = -1
    blocks: list[Block] = field(default_factory=list)
    end: int | None = None
    error: Exception | None = None
    visited: int = 0
    want: int = STEP_BYTES
    """Bytes the lane's next read asks for (more after a header did not fit)."""
    last_read: tuple[int, int] = (-1, 0)


@dataclass
class WalkResult:
    blocks: list[Block]
    clusters: int
    requests: int
    nbytes: int
    rounds: int


class _Walker:
    def __init__(
        self,
        *,
        url: str,
        file_size: int,
        seg_end: int,
        track: int,
        windows: list[Window],
        read: ReadRanges,
        spawn_lanes: bool = True,
    ) -> None:
        self.url = url
        self.spawn_lanes = spawn_lanes
        self.file_size = file_size
        self.seg_end = seg_end
        self.track = track
        self.windows = windows
        self.read = read
        self.lanes: dict[int, _Lane] = {}
        self.clusters: set[int] = set()
        self.requests = 0
        self.nbytes = 0
        self.rounds = 0
        self.blocks_seen = 0
        self._round: list[Window] = []
        self._round_starts: list[int] = []

    def add_lane(self, pos: int) -> None:
        if pos not in self.lanes and 0 <= pos < self.seg_end:
            self.lanes[pos] = _Lane(start=pos, pos=pos)

    # -- one lane, as far as the bytes in ``w`` allow ----------------------------------

    def _fail(self, lane: _Lane, msg: str) -> None:
        raise MatroskaParseError(f"{self.url}: {msg}")

    def step(self, lane: _Lane, w: Window) -> bool:
        """Advance ``lane`` through ``w``; True when it needs bytes at ``lane.pos``."""
        while True:
            pos = lane.pos
            if lane.cluster_end is None:
                if pos >= self.seg_end or (pos != lane.start and pos in self.lanes):
                    lane.end = pos
                    return False
            elif lane.cluster_end >= 0:
                if lane.group_end is not None and pos >= lane.group_end:
                    self._end_group(lane)
                    continue
                if pos >= lane.cluster_end:
                    lane.cluster_end = None
                    continue
            elif pos >= self.seg_end:  # a Cluster of unknown size ends with the Segment
                if lane.group_end is not None:
                    self._end_group(lane)
                lane.cluster_end = None
                continue
            elif lane.group_end is not None and pos >= lane.group_end:
                self._end_group(lane)
                continue
            rel = pos - w.start
            if not 0 <= rel < len(w.data):
                return True
            hl = header_len_at(w.data, rel)
            if hl is None or pos + hl > w.stop:
                if w.stop >= self.file_size:
                    self._fail(lane, f"the element header at offset {pos} runs past the end of the file (truncated).")
                if len(w.data) - rel >= 12:
                    read_element(w, pos)  # all of a valid header is here: this one is invalid, and raises
                return True
            e = read_element(w, pos)
            lane.visited += 1
            self.blocks_seen += 1
            if self.blocks_seen > MAX_BLOCKS:
                raise UnsupportedFormatError(f"{self.url}: more than {MAX_BLOCKS} elements in the clusters.")
            if not e.unknown_size and e.end > self.file_size:
                self._fail(
                    lane,
                    f"element {e.id:#x} at offset {e.start} ends at {e.end}, past the end of the file at "
                    f"{self.file_size} (the file is truncated).",
                )
            if lane.cluster_end is None:
                self._top_level(lane, e)
                continue
            if lane.cluster_end < 0 and lane.group_end is None and e.id in LEVEL1_IDS:
                lane.cluster_end = None  # the next top-level element ends a Cluster of unknown size
                continue
            parent_end = lane.group_end if lane.group_end is not None else lane.cluster_end
            if e.unknown_size:
                self._fail(lane, f"element {e.id:#x} at offset {e.start} inside a Cluster has an unknown size.")
            if parent_end >= 0 and e.end > parent_end:
                self._fail(
                    lane,
                    f"element {e.id:#x} at offset {e.start} ends at {e.end}, past its parent's end at {parent_end}.",
                )
            if lane.group_end is not None:
                need = self._in_group(lane, e, w)
            else:
                need = self._in_cluster(lane, e, w)
            if need:
                if w.stop >= self.file_size:
                    self._fail(lane, f"the element at offset {pos} runs past the end of the file (truncated).")
                return True

    def _top_level(self, lane: _Lane, e: object) -> None:
        from ._ebml import Element

        assert isinstance(e, Element)
        if e.id == ID.CLUSTER:
            self.clusters.add(e.start)
            lane.cluster_ts = None
            lane.pos = e.data_start
            if e.unknown_size:
                lane.cluster_end = -1
            else:
                if e.end > self.seg_end:
                    self._fail(lane, f"the Cluster at offset {e.start} ends at {e.end}, past its Segment's end.")
                lane.cluster_end = e.end
                if self.spawn_lanes:
                    self.add_lane(e.end)
            return
        if e.id == ID.EBML:
            raise UnsupportedFormatError(f"{self.url}: a second EBML header at offset {e.start} (chained segments).")
        if e.id not in LEVEL1_IDS and e.id not in (ID.VOID, ID.CRC32):
            self._fail(lane, f"element {e.id:#x} at offset {e.start} is not a top-level Matroska element.")
        if e.unknown_size:
            self._fail(lane, f"top-level element {e.id:#x} at offset {e.start} has an unknown size.")
        if e.end > self.seg_end:
            self._fail(lane, f"element {e.id:#x} at offset {e.start} ends at {e.end}, past its Segment's end.")
        lane.pos = e.end

    def _uint(self, w: Window, e: object) -> int | None:
        from ._ebml import Element

        assert isinstance(e, Element)
        if e.size > 8:
            raise MatroskaParseError(f"{self.url}: integer element {e.id:#x} at offset {e.start} has {e.size} bytes.")
        if not w.covers(e.data_start, e.end):
            return None
        return int.from_bytes(w.get(e.data_start, e.end), "big")

    def _block_header(self, w: Window, e: object) -> tuple[int, int, int, int] | None:
        """``(track, relative timestamp, flags, header length)`` of a (Simple)Block, None if not in ``w``."""
        from ._ebml import Element

        assert isinstance(e, Element)
        if e.size < 4:
            raise MatroskaParseError(f"{self.url}: block at offset {e.start} has {e.size} bytes; at least 4 needed.")
        first_at = e.data_start - w.start
        if first_at >= len(w.data):
            return None
        first = w.data[first_at]
        if first == 0:
            raise MatroskaParseError(f"{self.url}: block at offset {e.start} has an invalid track number.")
        n = 9 - first.bit_length()
        hl = n + 3
        if hl > e.size:
            raise MatroskaParseError(f"{self.url}: block at offset {e.start} is shorter than its header.")
        if not w.covers(e.data_start, e.data_start + hl):
            return None
        raw = w.get(e.data_start, e.data_start + hl)
        track = int.from_bytes(raw[:n], "big") & ((1 << (7 * n)) - 1)
        rel = int.from_bytes(raw[n : n + 2], "big", signed=True)
        return track, rel, raw[n + 2], hl

    def _video_block(self, lane: _Lane, e: object, hdr: tuple[int, int, int, int]) -> tuple[int, int, int] | None:
        from ._ebml import Element

        assert isinstance(e, Element)
        track, rel, flags, hl = hdr
        if track != self.track:
            return None
        if flags & 0x06:
            raise UnsupportedFormatError(
                f"{self.url}: the video track's block at offset {e.start} uses lacing; the index reads unlaced blocks."
            )
        if lane.cluster_ts is None:
            self._fail(lane, f"the block at offset {e.start} comes before its Cluster's Timestamp.")
        assert lane.cluster_ts is not None
        return e.data_start + hl, e.size - hl, lane.cluster_ts + rel

    def _in_cluster(self, lane: _Lane, e: object, w: Window) -> bool:
        from ._ebml import Element

        assert isinstance(e, Element)
        if e.id == ID.TIMESTAMP:
            v = self._uint(w, e)
            if v is None:
                return True
            if v >= 1 << 53:
                self._fail(lane, f"the Cluster Timestamp at offset {e.start} is {v}, beyond 2^53 ticks.")
            lane.cluster_ts = v
        elif e.id == ID.SIMPLE_BLOCK:
            hdr = self._block_header(w, e)
            if hdr is None:
                return True
            got = self._video_block(lane, e, hdr)
            if got is not None:
                lane.blocks.append(Block(got[0], got[1], got[2], bool(hdr[2] & 0x80), -1))
        elif e.id == ID.BLOCK_GROUP:
            lane.group_end = e.end
            lane.group_block = None
            lane.group_refs = False
            lane.group_duration = -1
            lane.pos = e.data_start
            return False
        elif e.id == ID.ENCRYPTED_BLOCK:
            raise UnsupportedFormatError(f"{self.url}: encrypted block at offset {e.start}.")
        lane.pos = e.end
        return False

    def _in_group(self, lane: _Lane, e: object, w: Window) -> bool:
        from ._ebml import Element

        assert isinstance(e, Element)
        if e.id == ID.BLOCK:
            hdr = self._block_header(w, e)
            if hdr is None:
                return True
            if lane.group_block is None:
                lane.group_block = self._video_block(lane, e, hdr)
        elif e.id == ID.REFERENCE_BLOCK:
            lane.group_refs = True
        elif e.id == ID.BLOCK_DURATION:
            v = self._uint(w, e)
            if v is None:
                return True
            lane.group_duration = min(v, 1 << 53)
        lane.pos = e.end
        return False

    def _end_group(self, lane: _Lane) -> None:
        assert lane.group_end is not None
        lane.pos = lane.group_end
        if lane.group_block is not None:
            off, size, ts = lane.group_block
            lane.blocks.append(Block(off, size, ts, not lane.group_refs, lane.group_duration))
        lane.group_end = None
        lane.group_block = None

    # -- all lanes, round by round -----------------------------------------------------

    def _window_for(self, pos: int) -> Window | None:
        def usable(w: Window) -> bool:
            return w.start <= pos and (pos + STEP_BYTES <= w.stop or w.stop == self.file_size > pos)

        for w in self.windows:
            if usable(w):
                return w
        i = bisect.bisect_right(self._round_starts, pos) - 1
        if i >= 0 and usable(self._round[i]):
            return self._round[i]
        return None

    def _advance(self, lane: _Lane, w: Window | None) -> None:
        """Step ``lane`` through ``w``, then through bytes already held, recording its error."""
        try:
            while w is not None and lane.end is None:
                before = lane.pos
                if not self.step(lane, w):
                    return
                nxt = self._window_for(lane.pos)
                if nxt is w and lane.pos == before:
                    # The held bytes end inside the next header: read on, more at once.
                    lane.want = MAX_STEP_BYTES
                    return
                if lane.pos != before:
                    lane.want = STEP_BYTES
                w = nxt
        except (MatroskaParseError, UnsupportedFormatError) as e:
            lane.error = e

    def run(self, first: int) -> WalkResult:
        self.add_lane(first)
        while True:
            need: list[_Lane] = []
            done: set[int] = set()
            while True:  # lanes added while stepping (cluster ends) step in this round too
                todo = [lane for start, lane in self.lanes.items() if start not in done]
                if not todo:
                    break
                for lane in todo:
                    done.add(lane.start)
                    if lane.end is not None or lane.error is not None:
                        continue
                    self._advance(lane, self._window_for(lane.pos))
                    if lane.end is None and lane.error is None:
                        need.append(lane)
            if not need:
                break
            for lane in need:
                if lane.last_read == (lane.pos, lane.want):  # pragma: no cover - headers fit in MAX_STEP_BYTES
                    lane.error = MatroskaParseError(f"{self.url}: the cluster walk made no progress at {lane.pos}.")
                lane.last_read = (lane.pos, lane.want)
            need = [lane for lane in need if lane.error is None]
            if not need:
                break
            ranges = _merge(sorted((lane.pos, min(self.file_size, lane.pos + lane.want)) for lane in need))
            self.rounds += 1
            datas = self.read(ranges)
            self.requests += len(ranges)
            self.nbytes += sum(len(d) for d in datas)
            self._round = [Window(bytes(d), r.start, self.url) for r, d in zip(ranges, datas, strict=True)]
            self._round_starts = [r.start for r in ranges]
        return self._chain(first)

    def _chain(self, first: int) -> WalkResult:
        blocks: list[Block] = []
        pos = first
        seen = 0
        while pos < self.seg_end:
            lane = self.lanes.get(pos)
            if lane is None:  # pragma: no cover - every lane end is a lane start or the Segment's end
                raise MatroskaParseError(f"{self.url}: the cluster walk lost its place at offset {pos}.")
            if lane.error is not None:
                raise lane.error
            if lane.end is None or lane.end <= pos:  # pragma: no cover - lanes always advance
                raise MatroskaParseError(f"{self.url}: the cluster walk made no progress at offset {pos}.")
            blocks.extend(lane.blocks)
            if len(blocks) > MAX_SAMPLES:
                raise UnsupportedFormatError(f"{self.url}: the video track has more than {MAX_SAMPLES} blocks.")
            pos = lane.end
            seen += 1
        return WalkResult(blocks, len(self.clusters), self.requests, self.nbytes, self.rounds)


def _merge(spans: list[tuple[int, int]]) -> list[ByteRange]:
    """Sorted ``(start, stop)`` spans merged where they overlap or lie within ``MERGE_GAP_BYTES``."""
    out: list[list[int]] = []
    for a, b in spans:
        if out and a <= out[-1][1] + MERGE_GAP_BYTES:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [ByteRange(a, b) for a, b in out]


def walk_clusters(
    *,
    url: str,
    file_size: int,
    seg_start: int,
    seg_end: int,
    track: int,
    windows: list[Window],
    read: ReadRanges,
    starts: Sequence[int] = (),
) -> WalkResult:
    """Every block of track ``track`` from ``seg_start`` to ``seg_end``, in file order.

    Args:
        windows: bytes already read (the file's head); lanes use them first.
        read: reads several ranges concurrently (``RangeSource.read_ranges``).
        starts: more top-level positions to start lanes at (Cues cluster positions).
    """
    walker = _Walker(url=url, file_size=file_size, seg_end=seg_end, track=track, windows=windows, read=read)
    for s in sorted(set(starts)):
        walker.add_lane(s)
    return walker.run(seg_start)


def walk_one_lane(
    *,
    url: str,
    file_size: int,
    start: int,
    stop: int,
    track: int,
    windows: list[Window],
    read: ReadRanges,
    plan_read: PlanRead,
    keep_windows: bool = True,
) -> WalkResult:
    """The blocks of track ``track`` from the top-level element at ``start``, in
    file order, walked by one lane across cluster boundaries until ``stop`` (a
    top-level position or the Segment's end) or until ``plan_read`` says stop.

    Unlike ``walk_clusters`` each read may be as large as ``plan_read`` asks
    (a caller that will decode the blocks anyway reads through their payloads
    instead of stepping header by header); every read is added to
    ``windows``, so the caller can serve the payloads from it. With
    ``keep_windows=False`` windows the lane has passed are dropped instead,
    so reading through a whole file holds one read's bytes at a time.
    """
    walker = _Walker(
        url=url, file_size=file_size, seg_end=stop, track=track, windows=windows, read=read, spawn_lanes=False
    )
    lane = _Lane(start=start, pos=start)
    walker.lanes[start] = lane
    while True:
        walker._advance(lane, walker._window_for(lane.pos))
        if lane.error is not None:
            raise lane.error
        if lane.end is not None:
            break
        want = plan_read(lane.blocks, lane.want)
        if want is None:
            break
        want = max(want, lane.want)
        if lane.last_read == (lane.pos, want):  # pragma: no cover - headers fit in MAX_STEP_BYTES
            raise MatroskaParseError(f"{url}: the cluster walk made no progress at {lane.pos}.")
        lane.last_read = (lane.pos, want)
        r = ByteRange(lane.pos, min(file_size, lane.pos + want))
        data = read([r])[0]
        walker.rounds += 1
        walker.requests += 1
        walker.nbytes += len(data)
        if not keep_windows:
            windows[:] = [w for w in windows if w.stop > lane.pos]
        windows.append(Window(bytes(data), r.start, url))
    return WalkResult(list(lane.blocks), len(walker.clusters), walker.requests, walker.nbytes, walker.rounds)
