"""A minimal MP4 muxer for clips: chosen samples of one video track, timestamps kept.

``write_clip`` builds a self-contained, non-fragmented MP4 (``ftyp``, ``moov``
with one video track, ``mdat``) holding a subset of a track's samples, for
example the decode groups of a :class:`~videoloader._plan.Plan`. The sample
description (``stsd``: the ``avc1``/``hvc1``/``av01``/``vp09`` entry with its
``avcC``/``hvcC``/``av1C``/``vpcC``, ``colr``, ``pasp``... children) is copied
byte for byte from the source file, so the decoder is configured exactly as
for the original. The tables are built from the :class:`SampleIndex` rows:

* ``stts`` from the gaps between the chosen samples' decode times (the last
  keeps its own duration), so the decode timeline keeps its original spacing
  even where samples between groups were left out;
* ``ctts`` (version 0) from presentation minus decode time, after shifting
  decode times down as far as needed to make every offset non-negative;
* ``stss`` lists the sync samples (absent when all are);
* one chunk holding every sample (``stsc`` one entry, ``stco`` or ``co64``);
* an edit list that maps the clip's media time back to the source's
  presentation time: an empty edit delays the timeline when the first chosen
  sample decodes after time 0, a media time skips ahead when it decodes before
  it. A reader that applies edit lists as FFmpeg does (FFmpeg, PyAV, our own
  index) then reports for each frame the presentation time it has in the
  source.

With ``shown``, only those samples are presented: one edit covers their
composition times, moved past every decode time, and the other samples keep
composition times before the edit, so a reader decodes them and shows none
(ISO 14496-12 8.6.6; FFmpeg's ``mov_fix_index`` marks them discarded). Only
the first sample is a sync sample, so the edit is decoded from it in one pass.
One edit with a leading empty edit, rather than one edit per frame, because
FFmpeg applies empty edits only before the first real one.

Standard library and numpy only.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from .._packets import SampleIndex

__all__ = ["write_clip"]

_U32 = (1 << 32) - 1


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size = 8 + len(body)
    if size > _U32:
        return struct.pack(">I4sQ", 1, kind, size + 8) + body
    return struct.pack(">I4s", size, kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _matrix(rotation: int) -> bytes:
    """The tkhd/mvhd transformation matrix for a clockwise display rotation."""
    one, w = 0x00010000, 0x40000000
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}.get(rotation % 360, (1, 0))
    values = (cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, w)
    return struct.pack(">9i", *values)


def _table(values: np.ndarray, fmt: str) -> bytes:
    return np.asarray(values, dtype=np.dtype(fmt)).tobytes()


def _run_lengths(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts, values) of the runs of equal consecutive values."""
    if len(values) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate(([0], change))
    counts = np.diff(np.concatenate((starts, [len(values)])))
    return counts.astype(np.int64), values[starts].astype(np.int64)


def _shown_timeline(
    index: SampleIndex, sel: np.ndarray, shown: np.ndarray, media_dts: np.ndarray, media_duration: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Composition offsets and edit list that present only ``shown``, each at its source time.

    The one edit starts at media time ``T`` = the media's duration, after
    every decode time. A shown sample is composed at ``T + (pts - first
    shown pts)``, inside the edit; every other sample at its own decode time,
    before ``T``: outside every edit, so a reader decodes it (the shown ones
    need it) and presents nothing of it (ISO 14496-12 8.6.6; FFmpeg marks it
    discarded). A leading empty edit puts the first shown frame at its source
    time. Only the first sample is a sync sample: a reader starts the edit
    from it and runs through every sample, as one pass over the decode groups.

    Returns:
        (composition offsets, one per written sample, all >= 0; edits as
        ``(duration, media_time)`` in the track's timescale)
    """
    if len(shown) == 0:
        raise ValueError("write_clip: shown names no sample")
    mask = np.isin(sel, shown)
    if not np.all(np.isin(shown, sel)):
        raise ValueError("write_clip: shown names a sample that is not written")
    frames = index.sample_to_frame[sel[mask]]
    if np.any(frames < 0):
        raise ValueError("write_clip: shown names a sample the source never shows")
    pts = index.pts[sel].astype(np.int64)
    first = int(pts[mask].min())
    ends = pts[mask] + np.maximum(index.frame_durations()[frames], 1)
    start = media_duration
    composition = np.where(mask, start + (pts - first), media_dts)
    edits = [(first, -1)] if first > 0 else []
    edits.append((int(ends.max()) - first, start))
    return composition - media_dts, edits


def write_clip(
    index: SampleIndex,
    stsd: bytes,
    samples: Sequence[int],
    payloads: Sequence[bytes],
    *,
    shown: Sequence[int] | None = None,
    major_brand: bytes = b"isom",
) -> bytes:
    """An MP4 file holding ``samples`` of ``index``'s track with their source timestamps.

    Args:
        index: the source track's sample table.
        stsd: the source track's whole ``stsd`` box (header included), copied as is.
        samples: sample numbers (decode order) to include, strictly increasing.
        payloads: the bytes of each of ``samples``, same order.
        shown: samples (of ``samples``) whose frames a reader presents, at
            their source times; the others are decoded only to reach them.
            None presents every sample.
        major_brand: the ``ftyp`` major brand.

    Returns:
        The file's bytes.

    Raises:
        ValueError: no samples, samples not strictly increasing, a payload whose
            size differs from the table's, or an ``stsd`` that is not one.
    """
    sel = np.asarray(samples, dtype=np.int64)
    if len(sel) == 0:
        raise ValueError("write_clip: no samples to write")
    if len(sel) != len(payloads):
        raise ValueError(f"write_clip: {len(sel)} samples but {len(payloads)} payloads")
    if np.any(np.diff(sel) <= 0):
        raise ValueError("write_clip: samples must be strictly increasing (decode order)")
    if len(stsd) < 16 or stsd[4:8] != b"stsd" or int.from_bytes(stsd[:4], "big") != len(stsd):
        raise ValueError("write_clip: stsd must be a whole 'stsd' box")
    sizes = index.sizes[sel]
    for k, (want, data) in enumerate(zip(sizes.tolist(), payloads, strict=True)):
        if len(data) != want:
            raise ValueError(f"write_clip: sample {int(sel[k])} has {len(data)} bytes, the table says {want}")

    timescale = int(index.timescale)
    dts = index.dts[sel].astype(np.int64)
    pts = index.pts[sel].astype(np.int64)
    durations = np.maximum(index.durations[sel].astype(np.int64), 1)
    # Decode times shifted down so that every composition offset is >= 0 (ctts version 0).
    shift = max(0, int((dts - pts).max()))
    dts = dts - shift
    origin = int(dts[0])
    media_dts = dts - origin
    media_pts = pts - origin
    deltas = np.empty(len(sel), dtype=np.int64)
    deltas[:-1] = np.diff(media_dts)
    deltas[-1] = int(durations[-1])
    media_duration = int(media_dts[-1] + deltas[-1])
    if shown is None:
        offsets = media_pts - media_dts
        # Presentation = media pts - media_time (+ empty edit): back to the source's pts.
        media_time = max(0, -origin)
        empty = max(0, origin)
        shown_end = int((media_pts + durations).max())
        edits = [(empty, -1)] if empty else []
        edits.append((max(1, shown_end - media_time), media_time))
        sync = np.flatnonzero(index.is_sync[sel]) + 1
    else:
        offsets, edits = _shown_timeline(index, sel, np.asarray(shown, dtype=np.int64), media_dts, media_duration)
        sync = np.array([1], dtype=np.int64)
    movie_duration = sum(d for d, _ in edits)

    counts, values = _run_lengths(deltas)
    stts = _full_box(b"stts", 0, 0, struct.pack(">I", len(counts)), _table(np.stack([counts, values], 1), ">u4"))
    stbl_parts = [stsd, stts]
    if np.any(offsets != 0):
        c_counts, c_values = _run_lengths(offsets)
        stbl_parts.append(
            _full_box(b"ctts", 0, 0, struct.pack(">I", len(c_counts)), _table(np.stack([c_counts, c_values], 1), ">u4"))
        )
    if len(sync) != len(sel):
        stbl_parts.append(_full_box(b"stss", 0, 0, struct.pack(">I", len(sync)), _table(sync, ">u4")))
    stbl_parts.append(_full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(sel)), _table(sizes, ">u4")))
    stbl_parts.append(_full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(sel), 1)))

    width, height = int(index.width), int(index.height)
    mdat_payload = int(sizes.sum())
    ftyp = _box(b"ftyp", major_brand, struct.pack(">I", 0x200), b"isomiso2mp41")

    def moov(chunk_offset: int) -> bytes:
        if chunk_offset + mdat_payload > _U32:
            stco = _full_box(b"co64", 0, 0, struct.pack(">IQ", 1, chunk_offset))
        else:
            stco = _full_box(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset))
        stbl = _box(b"stbl", *stbl_parts, stco)
        dref = _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))
        minf = _box(
            b"minf",
            _full_box(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0)),
            _box(b"dinf", dref),
            stbl,
        )
        mdhd = _full_box(b"mdhd", 1, 0, struct.pack(">QQIQHH", 0, 0, timescale, media_duration, 0x55C4, 0))
        hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"VideoHandler\x00")
        mdia = _box(b"mdia", mdhd, hdlr, minf)
        entries = [struct.pack(">Qqhh", d, t, 1, 0) for d, t in edits]
        edts = _box(b"edts", _full_box(b"elst", 1, 0, struct.pack(">I", len(entries)), *entries))
        tkhd = _full_box(
            b"tkhd",
            1,
            3,  # enabled, in movie
            struct.pack(">QQIIQ", 0, 0, 1, 0, movie_duration),
            struct.pack(">8xhhhH", 0, 0, 0, 0),
            _matrix(index.rotation),
            struct.pack(">II", width << 16, height << 16),
        )
        trak = _box(b"trak", tkhd, edts, mdia)
        mvhd = _full_box(
            b"mvhd",
            1,
            0,
            struct.pack(">QQIQ", 0, 0, timescale, movie_duration),
            struct.pack(">iH10x", 0x00010000, 0x0100),
            _matrix(0),
            bytes(24),
            struct.pack(">I", 2),
        )
        return _box(b"moov", mvhd, trak)

    # The chunk offset depends on the moov's size, which depends (stco vs co64) on the offset.
    mdat_header = 8 if mdat_payload + 8 <= _U32 else 16
    head = moov(0)
    chunk_offset = len(ftyp) + len(head) + mdat_header
    head = moov(chunk_offset)
    if len(ftyp) + len(head) + mdat_header != chunk_offset:
        chunk_offset = len(ftyp) + len(head) + mdat_header
        head = moov(chunk_offset)
    if mdat_header == 8:
        mdat = struct.pack(">I4s", 8 + mdat_payload, b"mdat")
    else:
        mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + mdat_payload)
    return b"".join([ftyp, head, mdat, *payloads])
