"""From a Matroska/WebM byte source to its head and to packet tables.

``open_head`` reads, in order: the file's head (the EBML header, the Segment
header and, in files written by FFmpeg or mkvmerge, the SeekHead, Info and
Tracks); then the SeekHead's targets outside the head (Info, Tracks, Cues: one
concurrent read). That is enough for the stream's setup and, with Cues, for
finding the clusters around any time. ``walk_table`` then walks the clusters
(``_walk.py``: element headers only, one concurrent round at a time, lanes
started at every Cues cluster position) over the whole Segment, or reads the
Segment through where its round trips would cost more than its bytes: the
complete table, exact frame indices. ``load_index`` is that table, cached. Frames by
time need only the blocks after one keyframe: see ``videoloader._matroska_packets``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .._errors import MatroskaParseError, NotAVideoError, UnsupportedFormatError
from .._packets import SampleIndex, first_shared_time
from .._types import ByteRange
from ..mp4._cache import cache_key
from ..mp4._read import CacheOption, _CountingSource, _resolve_cache, _stats_delta, _stats_snapshot
from ._ebml import ID, Element, Window, children, read_element, read_string, read_uint
from ._tracks import SegmentInfo, TrackEntry, codec_setup, parse_info, parse_tracks, select_track
from ._walk import STEP_BYTES, Block, ReadRanges, walk_clusters, walk_one_lane

if TYPE_CHECKING:  # pragma: no cover
    from ..io import RangeSource

__all__ = [
    "EBML_MAGIC",
    "HEAD_BYTES",
    "MatroskaHead",
    "blocks_table",
    "cached_index",
    "load_index",
    "matroska_doc_type",
    "open_head",
    "store_index",
    "time_base",
    "walk_table",
]

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
HEAD_BYTES = 16 * 1024
#: Info, Tracks, SeekHead and Cues read on their own are capped at this size.
MAX_META_BYTES = 64 << 20
#: Cue points read (one lane each at most).
MAX_CUE_POINTS = 1 << 20
_CACHE_PREFIX = "matroska:"
#: Bytes per read when the complete walk reads the Segment through instead of
#: stepping block headers (memory holds about one such read at a time).
READ_THROUGH_BYTES = 8 << 20
#: Frame rate assumed for a video track without DefaultDuration.
_ASSUMED_FPS = 30


def load_index(source: RangeSource, *, track: int | None = None, cache: CacheOption = None) -> SampleIndex:
    """Build the complete SampleIndex of one Matroska/WebM video track.

    Args:
        source: a RangeSource.
        track: the TrackNumber to index; default the first video track.
        cache: as for the MP4 index (None: the process-wide cache; a folder;
            an IndexCache; False: none).

    Raises:
        NotAVideoError: not EBML.
        MatroskaParseError: broken elements, blocks past the end of the file.
        UnsupportedFormatError: another EBML DocType, no video track, a codec
            or feature the index does not read (lacing or ContentEncodings on
            the video track): the reader then demuxes with FFmpeg.
        TrackNotFoundError: ``track`` names no track, or a track that is not video.
    """
    hit = cached_index(source, track=track, cache=cache)
    if hit is not None:
        return hit
    snapshot = _stats_snapshot(source)
    counting = _CountingSource(source)
    head = open_head(counting, track=track)
    index = walk_table(
        head,
        counting.read_ranges,
        round_trip_cost_bytes=counting.round_trip_cost_bytes,
        max_concurrency=counting.max_concurrency,
    )
    index.index_nbytes, index.index_requests = _stats_delta(source, snapshot, counting)
    store_index(source, index, track=track, cache=cache)
    return index


def cached_index(source: RangeSource, *, track: int | None, cache: CacheOption) -> SampleIndex | None:
    """The complete table of ``source`` from the index cache, or None.

    Validating an entry needs the size and validator (a HEAD on HTTP), which
    the head read needs anyway.
    """
    index_cache = _resolve_cache(cache)
    key_url = _CACHE_PREFIX + source.url
    if index_cache is None or not index_cache.may_hold(key_url):
        return None
    return index_cache.get(cache_key(key_url, int(source.size), getattr(source, "validator", None), track))


def store_index(source: RangeSource, index: SampleIndex, *, track: int | None, cache: CacheOption) -> None:
    """Put a complete table in the index cache (nothing when ``cache`` is False)."""
    index_cache = _resolve_cache(cache)
    if index_cache is not None:
        key = cache_key(_CACHE_PREFIX + source.url, int(source.size), getattr(source, "validator", None), track)
        index_cache.put(key, index)


def matroska_doc_type(source: RangeSource) -> str | None:
    """``"matroska"`` or ``"webm"`` when ``source`` starts with an EBML header of
    that DocType (another DocType is returned as it is), else None.

    Reads the head, which the MP4 sniff has normally left in memory already.
    """
    try:
        if int(source.size) < 4:
            return None
        data = bytes(source.read_head(HEAD_BYTES, retain=True))
    except NotAVideoError:
        return None
    if data[:4] != EBML_MAGIC:
        return None
    try:
        return _doc_type(Window(data, 0, source.url), check=False)[0]
    except MatroskaParseError:
        return "matroska"  # broken header: load_index says what is wrong


def _read_head(source: RangeSource | _CountingSource) -> tuple[Window, int]:
    url = source.url
    if hasattr(source, "read_head"):
        data = source.read_head(HEAD_BYTES, retain=True)
        size = int(source.size)
    else:
        size = int(source.size)
        data = source.read_ranges([ByteRange(0, min(size, HEAD_BYTES))])[0] if size else b""
    if size <= 0:
        raise NotAVideoError(f"{url}: the file is empty (0 bytes).")
    if bytes(data[:4]) != EBML_MAGIC:
        raise NotAVideoError(f"{url}: not a Matroska/WebM file (it does not start with the EBML magic 1A 45 DF A3).")
    return Window(bytes(data), 0, url), size


def _doc_type(w: Window, *, check: bool = True) -> tuple[str, int]:
    """``(DocType, offset after the EBML header)``."""
    ebml = read_element(w, 0)
    if ebml.unknown_size or ebml.size > 4096:
        raise MatroskaParseError(f"{w.url}: the EBML header claims {ebml.size} bytes; expected a few dozen.")
    doc_type = "matroska"
    for e in children(w, ebml):
        if e.id == ID.DOC_TYPE:
            doc_type = read_string(w, e, "DocType")
    if check and doc_type not in ("matroska", "webm"):
        raise UnsupportedFormatError(f"{w.url}: EBML DocType {doc_type!r} is not Matroska or WebM.")
    return doc_type, ebml.end


def _read_element(source: RangeSource | _CountingSource, pos: int, limit: int, held: list[Window], what: str) -> Window:
    """A window holding the whole (known-size) element at ``pos``."""
    url = source.url
    for w in held:
        if w.covers(pos, min(limit, pos + 12)):
            e = read_element(w, pos)
            if not e.unknown_size and w.covers(pos, e.end):
                return w
    stop = min(limit, pos + 64 * 1024)
    w = Window(bytes(source.read_ranges([ByteRange(pos, stop)])[0]), pos, url)
    e = read_element(w, pos)
    if e.unknown_size or e.end > limit:
        raise MatroskaParseError(
            f"{url}: the {what} element at offset {pos} has size {'unknown' if e.unknown_size else e.size}, "
            f"past its Segment's end at {limit}."
        )
    if e.size > MAX_META_BYTES:
        raise MatroskaParseError(f"{url}: the {what} element claims {e.size} bytes; at most {MAX_META_BYTES}.")
    if not w.covers(pos, e.end):
        w = Window(bytes(source.read_ranges([ByteRange(pos, e.end)])[0]), pos, url)
    return w


@dataclass(frozen=True)
class MatroskaHead:
    """What a Matroska file says before its clusters: enough to set up a decoder
    and, with Cues, to find the clusters around any time."""

    url: str
    file_size: int
    doc_type: str
    seg_start: int
    seg_end: int
    head: Window
    """The file's first bytes (the walk starts on them)."""
    info: SegmentInfo
    track: TrackEntry
    codec: str
    extradata: bytes | None
    bit_depth: int | None
    cluster_starts: tuple[int, ...]
    """Every cluster position the Cues give (all tracks): lanes of the walk."""
    cue_times: tuple[int, ...]
    """Cue points of the video track: keyframe times (TimestampScale ticks), ascending."""
    cue_positions: tuple[int, ...]
    """The cluster holding each of ``cue_times``' keyframes (file offsets)."""
    open_nbytes: int = 0
    """Bytes read to get this far (the container sniff included), when counted."""
    open_requests: int = 0


def open_head(source: RangeSource | _CountingSource, *, track: int | None) -> MatroskaHead:
    """Read a Matroska file's head, Info, Tracks and Cues (a few small requests).

    Raises:
        NotAVideoError: not EBML.
        MatroskaParseError: broken elements.
        UnsupportedFormatError: another DocType, no video track, a codec or
            feature the index does not read.
        TrackNotFoundError: ``track`` names no track, or a track that is not video.
    """
    url = source.url
    head, size = _read_head(source)
    doc_type, pos = _doc_type(head)
    seg = read_element(head, pos)
    if seg.id != ID.SEGMENT:
        raise MatroskaParseError(f"{url}: expected a Segment at offset {pos}, found element {seg.id:#x}.")
    seg_start = seg.data_start
    seg_end = size if seg.unknown_size else seg.end
    if seg_end > size:
        raise MatroskaParseError(
            f"{url}: the Segment ends at {seg_end} but the file is {size} bytes long (the file is truncated)."
        )

    # Top-level elements held in the head, up to the first Cluster.
    found: dict[int, int] = {}
    p = seg_start
    while p < seg_end and head.covers(p, min(seg_end, p + 12)):
        e = read_element(head, p)
        if e.id == ID.CLUSTER or e.unknown_size:
            break
        if e.id in (ID.SEEK_HEAD, ID.INFO, ID.TRACKS, ID.CUES) and e.id not in found:
            found[e.id] = p
        if e.end > seg_end:
            raise MatroskaParseError(f"{url}: element {e.id:#x} at offset {p} runs past the Segment's end.")
        p = e.end
    held = [head]
    if ID.SEEK_HEAD in found:
        w = _read_element(source, found[ID.SEEK_HEAD], seg_end, held, "SeekHead")
        for entry in children(w, read_element(w, found[ID.SEEK_HEAD])):
            if entry.id != ID.SEEK:
                continue
            target = position = None
            for e in children(w, entry):
                if e.id == ID.SEEK_ID:
                    target = int.from_bytes(w.get(e.data_start, e.end), "big") if e.size <= 4 else None
                elif e.id == ID.SEEK_POSITION:
                    position = read_uint(w, e, "SeekPosition")
            if target in (ID.INFO, ID.TRACKS, ID.CUES) and position is not None and target not in found:
                if seg_start + position < seg_end:
                    found[target] = seg_start + position
    # The SeekHead's targets outside the head: one concurrent read of 64 KiB each.
    outside = [
        ByteRange(o, min(seg_end, o + 64 * 1024))
        for k, o in found.items()
        if k != ID.SEEK_HEAD and not head.covers(o, min(seg_end, o + 12))
    ]
    if outside:
        datas = source.read_ranges(outside)
        held += [Window(bytes(d), r.start, url) for r, d in zip(outside, datas, strict=True)]
    for what, eid in (("Info", ID.INFO), ("Tracks", ID.TRACKS)):
        if eid not in found:
            raise UnsupportedFormatError(f"{url}: no {what} element before the first Cluster and no SeekHead entry.")
    w = _read_element(source, found[ID.INFO], seg_end, held, "Info")
    info = parse_info(w, _checked(w, found[ID.INFO], ID.INFO, "Info"))
    w = _read_element(source, found[ID.TRACKS], seg_end, held, "Tracks")
    tracks = parse_tracks(w, _checked(w, found[ID.TRACKS], ID.TRACKS, "Tracks"))
    t = select_track(tracks, track, url)
    codec, extradata, bit_depth = codec_setup(t, url)

    starts: list[int] = []
    video: list[tuple[int, int]] = []
    if ID.CUES in found:
        try:
            w = _read_element(source, found[ID.CUES], seg_end, held, "Cues")
            starts, video = _cue_points(w, _checked(w, found[ID.CUES], ID.CUES, "Cues"), seg_start, seg_end, t.number)
        except MatroskaParseError:
            # Damaged Cues only cost speed: the walk finds every cluster without them.
            starts, video = [], []
    return MatroskaHead(
        url=url,
        file_size=size,
        doc_type=doc_type,
        seg_start=seg_start,
        seg_end=seg_end,
        head=head,
        info=info,
        track=t,
        codec=codec,
        extradata=extradata,
        bit_depth=bit_depth,
        cluster_starts=tuple(starts),
        cue_times=tuple(ct for ct, _ in video),
        cue_positions=tuple(cp for _, cp in video),
    )


def walk_table(
    head: MatroskaHead,
    read: ReadRanges,
    *,
    round_trip_cost_bytes: int | None = None,
    max_concurrency: int = 1,
    read_through: ReadRanges | None = None,
) -> SampleIndex:
    """The complete packet table of the video track: a walk over every cluster of the Segment.

    The walk steps from block header to block header (a few bytes each, one
    round trip per block of a cluster, clusters concurrently), unless
    reading the whole Segment through costs less at ``round_trip_cost_bytes``
    a round trip (see ``read_through_is_cheaper``): a short file with one or
    two clusters, or a long one without Cues. ``read_through`` reads for
    that case (default ``read``): a source that keeps what it read serves
    a short file's frames from memory afterwards.
    """
    if round_trip_cost_bytes and read_through_is_cheaper(head, round_trip_cost_bytes, max_concurrency):
        walk = walk_one_lane(
            url=head.url,
            file_size=head.file_size,
            start=head.seg_start,
            stop=head.seg_end,
            track=head.track.number,
            windows=[head.head],
            read=read_through or read,
            plan_read=lambda _blocks, _want: READ_THROUGH_BYTES,
            keep_windows=False,
        )
    else:
        walk = walk_clusters(
            url=head.url,
            file_size=head.file_size,
            seg_start=head.seg_start,
            seg_end=head.seg_end,
            track=head.track.number,
            windows=[head.head],
            read=read,
            starts=head.cluster_starts,
        )
    return blocks_table(head, walk.blocks)


def read_through_is_cheaper(head: MatroskaHead, round_trip_cost_bytes: int, max_concurrency: int) -> bool:
    """Whether reading the Segment through costs less than stepping its block
    headers, counting each round trip as ``round_trip_cost_bytes``."""
    walk = header_walk_cost(head, round_trip_cost_bytes, max_concurrency)
    return walk is not None and read_through_cost(head, round_trip_cost_bytes) < walk


def read_through_cost(head: MatroskaHead, round_trip_cost_bytes: int) -> float:
    """Bytes plus priced round trips of reading the Segment through, ``READ_THROUGH_BYTES`` a read."""
    segment = head.seg_end - head.seg_start
    return segment + -(-segment // READ_THROUGH_BYTES) * round_trip_cost_bytes


def header_walk_cost(head: MatroskaHead, round_trip_cost_bytes: int, max_concurrency: int) -> float | None:
    """Bytes plus priced round trips of the header walk, estimated; None without a duration.

    The walk makes about one round trip per video block of a cluster, clusters
    ``max_concurrency`` at a time (one lane after another without Cues); the
    number of blocks comes from the Segment's duration and the track's frame
    duration (30 frames a second where the track gives none). Audio blocks
    are not counted, which errs towards the header walk: the one with fewer bytes.
    """
    if head.info.duration is None or head.info.duration <= 0:
        return None
    seconds = head.info.duration * head.info.timestamp_scale / 1e9
    frame_ns = head.track.default_duration_ns or 1e9 / _ASSUMED_FPS
    blocks = max(1.0, seconds * 1e9 / frame_ns)
    clusters = max(1, len(head.cluster_starts))
    waves = -(-clusters // max(1, max_concurrency))
    return blocks * STEP_BYTES + waves * blocks / clusters * round_trip_cost_bytes


def blocks_table(head: MatroskaHead, blocks: list[Block]) -> SampleIndex:
    """The packet table of ``blocks`` (of ``head``'s video track, in file order)."""
    return _table(
        blocks,
        head.info.timestamp_scale,
        head.track,
        head.codec,
        head.extradata,
        head.bit_depth,
        head.file_size,
        head.url,
        head.doc_type,
    )


def _checked(w: Window, pos: int, eid: int, what: str) -> Element:
    e = read_element(w, pos)
    if e.id != eid:
        raise MatroskaParseError(f"{w.url}: expected {what} at offset {pos}, found element {e.id:#x}.")
    return e


def _cue_points(
    w: Window, cues: Element, seg_start: int, seg_end: int, track: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """Every cue's cluster position (sorted, all tracks), and ``(time, cluster
    position)`` of the cues of ``track``, sorted by time, one per time."""
    out: set[int] = set()
    video: dict[int, int] = {}
    for point in children(w, cues):
        if point.id != ID.CUE_POINT:
            continue
        time: int | None = None
        for tp in children(w, point):
            if tp.id == ID.CUE_TIME:
                time = read_uint(w, tp, "CueTime")
            if tp.id != ID.CUE_TRACK_POSITIONS:
                continue
            cue_track = pos = None
            for e in children(w, tp):
                if e.id == ID.CUE_CLUSTER_POSITION:
                    p = seg_start + read_uint(w, e, "CueClusterPosition")
                    if p < seg_end:
                        out.add(p)
                        pos = p
                elif e.id == ID.CUE_TRACK:
                    cue_track = read_uint(w, e, "CueTrack")
            if cue_track == track and pos is not None and time is not None:
                video.setdefault(time, pos)
        if len(out) > MAX_CUE_POINTS:
            break
    points = sorted(video.items())
    # A cue list whose positions go backwards as times go forwards is not one
    # this reader can trust for finding clusters by time.
    if any(b[1] <= a[1] for a, b in zip(points, points[1:], strict=False)):
        points = []
    return sorted(out), points


def time_base(scale: int, url: str) -> tuple[int, int]:
    """``(timescale, multiplier)``: table ticks are 1/timescale s, one Matroska tick is ``multiplier`` of them.

    FFmpeg's time base is TimestampScale / 10^9 s, reduced.
    """
    tb = Fraction(scale, 10**9)
    if tb.denominator >= 1 << 31:
        raise MatroskaParseError(f"{url}: TimestampScale {scale} gives a time base FFmpeg cannot hold.")
    return tb.denominator, tb.numerator


def _table(
    blocks: list,
    scale: int,
    t: object,
    codec: str,
    extradata: bytes | None,
    bit_depth: int | None,
    size: int,
    url: str,
    doc_type: str,
) -> SampleIndex:
    from ._tracks import TrackEntry

    assert isinstance(t, TrackEntry)
    timescale, mult = time_base(scale, url)
    n = len(blocks)
    offsets = np.fromiter((b.offset for b in blocks), dtype=np.int64, count=n)
    sizes = np.fromiter((b.size for b in blocks), dtype=np.int64, count=n)
    pts = np.fromiter((b.timestamp for b in blocks), dtype=np.int64, count=n) * mult
    is_sync = np.fromiter((b.keyframe for b in blocks), dtype=bool, count=n)
    default = round(t.default_duration_ns * timescale / 10**9) if t.default_duration_ns else 0
    durations = np.fromiter((b.duration * mult if b.duration >= 0 else default for b in blocks), np.int64, count=n)
    # Matroska stores presentation times only; decode order is file order. The
    # decode times are the sorted presentation times, moved back just enough
    # that no sample decodes after it is shown (FFmpeg's reordering delay).
    dts = np.sort(pts)
    if n:
        dts -= max(0, int((dts - pts).max()))
    shared = first_shared_time(pts)
    if shared is not None:
        raise MatroskaParseError(
            f"{url}: track {t.number}: two blocks share the presentation time {shared}; every "
            "shown frame needs its own time, so the frame order is ambiguous."
        )
    return SampleIndex(
        offsets=offsets,
        sizes=sizes,
        dts=dts,
        pts=pts,
        durations=durations,
        is_sync=is_sync,
        timescale=int(timescale),
        codec=codec,
        extradata=extradata,
        width=t.width,
        height=t.height,
        track_id=t.number,
        sample_entry=t.codec_id,
        rotation=t.rotation_cw,
        bit_depth=bit_depth,
        file_size=size,
        fragmented=False,
    )
