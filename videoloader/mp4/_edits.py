"""Edit lists (edts/elst, ISO 14496-12 8.6.6) applied the way FFmpeg does.

"Frame i" means the i-th frame of a plain FFmpeg decode, so the timeline is
FFmpeg's, not the spec's ideal one. FFmpeg's mov demuxer (libavformat/mov.c)
has two paths:

* **Advanced edit list** (default, ``mov_fix_index``), used when the moov
  holds the samples. For each edit ``(media_time, segment_duration)``:

  - empty edits (``media_time == -1``) before the first real edit only add
    their duration to the start of the timeline;
  - the kept samples start at the last *keyframe* whose pts is <= media_time
    (searched over dts, then refined over pts when there is a ctts);
  - every kept sample whose composition time falls outside
    ``[media_time, media_time + segment_duration)`` is kept but flagged
    *discard*: it is decoded only so later frames can be, never output;
  - samples are kept until the first keyframe at or after the edit's end
    (the second one when there is a ctts, for trailing B-frames);
  - new dts are a running counter that starts at the edit's start on the
    presentation timeline; the leading discarded samples get dts counted
    backwards from the first shown one;
  - finally, for video, every dts is shifted so that the smallest pts of the
    shown samples equals the total duration of the leading empty edits.

  pts = dts + dts_shift + ctts, where dts_shift undoes negative ctts.

* **Simple offset** (``time_offset``), used for fragmented files (FFmpeg
  disables the advanced path when a track's moov has no samples): every dts
  is shifted by ``empty_duration - media_time`` of the first edit, nothing is
  discarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from .._errors import MP4ParseError
from ._boxes import Box, Buffer, FieldReader
from ._limits import MAX_EDIT_SAMPLES_FACTOR, MAX_EDITS, check_ticks

__all__ = ["EditEntry", "apply_edit_list", "parse_elst", "simple_time_offset"]


@dataclass(frozen=True)
class EditEntry:
    segment_duration: int
    """In movie (mvhd) timescale ticks."""
    media_time: int
    """In media (mdhd) timescale ticks; -1 for an empty edit."""
    media_rate: float


def parse_elst(buf: Buffer, box: Box) -> list[EditEntry]:
    """EditListBox. Like FFmpeg (non-strict), a count that disagrees with the
    box size is replaced by what the box holds."""
    r = FieldReader(buf, box)
    version, _flags = r.full_box()
    entry_count = r.u32("entry_count")
    entry_size = 20 if version == 1 else 12
    if entry_count * entry_size != r.remaining:
        entry_count = r.remaining // entry_size
    if entry_count > MAX_EDITS:
        raise MP4ParseError(
            f"{buf.url}: elst at offset {box.start} holds {entry_count} edits; expected at most {MAX_EDITS} "
            "(the file is corrupt)."
        )
    entries = []
    for _ in range(entry_count):
        if version == 1:
            duration = r.u64("segment_duration")
            media_time = r.s64("media_time")
        else:
            duration = r.u32("segment_duration")
            media_time = r.s32("media_time")
        rate = r.s32("media_rate") / 65536.0
        what = f"elst at offset {box.start}"
        check_ticks(duration, url=buf.url, what=f"{what}: segment_duration")
        check_ticks(media_time, url=buf.url, what=f"{what}: media_time")
        entries.append(EditEntry(duration, media_time, rate))
    return entries


def rescale_rnd(a: int, b: int, c: int) -> int:
    """FFmpeg av_rescale: ``a * b / c`` rounded to nearest, halves away from 0."""
    if c <= 0:
        return 0
    num = a * b
    if num >= 0:
        return (num + c // 2) // c
    return -((-num + c // 2) // c)


def simple_time_offset(edits: list[EditEntry], *, movie_timescale: int, media_timescale: int) -> int:
    """``sc->time_offset`` of mov_build_index: first real edit's media_time
    minus a leading empty edit's duration (media ticks)."""
    empty_duration = 0
    start_time = 0
    edit_start_index = 0
    for i, e in enumerate(edits):
        if i == 0 and e.media_time == -1:
            empty_duration = e.segment_duration
            edit_start_index = 1
        elif i == edit_start_index and e.media_time >= 0:
            start_time = e.media_time
    if (empty_duration or start_time) and movie_timescale > 0:
        if empty_duration:
            empty_duration = rescale_rnd(empty_duration, media_timescale, movie_timescale)
        return start_time - empty_duration
    return 0


def _find_start(
    ts_old: np.ndarray, cts_old: np.ndarray, key: np.ndarray, has_ctts: bool, timestamp_pts: int, dts_shift: int
) -> int:
    """find_prev_closest_index: the sample a decode of this edit starts from."""
    n = len(ts_old)
    wanted = timestamp_pts - dts_shift if dts_shift > 0 else timestamp_pts

    def search(any_frame: bool) -> int:
        # ff_index_search_timestamp(..., AVSEEK_FLAG_BACKWARD): last entry with
        # timestamp <= wanted, then back to a keyframe unless ANY.
        m = int(np.searchsorted(ts_old, wanted, side="right")) - 1
        if m >= 0 and not any_frame:
            keys = np.flatnonzero(key[: m + 1])
            m = int(keys[-1]) if len(keys) else -1
        if m >= 0:
            # Walk back over equal timestamps (to a keyframe unless ANY).
            i = m
            while i > 0 and ts_old[i] == ts_old[i - 1]:
                if any_frame or key[i - 1]:
                    m = i - 1
                i -= 1
        if has_ctts and m >= 0:
            # Refine: a keyframe whose pts (ts + ctts, dts_shift excluded) <= wanted.
            ok = np.flatnonzero(key[: m + 1] & (cts_old[: m + 1] <= wanted))
            m = int(ok[-1]) if len(ok) else -1
        return m

    index = search(False)
    if index < 0:
        index = search(True)
        if index < 0:
            index = 0
    return min(index, n)


class EditedTimeline(TypedDict):
    """What ``apply_edit_list`` returns (see there)."""

    sample: np.ndarray
    dts: np.ndarray
    pts: np.ndarray
    is_discard: np.ndarray
    start_time: int


def apply_edit_list(
    edits: list[EditEntry],
    *,
    dts: np.ndarray,
    ctts: np.ndarray,
    durations: np.ndarray,
    is_sync: np.ndarray,
    has_ctts: bool,
    dts_shift: int,
    movie_timescale: int,
    media_timescale: int,
    url: str = "",
) -> EditedTimeline:
    """mov_fix_index for a video track.

    Args:
        edits: the track's edit list (non-empty).
        dts: raw decode times from stts, starting at 0.
        ctts: composition offsets per sample (0 where absent).
        durations: stts delta per sample.
        is_sync: keyframe flags.
        has_ctts: whether the track had a (valid) ctts table.
        dts_shift: FFmpeg's dts_shift (undoes negative ctts).
        url: redacted URL, for messages.

    Returns:
        ``sample`` (int64 index into the input arrays of each output packet,
        in output order; a sample may appear twice with repeated edits),
        ``dts``, ``pts``, ``is_discard``, and ``start_time`` (ticks).

    Raises:
        MP4ParseError: an edit's times overflow the timeline, or the edits
            repeat samples more than ``MAX_EDIT_SAMPLES_FACTOR`` times over.
    """
    n = len(dts)
    ts_old = dts - dts_shift
    # Composition time as mov_fix_index compares it: ts + dts_shift + ctts.
    curr_cts = ts_old + dts_shift + ctts
    # Refinement in find_prev_closest_index compares ts_old + ctts.
    cts_search = ts_old + ctts
    # frame_duration: gap to the next sample's dts; the last one is patched per edit.
    gaps = np.empty(n, dtype=np.int64)
    if n:
        gaps[:-1] = np.diff(ts_old)

    out_sample: list[np.ndarray] = []
    out_ts: list[np.ndarray] = []
    out_discard: list[np.ndarray] = []
    entry_end = -dts_shift if dts_shift > 0 else 0
    empty_sum = 0
    found_non_empty = False
    min_corrected_pts = -1
    total = 0
    for edit in edits:
        if movie_timescale == 0:
            break
        media_time = edit.media_time
        duration = rescale_rnd(edit.segment_duration, media_timescale, movie_timescale)
        counter = entry_end
        entry_end += duration
        check_ticks(entry_end, url=url, what="the edit list's end (in media ticks)")
        if not found_non_empty and media_time == -1:
            empty_sum += duration
            continue
        found_non_empty = True
        if n == 0:
            continue
        start = _find_start(ts_old, cts_search, is_sync, has_ctts, media_time, dts_shift)
        if n:
            gaps[-1] = duration
        seg = slice(start, n)
        cts = curr_cts[seg]
        outside = (cts < media_time) | (cts >= media_time + duration)
        # Break at the first (with ctts: second) keyframe whose cts + duration
        # reaches the edit's end; that sample is still kept.
        stop_cond = (cts + gaps[seg] >= media_time + duration) & is_sync[seg]
        hits = np.flatnonzero(stop_cond)
        need = 2 if has_ctts else 1
        stop = start + int(hits[need - 1]) + 1 if len(hits) >= need else n
        m = stop - start
        total += m
        if total > MAX_EDIT_SAMPLES_FACTOR * n:
            raise MP4ParseError(
                f"{url}: the edit list repeats samples: {total} entries from {n} samples after "
                f"{len(out_sample) + 1} edits; expected at most {MAX_EDIT_SAMPLES_FACTOR * n} (the file is corrupt)."
            )
        outside = outside[:m]
        inside = np.flatnonzero(~outside)
        idx = np.arange(start, stop, dtype=np.int64)
        if len(inside):
            first = start + int(inside[0])
            # Kept samples run on the old dts gaps from the first shown one.
            new_ts = counter + ts_old[start:stop] - ts_old[first]
            shown = idx[inside]
            cand = int((new_ts[inside] + ctts[shown] + dts_shift).min())
            min_corrected_pts = cand if min_corrected_pts < 0 else min(min_corrected_pts, cand)
        else:
            # No sample shown: the counter never advances.
            new_ts = np.full(m, counter, dtype=np.int64)
        out_sample.append(idx)
        out_ts.append(new_ts)
        out_discard.append(outside)

    if out_sample:
        sample = np.concatenate(out_sample)
        new_dts = np.concatenate(out_ts)
        discard = np.concatenate(out_discard)
    else:
        sample = np.zeros(0, dtype=np.int64)
        new_dts = np.zeros(0, dtype=np.int64)
        discard = np.zeros(0, dtype=bool)
    min_corrected_pts -= empty_sum
    if min_corrected_pts > 0:
        new_dts = new_dts - min_corrected_pts
    pts = new_dts + dts_shift + ctts[sample]
    return {"sample": sample, "dts": new_dts, "pts": pts, "is_discard": discard, "start_time": empty_sum}
