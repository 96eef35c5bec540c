"""The keyframes around a time in a Matroska file without Cues, found by bisection.

Without Cues the only map of a Matroska file is the chain of its elements:
finding the cluster that holds a time by following that chain means walking
every cluster before it. Cluster timestamps grow along the file, so a search
over byte offsets finds it instead: read a window at a probe offset inside the
offsets still in question, resynchronise on the first Cluster ID
(``1F 43 B6 75``) from there, read that cluster's Timestamp and keep the side
that holds the time. The probe offset is where the time would lie if bytes
grew evenly with time between the clusters known on either side (at first the
Segment's end and its Duration), or the middle when such a guess did not halve
the offsets in question (or there is no Duration): a bisection that usually
lands next to the answer in one or two probes. When a guessed probe lands just
before a cluster later than the time, the cluster before that one is read
backwards from it (the candidate whose element chain ends exactly there).
Near the answer, the search turns into an exact walk of the element chain
(cluster headers only where sizes are known), which also finds the first video
block of each cluster: the clusters that *start a GOP* (their first block of
the video track is a keyframe) are what a caller walks from.

The answer, :func:`keyframes_around`, has the shape of a Cues element around
one time (see its docstring); a caller walks the clusters from the first pair
to the third exactly as it walks the clusters between cue points.

Why a resynchronised cluster is a real one. A Cluster ID found by scanning can
be four bytes of compressed payload. A candidate is accepted only when, after
the ID, (1) its size is unknown or ends inside the Segment, (2) its first child
(after at most two CRC-32 / Void elements) is a Timestamp of 1-8 bytes below
2^53, (3) the next ``MIN_CHILDREN`` children (or all of them, up to the
cluster's end) are cluster children (SimpleBlock, BlockGroup, Void, CRC-32,
Position, PrevSize, SilentTracks, EncryptedBlock) of known size that end
inside the cluster, blocks with a valid track number and, inside a
BlockGroup, group children, and (4) for a known size, the element at its end
is a top-level element or the Segment's end. For random (compressed) bytes:
the ID matches at a given offset with probability 2^-32, the Timestamp header
(ID ``E7`` and a length byte ``81``-``88``) with about 2^-13, each further
child's one-byte ID with at most 9/256 (about 2^-4.8), so three children
about 2^-14, and a known size's end lands on a top-level ID with about 2^-29.
A false candidate therefore survives with probability below 2^-59 per byte
offset scanned; a call scans at most ``MAX_SCAN_BYTES`` (2^28) bytes, so a
false acceptance has probability below 2^-31 per call even on a gigabyte
file. A cluster found walking backwards must also end exactly where the
cluster after it starts. Every cluster this function returns is then reached
by the exact chain from such a cluster, and its first video block is read
from that chain.

Cost (every read is one request, one round trip): at most ``2 log2(S / W)``
probes for a Segment of S bytes and windows of W = ``window`` bytes (halving
at least every second probe), usually one to three; a probe reads windows from
its offset to the next Cluster (W, then doubling up to ``MAX_CHUNK``: on
average half a cluster in ``log2(cluster / W)`` reads) and a few small reads to
validate it; the backward read after a guess reads about one cluster. The
exact walk then reads one small window per cluster of known size (its header up
to the first video block) and, for clusters of unknown size, every cluster
from the GOP start to the third, in reads that double along the walk (so
``log2`` of those bytes in round trips). Bytes are then a few clusters (one or
two GOPs more where clusters of unknown size cut GOPs), requests a dozen or
two; the full walk makes one request per block, as deep as a cluster has
blocks. Measured (local reads, 40 times spread over each file, medians): a
30 MB 640x360 file without Cues, 30 clusters: 12 requests, 1.5 MB (the full
walk: 4,643 requests in 187 rounds, 73 KB); the same with FFmpeg's live mode
and unknown sizes, 660 clusters: 16 requests, 2.7 MB (the full walk: 5,272
requests, one per round).

The probes compare cluster Timestamps, which grow along the file up to a few
frames (a cluster cut mid-GOP starts with whatever frame comes next in decode
order, so a B-frame can make it earlier than the cluster before): the search
only needs to land near the answer, and the exact walk then goes back to the
GOP start at or before the time and on to the next two, so such dips never
change the answer. Assumptions, as for Cues: the times of the keyframes that
start GOPs grow along the file (checked on the clusters walked: None when two
of them say otherwise), and every frame shown at or after a keyframe's time is
stored after that keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import MatroskaParseError
from .._types import ByteRange
from ._ebml import ID, LEVEL1_IDS, Element, Window, read_element

if TYPE_CHECKING:  # pragma: no cover
    from ._read import MatroskaHead
    from ._walk import ReadRanges

__all__ = ["KeyframeSearch", "keyframes_around"]

#: Bytes a probe reads first at its offset (then doubling while no Cluster is found).
WINDOW_BYTES = 32768
#: Largest single read of a scan or of a cluster walk.
MAX_CHUNK = 1 << 20
#: Bytes one call may read before it gives up (returns None).
MAX_SCAN_BYTES = 1 << 28
#: Clusters one call may step through (forwards and backwards) around the time.
MAX_STEPS = 256
#: Children after the Timestamp a scanned candidate must show (fewer only when its cluster ends first).
MIN_CHILDREN = 3
#: Bytes read for one element header outside any window already held.
HOP_BYTES = 512
#: Bytes a search reads backwards from a cluster for the one before it, after a guessed probe.
BACK_BYTES = 256 * 1024

_POSITION = 0xA7
_PREV_SIZE = 0xAB
_SILENT_TRACKS = 0x5854
_CLUSTER_CHILD_IDS = frozenset(
    {
        ID.SIMPLE_BLOCK,
        ID.BLOCK_GROUP,
        ID.VOID,
        ID.CRC32,
        _POSITION,
        _PREV_SIZE,
        _SILENT_TRACKS,
        ID.ENCRYPTED_BLOCK,
    }
)
_GROUP_CHILD_IDS = frozenset(
    {
        ID.BLOCK,
        ID.BLOCK_DURATION,
        ID.REFERENCE_BLOCK,
        0xFA,  # ReferencePriority
        0xA4,  # CodecState
        0x75A2,  # DiscardPadding
        0x75A1,  # BlockAdditions
        0x8E,  # Slices
        ID.VOID,
        ID.CRC32,
    }
)
_CLUSTER_ID_BYTES = ID.CLUSTER.to_bytes(4, "big")
_MAX_TIMESTAMP = 1 << 53


class _Reject(Exception):
    """A candidate or a chain is not what it should be (never leaves this module)."""


class _GiveUp(Exception):
    """The search cannot answer within its bounds, or the file contradicts its assumptions."""


@dataclass
class _Cluster:
    pos: int
    data_start: int
    size: int
    """Payload size, or -1 for an unknown size."""
    ts: int
    after_ts: int
    """Offset of the child after the Timestamp."""
    first_video: tuple[int, bool] | None = None
    """``(time in ticks, keyframe)`` of the cluster's first video block, once read."""
    read_video: bool = False
    end: int | None = None
    """Offset of the next top-level element (known at once for a known size)."""

    @property
    def gop_start(self) -> bool:
        return self.first_video is not None and self.first_video[1]


@dataclass
class KeyframeSearch:
    """What one search cost (for tests and benchmarks)."""

    requests: int = 0
    nbytes: int = 0
    probes: int = 0
    steps: int = 0


class _Search:
    def __init__(self, head: MatroskaHead, read: ReadRanges, window: int, stats: KeyframeSearch) -> None:
        self.url = head.url
        self.file_size = head.file_size
        self.seg_start = head.seg_start
        self.seg_end = head.seg_end
        self.track = head.track.number
        self.duration = head.info.duration
        self.read = read
        self.window = window
        self.stats = stats
        self.held: list[Window] = [head.head]
        self.walk_chunk = window
        """Bytes the exact walk reads at its next hop outside the bytes held (doubling along the walk)."""
        self.back_span = window
        """Bytes the next backward read takes (doubling along the walk)."""

    # -- bytes -------------------------------------------------------------------------------

    def _fetch(self, start: int, stop: int) -> Window:
        stop = min(stop, self.file_size)
        if start >= stop:
            raise MatroskaParseError(f"{self.url}: needed bytes at offset {start}, past the end of the file.")
        if self.stats.nbytes + (stop - start) > MAX_SCAN_BYTES:
            raise _GiveUp
        data = bytes(self.read([ByteRange(start, stop)])[0])
        self.stats.requests += 1
        self.stats.nbytes += len(data)
        w = Window(data, start, self.url)
        self.held.append(w)
        if len(self.held) > 64:
            del self.held[1]
        return w

    def _window(self, start: int, need: int, chunk: int) -> Window:
        """A window holding ``[start, start + need)`` (clipped to the file), reading ``chunk`` bytes if not held."""
        stop = min(self.file_size, start + need)
        for w in reversed(self.held):
            if w.covers(start, stop) and start < w.stop:
                return w
        return self._fetch(start, start + max(need, chunk))

    def _element(self, pos: int, chunk: int = HOP_BYTES) -> tuple[Element, Window]:
        w = self._window(pos, 12, chunk)
        return read_element(w, pos), w

    def _uint(self, e: Element, w: Window) -> int:
        if e.unknown_size or not 1 <= e.size <= 8:
            raise _Reject
        if not w.covers(e.data_start, e.end):
            w = self._window(e.data_start, e.size, HOP_BYTES)
        return int.from_bytes(w.get(e.data_start, e.end), "big")

    def _block_header(self, e: Element, w: Window) -> tuple[int, int, int]:
        """``(track, relative timestamp, flags)`` of a SimpleBlock or Block."""
        if e.size < 4:
            raise _Reject
        if not w.covers(e.data_start, min(e.end, e.data_start + 12)):
            w = self._window(e.data_start, min(e.size, 12), HOP_BYTES)
        first = w.get(e.data_start, e.data_start + 1)[0]
        if first == 0:
            raise _Reject
        n = 9 - first.bit_length()
        if n + 3 > e.size:
            raise _Reject
        raw = w.get(e.data_start, e.data_start + n + 3)
        track = int.from_bytes(raw[:n], "big") & ((1 << (7 * n)) - 1)
        if track == 0 or track == (1 << (7 * n)) - 1:
            raise _Reject
        return track, int.from_bytes(raw[n : n + 2], "big", signed=True), raw[n + 2]

    # -- one cluster --------------------------------------------------------------------------

    def _cluster_header(self, pos: int) -> _Cluster:
        """The Cluster at ``pos``: its size and Timestamp (raises _Reject when it is not one)."""
        e, _ = self._element(pos)
        if e.id != ID.CLUSTER or (not e.unknown_size and e.end > self.seg_end):
            raise _Reject
        limit = self.seg_end if e.unknown_size else e.end
        p = e.data_start
        for _ in range(3):
            if p >= limit:
                raise _Reject
            ch, w = self._element(p)
            if ch.unknown_size or ch.end > limit:
                raise _Reject
            if ch.id == ID.TIMESTAMP:
                ts = self._uint(ch, w)
                if ts >= _MAX_TIMESTAMP:
                    raise _Reject
                return _Cluster(pos, e.data_start, e.size, ts, ch.end, end=None if e.unknown_size else e.end)
            if ch.id not in (ID.CRC32, ID.VOID):
                raise _Reject
            p = ch.end
        raise _Reject

    def _children(self, c: _Cluster, *, min_children: int, to_end: bool, chunk: int, bound: int | None = None) -> None:
        """Walk ``c``'s children after its Timestamp: its first video block, and (``to_end``) its end.

        Stops once the first video block is read and ``min_children`` children were
        seen, unless ``to_end``. Raises _Reject on anything that is not a cluster child.
        """
        known = c.size >= 0
        limit = c.data_start + c.size if known else self.seg_end
        p = c.after_ts
        count = 0
        grow = max(chunk, self.walk_chunk) if to_end else chunk
        while True:
            if p == limit:
                c.end = p
                c.read_video = True
                return
            if p > limit or (bound is not None and p > bound):
                raise _Reject
            held = any(w.covers(p, min(self.file_size, p + 12)) for w in self.held)
            e, w = self._element(p, grow)
            grow = grow if held else min(MAX_CHUNK, grow * 2)
            if to_end:
                self.walk_chunk = grow  # consecutive clusters of unknown size: keep reading more at once
            if not known and e.id in LEVEL1_IDS:
                c.end = p
                c.read_video = True
                return
            if e.id not in _CLUSTER_CHILD_IDS or e.unknown_size or e.end > limit:
                raise _Reject
            if e.id == ID.SIMPLE_BLOCK:
                track, rel, flags = self._block_header(e, w)
                if track == self.track and c.first_video is None:
                    c.first_video = (c.ts + rel, bool(flags & 0x80))
            elif e.id == ID.BLOCK_GROUP:
                got = self._group(e, c.ts)
                if got is not None and c.first_video is None:
                    c.first_video = got
            count += 1
            p = e.end
            if c.first_video is not None:
                c.read_video = True
            if not to_end and c.first_video is not None and count >= min_children:
                return

    def _group(self, g: Element, cluster_ts: int) -> tuple[int, bool] | None:
        """``(time, keyframe)`` of a BlockGroup's Block when it is of the video track."""
        p = g.data_start
        block: tuple[int, int, int] | None = None
        refs = False
        while p < g.end:
            e, w = self._element(p)
            if e.id not in _GROUP_CHILD_IDS or e.unknown_size or e.end > g.end:
                raise _Reject
            if e.id == ID.BLOCK and block is None:
                block = self._block_header(e, w)
            elif e.id == ID.REFERENCE_BLOCK:
                refs = True
            p = e.end
        if block is None:
            raise _Reject
        if block[0] != self.track:
            return None
        return cluster_ts + block[1], not refs

    def _ends_well(self, end: int) -> bool:
        """Whether a top-level element (or the Segment's end) is at ``end``."""
        if end == self.seg_end:
            return True
        if end > self.seg_end:
            return False
        try:
            e, _ = self._element(end, 64)
        except MatroskaParseError:
            return False
        return e.id in LEVEL1_IDS or e.id in (ID.VOID, ID.CRC32)

    def _candidate(self, pos: int) -> _Cluster | None:
        """The cluster at ``pos`` when it passes every check of the module docstring, else None."""
        try:
            c = self._cluster_header(pos)
            self._children(c, min_children=MIN_CHILDREN, to_end=False, chunk=HOP_BYTES)
            if c.size >= 0 and not self._ends_well(c.data_start + c.size):
                raise _Reject
        except (_Reject, MatroskaParseError):
            return None
        return c

    # -- the chain ----------------------------------------------------------------------------

    def _exact(self, pos: int) -> _Cluster:
        """The cluster at ``pos``, reached by the exact chain (so any mismatch is a broken file)."""
        try:
            return self._cluster_header(pos)
        except _Reject:
            raise MatroskaParseError(f"{self.url}: expected a Cluster at offset {pos}.") from None

    def _video_of(self, c: _Cluster) -> None:
        if not c.read_video:
            try:
                self._children(c, min_children=0, to_end=False, chunk=HOP_BYTES)
            except _Reject:
                raise MatroskaParseError(f"{self.url}: the Cluster at offset {c.pos} holds a broken element.") from None

    def _next(self, c: _Cluster) -> _Cluster | None:
        """The cluster after ``c`` in the file (None at the Segment's end)."""
        if c.end is None:
            try:
                self._children(c, min_children=0, to_end=True, chunk=self.window)
            except _Reject:
                raise MatroskaParseError(f"{self.url}: the Cluster at offset {c.pos} holds a broken element.") from None
        assert c.end is not None
        return self._cluster_from(c.end)

    def _previous(self, c: _Cluster, floor: int, limit: int | None = None) -> _Cluster | None:
        """The cluster before ``c``, starting at or after ``floor``: the candidate whose chain ends exactly at ``c``.

        Reads backwards from ``c`` in windows that double. With ``limit``, None
        once that many bytes before ``c`` hold no such candidate; without, a
        MatroskaParseError once ``floor`` is reached.
        """
        data = b""
        for w in self.held:  # bytes already held just before ``c`` (a probe's scan)
            if w.start < c.pos <= w.stop and c.pos - max(w.start, floor) > len(data):
                data = w.data[max(w.start, floor) - w.start : c.pos - w.start]
        span = self.back_span
        checked: set[int] = set()
        while True:
            start = c.pos - len(data)
            if data:
                self.held.append(Window(data, start, self.url))
            found = []
            at = data.find(_CLUSTER_ID_BYTES)
            while at >= 0:
                if start + at not in checked:
                    found.append(start + at)
                at = data.find(_CLUSTER_ID_BYTES, at + 1)
            for p in found:  # the earliest first: a forged ID can only sit inside the true cluster
                checked.add(p)
                q = self._ends_at(p, c.pos)
                if q is not None:
                    return q
            if start <= floor:
                if limit is not None:
                    return None
                raise MatroskaParseError(f"{self.url}: no Cluster chain leads to the Cluster at offset {c.pos}.")
            if limit is not None and len(data) >= limit:
                return None
            new_start = max(floor, start - span)
            data = self._fetch(new_start, start).data + data
            span = min(span * 2, MAX_CHUNK)
            self.back_span = span

    def _ends_at(self, p: int, stop: int) -> _Cluster | None:
        """The cluster at ``p`` when its chain (then Void / CRC-32 elements) ends exactly at ``stop``."""
        try:
            q = self._cluster_header(p)
            if q.end is not None and q.end > stop:
                return None
            self._children(q, min_children=0, to_end=True, chunk=HOP_BYTES, bound=stop)
            assert q.end is not None
            end = q.end
            while end < stop:
                e, _ = self._element(end)
                if e.id not in (ID.VOID, ID.CRC32) or e.unknown_size:
                    return None
                end = e.end
            return q if end == stop else None
        except (_Reject, MatroskaParseError):
            return None

    def _first_cluster(self) -> _Cluster | None:
        return self._cluster_from(self.seg_start)

    def _cluster_from(self, p: int) -> _Cluster | None:
        """The first Cluster among the top-level elements from ``p`` on (None at the Segment's end)."""
        for _ in range(MAX_STEPS):
            if p >= self.seg_end:
                return None
            e, _ = self._element(p)
            if e.id == ID.CLUSTER:
                return self._exact(p)
            if e.unknown_size or e.end > self.seg_end or e.id == ID.EBML:
                raise _GiveUp  # chained segments or a broken top level: the caller walks
            p = e.end
        raise _GiveUp

    # -- the search ---------------------------------------------------------------------------

    def _scan(self, o: int, b: int) -> _Cluster | None:
        """The first valid cluster starting in ``[o, b)``, or None."""
        chunk = self.window
        start = o
        while start < b:
            stop = min(b + 3, start + chunk, self.file_size)
            w = self._window(start, stop - start, 0)
            data = w.data[start - w.start : stop - w.start]
            at = data.find(_CLUSTER_ID_BYTES)
            while at >= 0 and start + at < b:
                c = self._candidate(start + at)
                if c is not None:
                    return c
                at = data.find(_CLUSTER_ID_BYTES, at + 1)
            if stop >= min(b + 3, self.file_size):
                return None
            start = stop - 3  # an ID across the window's end
            chunk = min(MAX_CHUNK, chunk * 2)
        return None

    def run(self, ticks: int) -> list[tuple[int, int]]:
        first = self._first_cluster()
        if first is None:
            return []
        lo = first
        hi: _Cluster | None = None
        a = lo.end if lo.end is not None else lo.data_start
        b = self.seg_end
        interpolate = True
        while b - a > self.window:
            # Where ``ticks`` lies if bytes grow with time between the clusters known on either side
            # (the Segment's end and its Duration at first); halves instead when that did not halve.
            right = (hi.pos, hi.ts) if hi is not None else (self.seg_end, self.duration)
            o = (a + b) // 2
            guessed = interpolate and right[1] is not None and right[1] > lo.ts and ticks >= lo.ts
            if guessed:
                assert right[1] is not None
                x = lo.pos + int((right[0] - lo.pos) * (ticks - lo.ts) / (right[1] - lo.ts))
                o = min(max(x, a), b - 1)
            before = b - a
            self.stats.probes += 1
            c = self._scan(o, b)
            if c is None:
                b = o
            elif c.ts <= ticks:
                lo = c
                a = c.end if c.end is not None else c.data_start
            else:
                hi = c
                b = o
                if guessed:
                    # The guess fell just before ``c``: the cluster ending at ``c`` is likely the one.
                    q = self._previous(c, a, limit=max(BACK_BYTES, 2 * c.size, 2 * (c.pos - o)))
                    if q is not None and q.ts <= ticks:
                        return self._around(q, first, ticks)
                    if q is not None:
                        hi = q
                        b = min(b, q.pos)
            interpolate = not guessed or b - a <= before // 2
        return self._around(lo, first, ticks)

    def _around(self, lo: _Cluster, first: _Cluster, ticks: int) -> list[tuple[int, int]]:
        """Exact walk from ``lo``: back to the GOP start at or before ``ticks``, on to the next two."""
        seq = [lo]
        self._video_of(lo)
        while not (seq[0].gop_start and seq[0].first_video is not None and seq[0].first_video[0] <= ticks):
            if seq[0].pos == first.pos:
                break
            self._step()
            prev = self._previous(seq[0], first.pos)
            assert prev is not None
            self._video_of(prev)
            seq.insert(0, prev)

        def starts() -> list[_Cluster]:
            return [c for c in seq if c.gop_start]

        def p0() -> int:
            gs = starts()
            below = [i for i, c in enumerate(gs) if c.first_video is not None and c.first_video[0] <= ticks]
            return below[-1] if below else -1

        while True:
            gs = starts()
            i = p0()
            if i >= 0 and len(gs) - i >= 3:
                break
            if i < 0 and gs:
                break  # the first GOP start here is already past ``ticks``: none is at or before it
            self._step()
            nxt = self._next(seq[-1])
            if nxt is None:
                break
            self._video_of(nxt)
            seq.append(nxt)
        gs = starts()
        times = [c.first_video[0] for c in gs if c.first_video is not None]
        if any(t1 <= t0 for t0, t1 in zip(times, times[1:], strict=False)):
            raise _GiveUp  # keyframe times that do not grow along the file
        i = p0()
        if i < 0:
            return []
        return [(t, c.pos) for t, c in zip(times[i : i + 3], gs[i : i + 3], strict=True)]

    def _step(self) -> None:
        self.stats.steps += 1
        if self.stats.steps > MAX_STEPS:
            raise _GiveUp


def keyframes_around(
    head: MatroskaHead,
    read: ReadRanges,
    ticks: int,
    *,
    window: int = WINDOW_BYTES,
    stats: KeyframeSearch | None = None,
) -> list[tuple[int, int]] | None:
    """The clusters that start GOPs around ``ticks``, without Cues: ``[(time, cluster offset), ...]``.

    A cluster *starts a GOP* when its first block of the video track is a
    keyframe; its time is that block's time (cluster Timestamp + the block's
    relative timestamp, in TimestampScale ticks: the unit of
    ``MatroskaHead.cue_times``). The list holds the last such cluster whose
    time is at or before ``ticks``, then the next two such clusters in the
    file (fewer near the Segment's end): the shape of ``cue_times`` /
    ``cue_positions`` around ``ticks``, so ``pairs[0][1]`` to ``pairs[2][1]``
    (or the Segment's end) holds every frame shown from ``pairs[0][0]`` until
    ``pairs[1][0]``. Keyframes that do not start a cluster (clusters cut by
    time or size, as mkvmerge and FFmpeg's live mode cut them) are not in the
    list: their GOPs are walked from the GOP start before them.

    Args:
        head: the file's head (``open_head``), used for its Segment bounds,
            video track and first bytes.
        read: reads byte ranges (``RangeSource.read_ranges``).
        ticks: the time, in TimestampScale ticks.
        window: bytes a probe reads first at its offset.
        stats: filled with the requests, bytes, probes and cluster steps the search cost.

    Returns:
        The pairs (times strictly increasing, offsets strictly increasing);
        ``[]`` when no cluster starting a GOP is at or before ``ticks`` (or the
        Segment has no cluster); None when the search cannot be sure within its
        bounds: the file is damaged or truncated, the times of the GOP starts
        walked do not grow along the file, the Segment is chained, or it would read more than
        ``MAX_SCAN_BYTES`` or step through more than ``MAX_STEPS`` clusters.
        The caller then walks every cluster (which reports a damaged file).
    """
    search = _Search(head, read, max(64, window), stats if stats is not None else KeyframeSearch())
    try:
        return search.run(ticks)
    except (_GiveUp, _Reject, MatroskaParseError):
        return None
