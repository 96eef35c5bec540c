"""load_index / read_index: from a byte source to a complete SampleIndex.

Reads, in order: the first 16 KiB (``HEAD_BYTES``); top-level headers outside it (one small
read each, mdat bodies skipped); the moov if it was not already fetched; for
fragmented files the fragment table (sidx: already fetched or one read; else
mfra: mfro then mfra, two tail reads; else a walk from the first moof, in
resynchronised concurrent lanes when the source prices a round trip: see
``_resync``), then every moof of the track (concurrent reads, never an mdat body).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._errors import MP4ParseError, TrackNotFoundError, TruncatedFileError, UnsupportedFormatError
from .._packets import SampleIndex, first_shared_time
from .._types import ByteRange
from ._boxes import Box, Buffer, iter_children, parse_box_header
from ._cache import IndexCache, cache_key, default_index_cache
from ._codec import parse_stsd
from ._edits import apply_edit_list, simple_time_offset
from ._fragments import (
    FragmentState,
    SegmentReference,
    parse_mfro,
    parse_moof,
    parse_sidx,
    parse_tfra,
)
from ._limits import (
    MAX_FRAGMENT_BOX_BYTES,
    MAX_INDEX_BYTES,
    MAX_SAMPLES,
    MAX_SIDX_BYTES,
    MAX_SIDX_TOTAL_BYTES,
    check_ticks,
)
from ._locate import PROBE_BYTES, IndexSource, Layout, locate, walk_after_moov
from ._moov import Movie, Track, TrackExtends, parse_moov
from ._resync import walk_fragments

if TYPE_CHECKING:  # pragma: no cover - io/ may pull in fsspec/aiohttp
    from ..io import RangeSource, TransferStats

__all__ = ["load_index", "read_index"]

#: ``load_index``'s ``cache``: None (the process-wide cache), False (none), a folder or an IndexCache.
CacheOption = IndexCache | str | os.PathLike[str] | Literal[False] | None


class _CountingSource:
    """Wraps a source to count index reads when it has no usable stats."""

    def __init__(self, source: RangeSource) -> None:
        self._source = source
        self.url = source.url
        self.nbytes = 0
        self.requests = 0
        self.supports_retain = bool(getattr(source, "supports_retain", False))
        if hasattr(source, "read_head"):
            self.read_head = self._read_head
        # The fragment walk's cost model: only a source that prices a round trip gets resync lanes.
        round_trip_cost = getattr(source, "round_trip_cost_bytes", None)
        self.round_trip_cost_bytes = int(round_trip_cost) if isinstance(round_trip_cost, int) else None
        self.max_concurrency = int(getattr(source, "max_concurrency", 1))

    @property
    def size(self) -> int:
        return int(self._source.size)

    def _read_head(self, nbytes: int, *, retain: bool = False) -> bytes:
        out = self._source.read_head(nbytes, retain=retain)
        self.requests += 1
        self.nbytes += len(out)
        return out

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]:
        ranges = list(ranges)
        if not ranges:
            return []
        if retain and self.supports_retain:
            out = self._source.read_ranges(ranges, retain=True)
        else:
            out = self._source.read_ranges(ranges)
        self.requests += len(ranges)
        self.nbytes += sum(len(b) for b in out)
        return out

    def read(self, start: int, stop: int) -> bytes:
        return self.read_ranges([ByteRange(start, stop)])[0]


def _stats_snapshot(source: RangeSource) -> TransferStats | None:
    stats = getattr(source, "stats", None)
    if stats is None or not hasattr(stats, "snapshot"):
        return None
    try:
        return stats.snapshot()
    except Exception:  # pragma: no cover - foreign stats object
        return None


def _stats_delta(source: RangeSource, snapshot: TransferStats | None, counting: _CountingSource) -> tuple[int, int]:
    if snapshot is not None:
        try:
            delta = source.stats.since(snapshot)
            return int(delta.bytes_received), int(delta.num_requests)
        except Exception:  # pragma: no cover
            pass
    return counting.nbytes, counting.requests


def _resolve_cache(cache: CacheOption) -> IndexCache | None:
    if cache is None:
        return default_index_cache
    if cache is False:
        return None
    if isinstance(cache, IndexCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return IndexCache.for_directory(cache)
    raise TypeError(
        f"load_index: cache must be an IndexCache, a folder path, None or False, got {type(cache).__name__}"
    )


def load_index(source: RangeSource, *, track: int | None = None, cache: CacheOption = None) -> SampleIndex:
    """Build the complete SampleIndex of one video track.

    Args:
        source: a RangeSource (``.url``, ``.size``, ``.validator``,
            ``.read_ranges``, ``.stats``).
        track: track_ID to index; default the first video track.
        cache: None (default): the process-wide in-memory cache
            ``default_index_cache``; a folder path: an on-disk cache there
            (plus an in-memory LRU shared by every load using that folder);
            an IndexCache; False: no caching.

    Returns:
        The SampleIndex, with ``index_nbytes``/``index_requests`` giving what
        building it cost (0 when it came from the cache).

    Raises:
        NotAVideoError: not ISO-BMFF (HTML, Matroska, MPEG-TS...).
        TruncatedFileError: a box or a sample lies past the end of the file.
        MP4ParseError: broken boxes or tables, times that overflow int64,
            two shown samples with one presentation time.
        UnsupportedFormatError: no video track, encryption, unknown codec.
        TrackNotFoundError: ``track`` names no track, or a track that is not video.
    """
    index_cache = _resolve_cache(cache)
    url = source.url
    if index_cache is not None and index_cache.may_hold(url):
        # Validating a cached index needs size and validator first (a HEAD on HTTP).
        hit = index_cache.get(cache_key(url, int(source.size), getattr(source, "validator", None), track))
        if hit is not None:
            return hit
    snapshot = _stats_snapshot(source)
    counting = _CountingSource(source)
    try:
        index = _build_index(counting, track=track)
    except OverflowError:
        # Python ints too large for int64 met numpy: a time or offset the checks did not anticipate.
        raise MP4ParseError(
            f"{url}: a time or byte offset in the index does not fit 64-bit arithmetic (the file is corrupt)."
        ) from None
    index.index_nbytes, index.index_requests = _stats_delta(source, snapshot, counting)
    if index_cache is not None:
        index_cache.put(cache_key(url, int(source.size), getattr(source, "validator", None), track), index)
    return index


def read_index(url: str, storage_options: dict[str, Any] | None = None, track: int | None = None) -> SampleIndex:
    """Index the video track of the MP4 at ``url`` (any fsspec URL or local path).

    Uses a fresh RangeSource and the process-wide index cache.
    """
    from ..io import RangeSource  # imported here: io/ may pull in fsspec/aiohttp

    with RangeSource(url, storage_options=storage_options) as source:
        return load_index(source, track=track)


# --------------------------------------------------------------------------- building


def _select_track(movie: Movie, track: int | None, url: str) -> Track:
    """The track to index: ``track`` when given, else the first video track.

    A ``track`` that is missing or not video raises TrackNotFoundError (not
    UnsupportedFormatError): the demux fallback would silently read another
    track instead.
    """
    if track is not None:
        video = [t.track_ID for t in movie.tracks if t.handler_type == "vide"]
        for t in movie.tracks:
            if t.track_ID == track:
                if t.handler_type != "vide":
                    raise TrackNotFoundError(
                        f"{url}: track {track} is a '{t.handler_type}' track, not video; the video tracks are {video}."
                    )
                return t
        raise TrackNotFoundError(
            f"{url}: no track with track_ID {track}; the video tracks are {video} "
            f"(all tracks: {[t.track_ID for t in movie.tracks]})."
        )
    for t in movie.tracks:
        if t.handler_type == "vide":
            return t
    raise UnsupportedFormatError(
        f"{url}: no video track (tracks: {', '.join(repr(t.handler_type) for t in movie.tracks) or 'none'})."
    )


def _build_index(source: _CountingSource, *, track: int | None) -> SampleIndex:
    url = source.url
    layout = locate(source)  # first: on HTTP its first read also learns the size
    size = source.size
    movie = parse_moov(layout.moov_buf, layout.moov)
    trak = _select_track(movie, track, url)
    if trak.stsd is None:
        raise MP4ParseError(f"{url}: track {trak.track_ID} has no stsd (sample description).")
    info = parse_stsd(layout.moov_buf, trak.stsd, track_id=trak.track_ID)
    timescale = trak.timescale  # mdhd/mvhd timescales are checked (< 2^31) when parsed
    if timescale <= 0:
        # FFmpeg's fix_timescale: fall back to the movie timescale, else 1.
        timescale = movie.timescale if movie.timescale > 0 else 1

    # FFmpeg turns the advanced edit list off for this and every later track
    # once a track's moov has no samples (fragmented files).
    advanced = True
    for t in movie.tracks:
        if t.tables.stts is None or len(t.tables.stts[0]) == 0:
            advanced = False
        if t is trak:
            break
    time_offset = (
        simple_time_offset(trak.edits, movie_timescale=movie.timescale, media_timescale=timescale) if trak.edits else 0
    )
    check_ticks(time_offset, url=url, what="the edit list's start offset")

    parts = []  # (offsets, sizes, dts, durations, ctts, sync, discard)
    dts_shift = 0
    has_ctts = False
    track_end = 0
    if not trak.tables.empty:
        from ._tables import build_samples

        s = build_samples(trak.tables, url=url, file_size=size, track_id=trak.track_ID)
        dts_shift = s["dts_shift"]
        has_ctts = s["has_ctts"]
        track_end = int(s["durations"].sum())
        if trak.edits and advanced:
            e = apply_edit_list(
                trak.edits,
                dts=s["dts"],
                ctts=s["ctts"],
                durations=s["durations"],
                is_sync=s["is_sync"],
                has_ctts=has_ctts,
                dts_shift=dts_shift,
                movie_timescale=movie.timescale,
                media_timescale=timescale,
                url=url,
            )
            k = e["sample"]
            parts.append(
                (
                    s["offsets"][k],
                    s["sizes"][k],
                    e["dts"],
                    s["durations"][k],
                    s["ctts"][k],
                    s["is_sync"][k],
                    e["is_discard"],
                )
            )
        else:
            dts = s["dts"] - (time_offset if not advanced else 0) - dts_shift
            parts.append(
                (s["offsets"], s["sizes"], dts, s["durations"], s["ctts"], s["is_sync"], np.zeros(len(dts), dtype=bool))
            )

    fragmented = False
    if movie.has_mvex:
        trex = movie.trex.get(trak.track_ID) or TrackExtends(trak.track_ID, 1, 0, 0, 0)
        state = FragmentState(trak.track_ID, trex, time_offset=time_offset, track_end=track_end)
        moofs = _read_fragments(source, layout, trak.track_ID, trex)
        max_samples = min(size, MAX_SAMPLES)  # every sample holds at least one byte
        state.samples = sum(len(p[0]) for p in parts)
        prev_dts = int(parts[-1][2][-1]) if parts and len(parts[-1][2]) else None
        for buf, moof in moofs:
            m = parse_moof(buf, moof, state, max_samples=max_samples)
            if m.num_samples == 0:
                continue
            fragmented = True
            has_ctts = True  # a trun allocates FFmpeg's ctts table
            discard = np.zeros(m.num_samples, dtype=bool)
            bounds = m.trun_starts + [m.num_samples]
            for a, b in zip(bounds[:-1], bounds[1:], strict=False):
                if prev_dts is not None:
                    discard[a:b] = m.dts[a:b] <= prev_dts
                if b > a:
                    prev_dts = int(m.dts[b - 1])
                neg = int(m.ctts[a:b].min()) if b > a else 0
                if neg < 0:
                    dts_shift = max(dts_shift, -neg)
            parts.append((m.offsets, m.sizes, m.dts, m.durations, m.ctts, m.is_sync, discard))

    if parts:
        offsets, sizes, dts, durations, ctts, is_sync, is_discard = (
            np.concatenate(c) for c in zip(*parts, strict=False)
        )
    else:
        offsets = sizes = dts = durations = ctts = np.zeros(0, dtype=np.int64)
        is_sync = is_discard = np.zeros(0, dtype=bool)
    if len(offsets) and int((offsets + sizes).max()) > size:
        bad = int(np.argmax(offsets + sizes > size))
        raise TruncatedFileError(
            f"{url}: track {trak.track_ID} sample {bad} occupies [{int(offsets[bad])}, "
            f"{int(offsets[bad] + sizes[bad])}) but the file ends at {size}; the file is truncated."
        )
    if len(offsets) and int(offsets.min()) < 0:
        raise MP4ParseError(f"{url}: track {trak.track_ID} has a sample at a negative offset.")
    pts = dts + dts_shift + ctts if has_ctts else dts.copy()
    _check_times(url, trak.track_ID, dts, pts, is_discard)
    return SampleIndex(
        offsets=offsets,
        sizes=sizes,
        dts=dts,
        pts=pts,
        durations=durations,
        is_sync=is_sync,
        timescale=int(timescale),
        codec=info.codec,
        extradata=info.extradata,
        width=info.width,
        height=info.height,
        track_id=trak.track_ID,
        is_discard=is_discard,
        sample_entry=info.sample_entry,
        rotation=trak.rotation,
        bit_depth=info.bit_depth,
        file_size=size,
        fragmented=fragmented,
    )


def _check_times(url: str, track_id: int, dts: np.ndarray, pts: np.ndarray, is_discard: np.ndarray) -> None:
    """Refuse timelines that wrapped around int64 or show two frames at one time (``first_shared_time``)."""
    for name, a in (("decode", dts), ("presentation", pts)):
        if len(a) and (int(a.min()) <= -(1 << 62) or int(a.max()) >= 1 << 62):
            raise MP4ParseError(
                f"{url}: track {track_id} has {name} times beyond 2^62 ticks (the file's times overflow)."
            )
    t = first_shared_time(pts[~is_discard])
    if t is not None:
        samples = np.flatnonzero((pts == t) & ~is_discard)[:4].tolist()
        raise MP4ParseError(
            f"{url}: track {track_id}: samples {samples} share the presentation time {t}; every shown "
            "frame needs its own time, so the frame order is ambiguous (the file is corrupt)."
        )


# --------------------------------------------------------------------------- fragments


# An mfra lists each fragment in 20-30 bytes, and a fragment rarely holds less
# than 30 KB of media: the file's last size/1024 bytes (at most PROBE_BYTES)
# hold the mfra of fragments down to about 27 KB, and otherwise add at most
# 0.1 % of the file to the index reads.
_MFRA_GUESS_DIVISOR = 1024


def _fragment_offsets(source: IndexSource, layout: Layout, track_ID: int) -> tuple[list[int], int, str]:
    """Known moof offsets, the byte limit of the fragment area and how they
    were found (``sidx``, ``mfra`` or ``walk``)."""
    url = source.url
    size = source.size
    walk_after_moov(source, layout)
    if layout.sidx:
        chosen: list[SegmentReference] | None = None
        parsed: list[tuple[int, list[SegmentReference]]] = []
        for box in layout.sidx:
            buf = layout.buffer_for(box.start, box.end)
            assert buf is not None, "walk_after_moov reads every sidx box it records"
            ref_id, _ts, refs = parse_sidx(buf, box)
            parsed.append((ref_id, refs))
        for ref_id, refs in parsed:
            if ref_id == track_ID:
                chosen = refs
                break
        if chosen is None:
            chosen = parsed[0][1]
        offsets: list[int] = []
        nested = [r for r in chosen if r.is_sidx]
        offsets.extend(r.offset for r in chosen if not r.is_sidx)
        depth = 0
        budget = [MAX_SIDX_TOTAL_BYTES]
        while nested and depth < 4:
            depth += 1
            next_nested: list[SegmentReference] = []
            for _r, b, box in _read_nested_sidx(source, nested, budget):
                _id, _ts, sub = parse_sidx(b, box)
                next_nested.extend(x for x in sub if x.is_sidx)
                offsets.extend(x.offset for x in sub if not x.is_sidx)
            nested = next_nested
        return sorted(set(offsets)), size, "sidx"
    # mfra at the tail: mfro (last 16 bytes), then the mfra it points to. Where
    # the source prices a round trip, the first read also brings in the mfra of
    # most files: one round trip instead of two (see _MFRA_GUESS_DIVISOR).
    if size >= 16:
        buf = layout.buffer_for(size - 16, size)
        if buf is None:
            start = size - 16
            if getattr(source, "round_trip_cost_bytes", None):
                guess = min(PROBE_BYTES, size // _MFRA_GUESS_DIVISOR)
                start = min(start, max(layout.moov.end, size - guess))
            buf = Buffer(bytes(source.read_ranges([ByteRange(start, size)])[0]), start, url=url, file_size=size)
            layout.buffers.append(buf)
        tail = bytes(buf.view(size - 16, size))
        mfra_size = parse_mfro(tail)
        # An mfra beyond the cap is ignored (as a broken one is): the walk finds the moofs.
        if mfra_size is not None and 16 <= mfra_size <= min(size, MAX_FRAGMENT_BOX_BYTES):
            start = size - mfra_size
            buf = layout.buffer_for(start, size)
            if buf is None:
                buf = Buffer(bytes(source.read_ranges([ByteRange(start, size)])[0]), start, url=url, file_size=size)
            box = parse_box_header(buf, start, size)
            if box.type == "mfra":
                per_track: dict[int, list[int]] = {}
                for child in iter_children(buf, box):
                    if child.type == "tfra":
                        tid, entries = parse_tfra(buf, child)
                        per_track.setdefault(tid, []).extend(e.moof_offset for e in entries)
                offsets = per_track.get(track_ID) or next(iter(per_track.values()), [])
                offsets = [o for o in offsets if 0 <= o < start]
                if layout.first_moof is not None:
                    offsets.append(layout.first_moof)
                return sorted(set(offsets)), start, "mfra"
    first = [layout.first_moof] if layout.first_moof is not None else []
    return first, size, "walk"


def _read_nested_sidx(
    source: IndexSource, refs: list[SegmentReference], budget: list[int]
) -> list[tuple[SegmentReference, Buffer, Box]]:
    """``(reference, buffer, sidx box)`` for each nested sidx reference.

    A reference's size covers the sidx *and* the media it indexes, so only
    the box is read: first a window of at most ``MAX_SIDX_BYTES``, then the
    rest of the box when it is longer. ``budget[0]`` (bytes left for all
    nested sidx boxes) is decremented.
    """
    url = source.url
    size = source.size

    def take(nbytes: int) -> None:
        budget[0] -= nbytes
        if budget[0] < 0:
            raise MP4ParseError(f"{url}: nested sidx boxes exceed {MAX_SIDX_TOTAL_BYTES} bytes in all.")

    spans = []
    for r in refs:
        if r.size < 8:
            raise MP4ParseError(f"{url}: sidx reference at {r.offset} has size {r.size} < 8.")
        spans.append(ByteRange(r.offset, min(r.offset + r.size, r.offset + MAX_SIDX_BYTES, size)))
    take(sum(s.nbytes for s in spans))
    datas = source.read_ranges(spans)
    out = []
    for r, _span, data in zip(refs, spans, datas, strict=False):
        b = Buffer(bytes(data), r.offset, url=url, file_size=size)
        box = parse_box_header(b, r.offset, r.offset + r.size)
        if box.type != "sidx":
            raise MP4ParseError(f"{url}: sidx reference at {r.offset} points to '{box.type}', not a sidx.")
        if box.size > MAX_SIDX_BYTES:
            raise MP4ParseError(
                f"{url}: sidx at offset {box.start} claims {box.size} bytes; a sidx holds at most "
                f"{MAX_SIDX_BYTES} (the file is corrupt)."
            )
        if not b.covers(box.start, box.end):  # pragma: no cover - the window always holds a capped box
            take(box.size)
            b = Buffer(
                bytes(source.read_ranges([ByteRange(box.start, box.end)])[0]), box.start, url=url, file_size=size
            )
        out.append((r, b, box))
    return out


def _read_fragments(source: IndexSource, layout: Layout, track_ID: int, trex: TrackExtends) -> list[tuple[Buffer, Box]]:
    """Every moof of the file, in file order, each with a buffer holding it.

    Known offsets are read concurrently; each moof read also brings the next
    box header (normally the mdat), which gives the next fragment's offset,
    so fragments missing from sidx/mfra are still found. mdat bodies are
    never read. Without sidx or mfra, a source that prices a round trip
    (``round_trip_cost_bytes``) has the walk run in resynchronised lanes
    (``_resync``); any other source walks one chain.
    """
    url = source.url
    size = source.size
    known, limit, method = _fragment_offsets(source, layout, track_ID)
    round_trip_cost = getattr(source, "round_trip_cost_bytes", None)
    if method == "walk" and known and isinstance(round_trip_cost, int) and round_trip_cost > 0:
        return walk_fragments(
            source,
            layout,
            first=known[0],
            limit=limit,
            track_ID=track_ID,
            trex=trex,
            round_trip_cost_bytes=round_trip_cost,
            max_concurrency=int(getattr(source, "max_concurrency", 1)),
        ).moofs
    # Blind reads are sized on the largest moof seen (+16 bytes for the next
    # header): exact for regular files, a few bytes into the mdat at worst.
    # Until a moof has been seen, read 16-byte headers first (exact, 2 rounds).
    max_moof = 0
    if layout.first_moof is not None:
        first = layout.buffer_for(layout.first_moof, layout.first_moof + 16)
        if first is not None:
            max_moof = parse_box_header(first, layout.first_moof, size).size
    seen: set[int] = set()
    found: dict[int, tuple[Buffer, Box]] = {}
    pending = sorted(set(known))
    nbytes = 0
    while pending:
        todo: list[tuple[int, int]] = []
        ready: list[tuple[int, Buffer]] = []
        for off in pending:
            if off in seen or off + 8 > limit:
                continue
            seen.add(off)
            buf = layout.buffer_for(off, min(size, off + 16))
            if buf is not None:
                box = parse_box_header(buf, off, size)
                if buf.covers(off, min(size, box.end + 16 if box.type == "moof" else off + 16)):
                    ready.append((off, buf))
                    continue
            todo.append((off, min(size, off + (max_moof + 16 if max_moof else 16))))
        if todo:
            nbytes += sum(b - a for a, b in todo)
            if nbytes > MAX_INDEX_BYTES:
                raise UnsupportedFormatError(f"{url}: fragment headers exceed {MAX_INDEX_BYTES} bytes.")
            datas = source.read_ranges([ByteRange(a, b) for a, b in todo])
            for (a, _b), data in zip(todo, datas, strict=False):
                ready.append((a, Buffer(bytes(data), a, url=url, file_size=size)))
        # Moofs larger than what was read: one concurrent round of exact reads.
        short = []
        for i, (off, buf) in enumerate(ready):
            box = parse_box_header(buf, off, size)
            if box.type == "moof":
                if box.size > MAX_FRAGMENT_BOX_BYTES:
                    raise MP4ParseError(
                        f"{url}: moof at offset {off} claims {box.size} bytes; expected at most "
                        f"{MAX_FRAGMENT_BOX_BYTES} (the file is corrupt)."
                    )
                max_moof = max(max_moof, box.size)
                if not buf.covers(off, min(size, box.end + 16)):
                    short.append((i, off, min(size, box.end + 16)))
        if short:
            nbytes += sum(b - a for _i, a, b in short)
            datas = source.read_ranges([ByteRange(a, b) for _i, a, b in short])
            for (i, a, _b), data in zip(short, datas, strict=False):
                ready[i] = (a, Buffer(bytes(data), a, url=url, file_size=size))
        pending = []
        for off, buf in ready:
            box = parse_box_header(buf, off, size)
            if box.type == "moof":
                found[off] = (buf, box)
                nxt_pos = box.end
                if nxt_pos + 8 <= limit:
                    covered = buf.covers(nxt_pos, min(size, nxt_pos + 16))
                    nxt = parse_box_header(buf, nxt_pos, size) if covered else None
                    if nxt is None:
                        pending.append(nxt_pos)
                    elif nxt.type == "moof":
                        pending.append(nxt.start)
                    else:
                        if nxt.type != "mfra":
                            pending.append(nxt.end)
            elif box.type == "mfra":
                continue
            else:
                pending.append(box.end)
        pending = sorted(set(p for p in pending if p not in seen and p + 8 <= limit))
    return [found[k] for k in sorted(found)]
