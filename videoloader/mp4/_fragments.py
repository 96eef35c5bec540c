"""Movie fragments (ISO 14496-12 8.8): moof/traf/tfhd/tfdt/trun, sidx, mfra.

Sample positions follow the spec and FFmpeg alike: a traf's base data offset
is tfhd's ``base_data_offset`` when present, else the moof's first byte when
``default-base-is-moof`` is set, else the end of the previous traf's data
(the moof's first byte for the first traf). Each trun adds its
``data_offset``.

Decode times follow FFmpeg's mov_read_trun: a trun continues where the
previous trun of the same traf ended, else starts at tfdt's
``baseMediaDecodeTime``, else where the track's previous fragment ended;
``time_offset`` (from the edit list) is subtracted. Samples whose dts is not
after the last dts already indexed are flagged discard (overlapping
fragments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .._errors import MP4ParseError, TruncatedFileError
from ._boxes import Box, Buffer, FieldReader, iter_children
from ._limits import MAX_SAMPLES, MAX_TICKS, MAX_UNBACKED_SAMPLES, check_ticks
from ._moov import TrackExtends

__all__ = [
    "FragmentState",
    "MoofSamples",
    "SegmentReference",
    "TfraEntry",
    "parse_mfro",
    "parse_moof",
    "parse_sidx",
    "parse_tfra",
]

# tfhd flags
_BASE_DATA_OFFSET = 0x000001
_SAMPLE_DESCRIPTION_INDEX = 0x000002
_DEFAULT_SAMPLE_DURATION = 0x000008
_DEFAULT_SAMPLE_SIZE = 0x000010
_DEFAULT_SAMPLE_FLAGS = 0x000020
_DURATION_IS_EMPTY = 0x010000
_DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags
_DATA_OFFSET = 0x000001
_FIRST_SAMPLE_FLAGS = 0x000004
_SAMPLE_DURATION = 0x000100
_SAMPLE_SIZE = 0x000200
_SAMPLE_FLAGS = 0x000400
_SAMPLE_CTO = 0x000800
# sample_flags bits FFmpeg tests for "not a keyframe"
_IS_NON_SYNC = 0x00010000
_DEPENDS_YES = 0x01000000


@dataclass
class FragmentState:
    """What carries from one fragment to the next for one track."""

    track_ID: int
    trex: TrackExtends
    time_offset: int = 0
    track_end: int = 0
    """End of the last sample indexed, in media ticks (before time_offset)."""
    samples: int = 0
    """trun samples parsed so far, every track (capped by ``MAX_SAMPLES``)."""
    unbacked: int = 0
    """Of those, samples no per-sample trun field backs (capped by ``MAX_UNBACKED_SAMPLES``)."""


@dataclass
class MoofSamples:
    """Samples of one track found in one moof, in decode order."""

    moof_offset: int
    offsets: np.ndarray
    sizes: np.ndarray
    durations: np.ndarray
    dts: np.ndarray
    ctts: np.ndarray
    is_sync: np.ndarray
    trun_starts: list[int] = field(default_factory=list)
    """Index of each trun's first sample (for FFmpeg's overlap rule)."""
    tfdt: int | None = None

    @property
    def num_samples(self) -> int:
        return int(len(self.offsets))


def parse_moof(buf: Buffer, moof: Box, state: FragmentState, *, max_samples: int) -> MoofSamples:
    """Samples of ``state.track_ID`` in one moof (which must be entirely in ``buf``).

    Updates ``state.track_end``.
    """
    url = buf.url
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("offsets", "sizes", "durations", "dts", "ctts", "sync")}
    trun_starts: list[int] = []
    count = 0
    first_tfdt: int | None = None
    implicit_offset = moof.start
    for traf in iter_children(buf, moof):
        if traf.type != "traf":
            continue
        tfhd_seen = False
        base_data_offset = implicit_offset
        defaults = (state.trex.default_sample_duration, state.trex.default_sample_size, state.trex.default_sample_flags)
        ours = False
        next_trun_dts: int | None = None
        tfdt: int | None = None
        for box in iter_children(buf, traf):
            if box.type == "tfhd":
                r = FieldReader(buf, box)
                _v, flags = r.full_box()
                track_ID = r.u32("track_ID")
                if track_ID == 0:
                    raise MP4ParseError(f"{url}: tfhd at offset {box.start} has track_ID 0.")
                tfhd_seen = True
                ours = track_ID == state.track_ID
                if flags & _BASE_DATA_OFFSET:
                    base_data_offset = r.u64("base_data_offset")
                    if base_data_offset >= MAX_TICKS:
                        raise MP4ParseError(
                            f"{url}: tfhd at offset {box.start} has base_data_offset {base_data_offset}, "
                            f"past the end of the file ({buf.file_size})."
                        )
                elif flags & _DEFAULT_BASE_IS_MOOF:
                    base_data_offset = moof.start
                else:
                    base_data_offset = implicit_offset
                if flags & _SAMPLE_DESCRIPTION_INDEX:
                    r.u32("sample_description_index")
                d_dur = (
                    r.u32("default_sample_duration")
                    if flags & _DEFAULT_SAMPLE_DURATION
                    else state.trex.default_sample_duration
                )
                d_size = (
                    r.u32("default_sample_size") if flags & _DEFAULT_SAMPLE_SIZE else state.trex.default_sample_size
                )
                d_flags = (
                    r.u32("default_sample_flags") if flags & _DEFAULT_SAMPLE_FLAGS else state.trex.default_sample_flags
                )
                defaults = (d_dur, d_size, d_flags)
                next_trun_dts = None
            elif box.type == "tfdt" and ours:
                r = FieldReader(buf, box)
                version, _ = r.full_box()
                tfdt = r.u64("baseMediaDecodeTime") if version == 1 else r.u32("baseMediaDecodeTime")
                check_ticks(tfdt, url=url, what=f"tfdt at offset {box.start}: baseMediaDecodeTime")
                state.track_end = tfdt
                if first_tfdt is None:
                    first_tfdt = tfdt
            elif box.type == "trun":
                if not tfhd_seen:
                    raise MP4ParseError(f"{url}: trun at offset {box.start} comes before any tfhd.")
                r = FieldReader(buf, box)
                version, flags = r.full_box()
                sample_count = r.u32("sample_count")
                data_offset = r.s32("data_offset") if flags & _DATA_OFFSET else 0
                first_sample_flags = r.u32("first_sample_flags") if flags & _FIRST_SAMPLE_FLAGS else None
                fields = [f for f in (_SAMPLE_DURATION, _SAMPLE_SIZE, _SAMPLE_FLAGS, _SAMPLE_CTO) if flags & f]
                record = 4 * len(fields)
                r.check_table(sample_count, record, "trun samples")
                if count + sample_count > max_samples:
                    raise MP4ParseError(
                        f"{url}: trun at offset {box.start} claims {sample_count} samples, beyond the "
                        f"{max_samples} the file's size allows."
                    )
                _charge(state, sample_count, backed=record > 0, url=url, box=box)
                d_dur, d_size, d_flags = defaults
                if not flags & _SAMPLE_SIZE and sample_count * max(d_size, 1) > buf.file_size:
                    raise MP4ParseError(
                        f"{url}: trun at offset {box.start} claims {sample_count} samples of {d_size} bytes, "
                        f"more than the whole file ({buf.file_size} bytes)."
                    )
                table = np.frombuffer(r.view(sample_count * record), dtype=">u4").reshape(sample_count, len(fields))
                col = {f: table[:, i] for i, f in enumerate(fields)}
                if not ours:
                    # Another track's trun still moves the implicit offset (nothing allocated).
                    nbytes = (
                        int(col[_SAMPLE_SIZE].sum(dtype=np.int64)) if _SAMPLE_SIZE in col else sample_count * d_size
                    )
                    implicit_offset = base_data_offset + data_offset + nbytes
                    continue
                durations = (
                    col[_SAMPLE_DURATION].astype(np.int64)
                    if _SAMPLE_DURATION in col
                    else np.full(sample_count, d_dur, np.int64)
                )
                sizes = (
                    col[_SAMPLE_SIZE].astype(np.int64)
                    if _SAMPLE_SIZE in col
                    else np.full(sample_count, d_size, np.int64)
                )
                if _SAMPLE_FLAGS in col:
                    sflags = col[_SAMPLE_FLAGS].astype(np.int64)
                else:
                    sflags = np.full(sample_count, d_flags, np.int64)
                    if first_sample_flags is not None and sample_count:
                        sflags[0] = first_sample_flags
                # FFmpeg reads the offset as unsigned and stores it as int: signed either way.
                ctts = (
                    col[_SAMPLE_CTO].astype(np.int32).astype(np.int64)
                    if _SAMPLE_CTO in col
                    else np.zeros(sample_count, np.int64)
                )
                if sample_count and int(sizes.min()) == 0:
                    raise MP4ParseError(f"{url}: trun at offset {box.start} has a zero-size sample.")
                end = base_data_offset + data_offset + int(sizes.sum())
                if sample_count and base_data_offset + data_offset < 0:
                    raise MP4ParseError(f"{url}: trun at offset {box.start} places a sample at a negative offset.")
                if sample_count and end > buf.file_size:
                    raise TruncatedFileError(
                        f"{url}: trun at offset {box.start} places its samples at "
                        f"[{base_data_offset + data_offset}, {end}) but the file ends at {buf.file_size}; "
                        "the file is truncated or corrupt."
                    )
                if next_trun_dts is not None:
                    start_dts = next_trun_dts - state.time_offset
                elif tfdt is not None:
                    start_dts = tfdt - state.time_offset
                else:
                    start_dts = state.track_end - state.time_offset
                check_ticks(start_dts, url=url, what=f"trun at offset {box.start}: first decode time")
                start = base_data_offset + data_offset
                ends = np.cumsum(sizes)
                offsets = start + ends - sizes
                dts = start_dts + np.cumsum(durations) - durations
                end_dts = start_dts + int(durations.sum())
                next_trun_dts = end_dts + state.time_offset
                state.track_end = end_dts + state.time_offset
                implicit_offset = start + int(ends[-1]) if sample_count else start
                trun_starts.append(count)
                count += sample_count
                parts["offsets"].append(offsets)
                parts["sizes"].append(sizes)
                parts["durations"].append(durations)
                parts["dts"].append(dts)
                parts["ctts"].append(ctts)
                parts["sync"].append((sflags & (_IS_NON_SYNC | _DEPENDS_YES)) == 0)

    def cat(name: str, dtype: npt.DTypeLike) -> np.ndarray:
        return np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros(0, dtype)

    return MoofSamples(
        moof_offset=moof.start,
        offsets=cat("offsets", np.int64),
        sizes=cat("sizes", np.int64),
        durations=cat("durations", np.int64),
        dts=cat("dts", np.int64),
        ctts=cat("ctts", np.int64),
        is_sync=cat("sync", bool),
        trun_starts=trun_starts,
        tfdt=first_tfdt,
    )


def _charge(state: FragmentState, count: int, *, backed: bool, url: str, box: Box) -> None:
    """Count a trun's samples against the track's caps before anything is allocated."""
    state.samples += count
    if not backed:
        state.unbacked += count
        if state.unbacked > MAX_UNBACKED_SAMPLES:
            raise MP4ParseError(
                f"{url}: trun at offset {box.start} brings the samples without per-sample fields to "
                f"{state.unbacked}; expected at most {MAX_UNBACKED_SAMPLES} (the file is corrupt)."
            )
    if state.samples > MAX_SAMPLES:
        raise MP4ParseError(
            f"{url}: trun at offset {box.start} brings the fragment samples to {state.samples}; "
            f"at most {MAX_SAMPLES} are supported."
        )


@dataclass(frozen=True)
class SegmentReference:
    """One sidx reference: a subsegment (moof + mdat ...) or a nested sidx."""

    offset: int
    size: int
    is_sidx: bool
    earliest_presentation_time: int
    duration: int
    starts_with_SAP: bool


def parse_sidx(buf: Buffer, box: Box) -> tuple[int, int, list[SegmentReference]]:
    """SegmentIndexBox: ``(reference_ID, timescale, references)`` with
    absolute byte offsets (anchor = first byte after the sidx)."""
    r = FieldReader(buf, box)
    version, _ = r.full_box()
    reference_ID = r.u32("reference_ID")
    timescale = r.u32("timescale")
    if version == 0:
        ept = r.u32("earliest_presentation_time")
        first_offset = r.u32("first_offset")
    else:
        ept = r.u64("earliest_presentation_time")
        first_offset = r.u64("first_offset")
    r.skip(2, "reserved")
    reference_count = r.u16("reference_count")
    r.check_table(reference_count, 12, "sidx references")
    table = np.frombuffer(r.view(reference_count * 12), dtype=">u4").reshape(-1, 3).astype(np.int64)
    refs = []
    offset = box.end + first_offset
    t = ept
    for word0, duration, word2 in table.tolist():
        size = word0 & 0x7FFFFFFF
        refs.append(SegmentReference(offset, size, bool(word0 >> 31), t, duration, bool(word2 >> 31)))
        offset += size
        t += duration
    if refs and refs[-1].offset + refs[-1].size > buf.file_size:
        raise MP4ParseError(
            f"{buf.url}: sidx at offset {box.start} references bytes up to "
            f"{refs[-1].offset + refs[-1].size}, past the end of the file ({buf.file_size})."
        )
    return reference_ID, timescale, refs


@dataclass(frozen=True)
class TfraEntry:
    time: int
    moof_offset: int


def parse_tfra(buf: Buffer, box: Box) -> tuple[int, list[TfraEntry]]:
    """TrackFragmentRandomAccessBox: ``(track_ID, entries)``."""
    r = FieldReader(buf, box)
    version, _ = r.full_box()
    track_ID = r.u32("track_ID")
    sizes = r.u32("length_size fields")
    traf_len = ((sizes >> 4) & 3) + 1
    trun_len = ((sizes >> 2) & 3) + 1
    sample_len = (sizes & 3) + 1
    number_of_entry = r.u32("number_of_entry")
    entry_size = (16 if version == 1 else 8) + traf_len + trun_len + sample_len
    r.check_table(number_of_entry, entry_size, "tfra entries")
    raw = np.frombuffer(r.view(number_of_entry * entry_size), dtype=np.uint8).reshape(-1, entry_size)
    width = 8 if version == 1 else 4
    dtype = ">u8" if version == 1 else ">u4"
    times = np.frombuffer(raw[:, :width].tobytes(), dtype=dtype).astype(np.int64)
    moofs = np.frombuffer(raw[:, width : 2 * width].tobytes(), dtype=dtype).astype(np.int64)
    return track_ID, [TfraEntry(int(t), int(m)) for t, m in zip(times, moofs, strict=False)]


def parse_mfro(data: bytes) -> int | None:
    """The mfra size from a trailing MovieFragmentRandomAccessOffsetBox
    (16 bytes: size 16, 'mfro', version/flags, size), or None."""
    if len(data) < 16 or data[-12:-8] != b"mfro" or int.from_bytes(data[-16:-12], "big") != 16:
        return None
    return int.from_bytes(data[-4:], "big")
