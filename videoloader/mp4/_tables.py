"""Sample table boxes (ISO 14496-12 8.6 / 8.7) to per-sample numpy arrays.

One function per box, field names from the spec, every ``entry_count *
entry_size`` checked against the box before anything is allocated. Where the
spec leaves room (short tables, zero counts, absurd stts deltas) we do what
FFmpeg's mov demuxer does, since "frame i" is defined by FFmpeg's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from .._errors import MP4ParseError, TruncatedFileError
from ._boxes import Box, Buffer, FieldReader
from ._limits import MAX_SAMPLES, MAX_UNBACKED_SAMPLES

__all__ = [
    "SampleTables",
    "build_samples",
    "parse_co64",
    "parse_ctts",
    "parse_stco",
    "parse_stsc",
    "parse_stss",
    "parse_stsz",
    "parse_stts",
    "parse_stz2",
]

#: FFmpeg's default ``max_stts_delta`` (UINT_MAX - 48000 * 10): larger deltas
#: are taken as negative int32 corrections.
_MAX_STTS_DELTA = 0xFFFFFFFF - 48000 * 10


def parse_stts(buf: Buffer, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """TimeToSampleBox: ``(sample_count, sample_delta)`` arrays (int64)."""
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    r.check_table(entry_count, 8, "stts entries")
    table = np.frombuffer(r.view(entry_count * 8), dtype=">u4").reshape(-1, 2).astype(np.int64)
    return table[:, 0].copy(), table[:, 1].copy()


def parse_ctts(buf: Buffer, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """CompositionOffsetBox (v0 and v1): ``(sample_count, sample_offset)``.

    FFmpeg reads both fields as signed 32-bit whatever the version (v0 files
    with "negative" unsigned offsets exist), so we do too.
    """
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    r.check_table(entry_count, 8, "ctts entries")
    table = np.frombuffer(r.view(entry_count * 8), dtype=">i4").reshape(-1, 2).astype(np.int64)
    return table[:, 0].copy(), table[:, 1].copy()


def parse_stss(buf: Buffer, box: Box) -> np.ndarray:
    """SyncSampleBox (also PartialSyncSampleBox 'stps'): 1-based sample numbers."""
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    r.check_table(entry_count, 4, f"{box.type} entries")
    return np.frombuffer(r.view(entry_count * 4), dtype=">u4").astype(np.int64)


def parse_stsz(buf: Buffer, box: Box) -> tuple[int, int, np.ndarray | None]:
    """SampleSizeBox: ``(sample_size, sample_count, entry_size or None)``."""
    r = FieldReader(buf, box)
    r.full_box()
    sample_size = r.u32("sample_size")
    sample_count = r.u32("sample_count")
    if sample_size:
        # Constant size: no table. The count is checked against the file later.
        return sample_size, sample_count, None
    r.check_table(sample_count, 4, "stsz sample sizes")
    sizes = np.frombuffer(r.view(sample_count * 4), dtype=">u4").astype(np.int64)
    return 0, sample_count, sizes


def parse_stz2(buf: Buffer, box: Box) -> tuple[int, int, np.ndarray | None]:
    """CompactSampleSizeBox: field_size 4, 8 or 16 bits."""
    r = FieldReader(buf, box)
    r.full_box()
    r.skip(3, "reserved")
    field_size = r.u8("field_size")
    sample_count = r.u32("sample_count")
    if field_size not in (4, 8, 16):
        raise MP4ParseError(
            f"{buf.url}: 'stz2' at offset {box.start} has field_size {field_size}; expected 4, 8 or 16."
        )
    nbytes = (sample_count * field_size + 7) // 8
    r.check_table(1, nbytes, "bytes of stz2 sample sizes")
    raw = np.frombuffer(r.view(nbytes), dtype=np.uint8)
    if field_size == 4:
        # High nibble first: [0x12, 0x34] -> [1, 2, 3, 4]
        sizes = np.empty(len(raw) * 2, dtype=np.int64)
        sizes[0::2] = raw >> 4
        sizes[1::2] = raw & 0x0F
        sizes = sizes[:sample_count]
    elif field_size == 8:
        sizes = raw.astype(np.int64)
    else:
        sizes = np.frombuffer(raw.tobytes(), dtype=">u2").astype(np.int64)
    return 0, sample_count, sizes


def parse_stsc(buf: Buffer, box: Box) -> np.ndarray:
    """SampleToChunkBox: int64 array ``[n, 3]`` of (first_chunk,
    samples_per_chunk, sample_description_index), repaired the way FFmpeg
    repairs invalid entries (mov_read_stsc)."""
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    r.check_table(entry_count, 12, "stsc entries")
    table = np.frombuffer(r.view(entry_count * 12), dtype=">u4").reshape(-1, 3).astype(np.int64)
    if entry_count == 0:
        return table
    # Vectorised validity test; the (rare) repair loop runs in Python.
    first, count, sdi = table[:, 0], table[:, 1], table[:, 2]
    ok = (first >= np.arange(1, entry_count + 1)) & (count >= 1) & (sdi >= 1)
    ok[:-1] &= first[:-1] < first[1:]
    ok[1:] &= first[1:] > first[:-1]
    if ok.all():
        return table.copy()
    rows = [list(map(int, row)) for row in table]
    n = len(rows)
    i = n - 1
    while i >= 0:
        first_min = i + 1
        e = rows[i]
        bad = (
            (i + 1 < n and e[0] >= rows[i + 1][0])
            or (i > 0 and e[0] <= rows[i - 1][0])
            or e[0] < first_min
            or e[1] < 1
            or e[2] < 1
        )
        if bad:
            if i + 1 >= n:
                if e[1] == 0 and i > 0:
                    n -= 1
                    rows.pop()
                    i -= 1
                    continue
                e[0] = max(e[0], first_min)
                if i > 0 and e[0] <= rows[i - 1][0]:
                    e[0] = rows[i - 1][0] + 1
                e[1] = max(e[1], 1)
                e[2] = max(e[2], 1)
            else:
                nxt = rows[i + 1]
                e[0], e[1], e[2] = nxt[0] - 1, nxt[1], nxt[2]
        i -= 1
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def parse_stco(buf: Buffer, box: Box) -> np.ndarray:
    """ChunkOffsetBox: 32-bit chunk offsets."""
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    r.check_table(entry_count, 4, "stco chunk offsets")
    return np.frombuffer(r.view(entry_count * 4), dtype=">u4").astype(np.int64)


def parse_co64(buf: Buffer, box: Box) -> np.ndarray:
    """ChunkLargeOffsetBox: 64-bit chunk offsets."""
    r = FieldReader(buf, box)
    r.full_box()
    entry_count = r.u32("entry_count")
    r.check_table(entry_count, 8, "co64 chunk offsets")
    offsets = np.frombuffer(r.view(entry_count * 8), dtype=">u8")
    if len(offsets) and int(offsets.max()) >= 1 << 62:
        raise MP4ParseError(
            f"{buf.url}: 'co64' at offset {box.start} holds an absurd chunk offset {int(offsets.max())}."
        )
    return offsets.astype(np.int64)


@dataclass
class SampleTables:
    """The raw sample tables of one track (before any edit list)."""

    stts: tuple[np.ndarray, np.ndarray] | None = None
    ctts: tuple[np.ndarray, np.ndarray] | None = None
    stss: np.ndarray | None = None
    stps: np.ndarray | None = None
    stsz: tuple[int, int, np.ndarray | None] | None = None
    stsc: np.ndarray | None = None
    chunk_offsets: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        """True when the moov holds no samples (fragmented file)."""
        return self.stts is None or len(self.stts[0]) == 0


def _expand_runs(counts: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Run-length expand ``values`` by ``counts`` to at most ``n`` items
    without allocating more than ``n`` (counts may be absurd).

    Returns the expanded array and how many items the runs covered (<= n).
    """
    counts = np.maximum(counts, 0)
    ends = np.minimum(np.cumsum(counts), n)
    clipped = np.diff(np.concatenate(([0], ends)))
    out = np.repeat(values, clipped)
    return out, len(out)


class Samples(TypedDict):
    """What ``build_samples`` returns (see there)."""

    offsets: np.ndarray
    sizes: np.ndarray
    dts: np.ndarray
    durations: np.ndarray
    ctts: np.ndarray
    is_sync: np.ndarray
    dts_shift: int
    has_ctts: bool


def build_samples(tables: SampleTables, *, url: str, file_size: int, track_id: int) -> Samples:
    """Per-sample arrays in decode order, as FFmpeg's mov_build_index lays
    them out before edit lists: ``offsets``, ``sizes``, ``dts`` (ticks from 0),
    ``durations``, ``ctts`` (0 where absent), ``is_sync``, plus ``dts_shift``
    and ``has_ctts``.

    Raises:
        MP4ParseError: mandatory tables missing or inconsistent, absurd counts.
        TruncatedFileError: a sample lies past the end of the file.
    """
    where = f"{url}: track {track_id}"
    if tables.stsz is None or tables.stsc is None or tables.chunk_offsets is None or tables.stts is None:
        missing = [
            n
            for n, v in (
                ("stsz/stz2", tables.stsz),
                ("stsc", tables.stsc),
                ("stco/co64", tables.chunk_offsets),
                ("stts", tables.stts),
            )
            if v is None
        ]
        raise MP4ParseError(f"{where}: sample table lacks mandatory box(es) {', '.join(missing)}.")
    sample_size, sample_count, entry_sizes = tables.stsz
    if sample_size and sample_count * sample_size > file_size:
        raise MP4ParseError(
            f"{where}: stsz claims {sample_count} samples of {sample_size} bytes "
            f"({sample_count * sample_size} bytes), more than the whole file ({file_size} bytes)."
        )
    if sample_count > file_size:
        raise MP4ParseError(f"{where}: stsz claims {sample_count} samples in a {file_size}-byte file.")
    if sample_size and sample_count > MAX_UNBACKED_SAMPLES:
        # No table entry backs these samples: cap what a 20-byte box can make us allocate.
        raise MP4ParseError(
            f"{where}: stsz claims {sample_count} samples of constant size {sample_size}; expected at most "
            f"{MAX_UNBACKED_SAMPLES} without a per-sample size table (the file is corrupt)."
        )
    if sample_count > MAX_SAMPLES:
        raise MP4ParseError(f"{where}: stsz claims {sample_count} samples; at most {MAX_SAMPLES} are supported.")
    chunk_offsets = tables.chunk_offsets
    stsc = tables.stsc
    n_chunks = len(chunk_offsets)
    if n_chunks and len(stsc) == 0:
        raise MP4ParseError(f"{where}: {n_chunks} chunks but an empty stsc.")
    if len(stsc) and stsc[-1, 0] > n_chunks:
        raise MP4ParseError(
            f"{where}: stsc refers to chunk {int(stsc[-1, 0])} but stco/co64 lists only {n_chunks} chunks."
        )
    if n_chunks == 0 or sample_count == 0:
        n = 0
        spc = np.zeros(0, dtype=np.int64)
    else:
        # Entry governing each chunk: the last with first_chunk <= chunk number.
        entry = np.searchsorted(stsc[:, 0], np.arange(1, n_chunks + 1), side="right") - 1
        spc = stsc[np.maximum(entry, 0), 1]
        n = int(min(int(spc.sum()), sample_count))
    # Chunk of every sample, truncated to n (FFmpeg stops at sample_count).
    chunk_of_sample, n = _expand_runs(spc, np.arange(len(spc), dtype=np.int64), n)
    if sample_size:
        sizes = np.full(n, sample_size, dtype=np.int64)
    else:
        assert entry_sizes is not None, "stsz/stz2 without a constant size always carry a size table"
        sizes = entry_sizes[:n].astype(np.int64)
    csum = np.concatenate(([0], np.cumsum(sizes)))
    first_of_chunk = np.concatenate(([0], np.cumsum(spc)))[:-1]
    idx = np.arange(n, dtype=np.int64)
    offsets = chunk_offsets[chunk_of_sample] + csum[idx] - csum[np.minimum(first_of_chunk[chunk_of_sample], n)]
    if n and int((offsets + sizes).max()) > file_size:
        last = int(np.argmax(offsets + sizes > file_size))
        raise TruncatedFileError(
            f"{where}: sample {last} occupies [{int(offsets[last])}, {int(offsets[last] + sizes[last])}) "
            f"but the file ends at {file_size}; the file is truncated."
        )

    # Decode times (stts), with FFmpeg's correction of absurd deltas.
    counts, deltas = tables.stts
    deltas = _correct_stts(counts, deltas)
    durations, covered = _expand_runs(counts, deltas, n)
    if covered < n:
        # Short stts: FFmpeg keeps using the last entry's delta.
        last = int(deltas[-1]) if len(deltas) else 0
        durations = np.concatenate((durations, np.full(n - covered, last, dtype=np.int64)))
    dts = np.concatenate(([0], np.cumsum(durations)[:-1])) if n else np.zeros(0, dtype=np.int64)

    # Composition offsets (ctts): FFmpeg's validity rules.
    has_ctts = False
    dts_shift = 0
    ctts = np.zeros(n, dtype=np.int64)
    if tables.ctts is not None and len(tables.ctts[0]):
        c_counts, c_offsets = tables.ctts
        keep = c_counts > 0
        entries = len(c_counts)
        not_last2 = np.arange(entries) + 2 < entries
        if np.any((np.abs(c_offsets) > (1 << 28)) & not_last2 & keep):
            has_ctts = False  # "CTTS invalid": FFmpeg drops the table
        elif keep.any():
            has_ctts = True
            neg = c_offsets[keep & not_last2]
            if len(neg) and int(neg.min()) < 0:
                dts_shift = -int(neg.min())
            expanded, covered = _expand_runs(c_counts[keep], c_offsets[keep], n)
            ctts[:covered] = expanded

    # Sync samples: stss (1-based numbers); absent = all sync; empty = only the first.
    if tables.stss is None:
        is_sync = np.ones(n, dtype=bool)
    elif len(tables.stss) == 0:
        is_sync = np.zeros(n, dtype=bool)
        if tables.stps is None or len(tables.stps) == 0:
            is_sync[:1] = True
    else:
        is_sync = np.zeros(n, dtype=bool)
        key_off = 1 if tables.stss[0] > 0 else 0
        numbers = tables.stss - key_off
        is_sync[numbers[(numbers >= 0) & (numbers < n)]] = True
    if tables.stps is not None and len(tables.stps):
        key_off = 1 if tables.stps[0] > 0 else 0
        numbers = tables.stps - key_off
        is_sync[numbers[(numbers >= 0) & (numbers < n)]] = True

    return {
        "offsets": offsets.astype(np.int64),
        "sizes": sizes,
        "dts": dts.astype(np.int64),
        "durations": durations.astype(np.int64),
        "ctts": ctts,
        "is_sync": is_sync,
        "dts_shift": dts_shift,
        "has_ctts": has_ctts,
    }


def _correct_stts(counts: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """FFmpeg's mov_read_stts clipping of deltas above max_stts_delta."""
    if not len(deltas) or int(deltas.max()) <= _MAX_STTS_DELTA:
        return deltas
    deltas = deltas.copy()
    current_dts = 0
    corrected_dts = 0
    for i in range(len(deltas)):
        count = int(counts[i])
        delta = int(deltas[i])
        if delta > _MAX_STTS_DELTA:
            magnitude = delta - (1 << 32) if delta >= 1 << 31 else delta
            deltas[i] = 1
            corrected_dts += (magnitude if magnitude < 0 else 1) * count
        else:
            corrected_dts += delta * count
        current_dts += int(deltas[i]) * count
        if current_dts > corrected_dts:
            drift = (current_dts - corrected_dts) // max(count, 1)
            correction = drift if int(deltas[i]) > drift else int(deltas[i]) - 1
            current_dts -= correction * count
            deltas[i] -= correction
    return deltas
