"""MovieBox (moov) walk: tracks, their headers, sample tables and edit lists.

Only what the index needs is parsed: mvhd (timescale), tkhd (track_ID,
matrix), mdhd (timescale), hdlr (handler_type), stsd, the stbl tables, elst,
and mvex/trex (fragment defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._errors import MP4ParseError
from ._boxes import Box, Buffer, FieldReader, iter_children
from ._edits import EditEntry, parse_elst
from ._limits import check_timescale
from ._tables import (
    SampleTables,
    parse_co64,
    parse_ctts,
    parse_stco,
    parse_stsc,
    parse_stss,
    parse_stsz,
    parse_stts,
    parse_stz2,
)

__all__ = ["Movie", "Track", "TrackExtends", "parse_moov"]


@dataclass(frozen=True)
class TrackExtends:
    """TrackExtendsBox (trex): per-track defaults for fragments."""

    track_ID: int
    default_sample_description_index: int
    default_sample_duration: int
    default_sample_size: int
    default_sample_flags: int


@dataclass
class Track:
    track_ID: int = 0
    handler_type: str = ""
    timescale: int = 0
    matrix: tuple[int, ...] = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    edits: list[EditEntry] = field(default_factory=list)
    tables: SampleTables = field(default_factory=SampleTables)
    stsd: Box | None = None

    @property
    def rotation(self) -> int:
        """Degrees the frame must be rotated clockwise for display (0/90/180/270)."""
        a, b = self.matrix[0], self.matrix[1]
        if a == 0 and b == 0:
            return 0
        return int(round(math.degrees(math.atan2(b, a)))) % 360


@dataclass
class Movie:
    timescale: int = 0
    tracks: list[Track] = field(default_factory=list)
    trex: dict[int, TrackExtends] = field(default_factory=dict)
    has_mvex: bool = False
    fragment_duration: int = 0


def parse_moov(buf: Buffer, moov: Box) -> Movie:
    """Parse a moov box that lies entirely in ``buf``."""
    movie = Movie()
    for child in iter_children(buf, moov):
        if child.type == "mvhd":
            movie.timescale = _parse_mvhd(buf, child)
        elif child.type == "trak":
            movie.tracks.append(_parse_trak(buf, child))
        elif child.type == "mvex":
            movie.has_mvex = True
            for sub in iter_children(buf, child):
                if sub.type == "trex":
                    t = _parse_trex(buf, sub)
                    movie.trex[t.track_ID] = t
                elif sub.type == "mehd":
                    r = FieldReader(buf, sub)
                    version, _ = r.full_box()
                    movie.fragment_duration = r.u64() if version == 1 else r.u32()
        elif child.type in ("cmov",):
            raise MP4ParseError(f"{buf.url}: compressed moov ('cmov') is not supported by the index path.")
    return movie


def _parse_mvhd(buf: Buffer, box: Box) -> int:
    r = FieldReader(buf, box)
    version, _ = r.full_box()
    r.skip(16 if version == 1 else 8, "creation/modification time")
    return check_timescale(r.u32("timescale"), url=buf.url, what=f"mvhd at offset {box.start}:")


def _parse_trex(buf: Buffer, box: Box) -> TrackExtends:
    r = FieldReader(buf, box)
    r.full_box()
    return TrackExtends(r.u32(), r.u32(), r.u32(), r.u32(), r.u32())


def _parse_trak(buf: Buffer, trak: Box) -> Track:
    track = Track()
    for child in iter_children(buf, trak):
        if child.type == "tkhd":
            r = FieldReader(buf, child)
            version, _ = r.full_box()
            r.skip(16 if version == 1 else 8, "creation/modification time")
            track.track_ID = r.u32("track_ID")
            r.skip(4, "reserved")
            r.skip(8 if version == 1 else 4, "duration")
            r.skip(8 + 2 + 2 + 2 + 2, "reserved/layer/alternate_group/volume")
            track.matrix = tuple(r.s32("matrix") for _ in range(9))
        elif child.type == "edts":
            for sub in iter_children(buf, child):
                if sub.type == "elst":
                    track.edits = parse_elst(buf, sub)
        elif child.type == "mdia":
            _parse_mdia(buf, child, track)
    return track


def _parse_mdia(buf: Buffer, mdia: Box, track: Track) -> None:
    for child in iter_children(buf, mdia):
        if child.type == "mdhd":
            r = FieldReader(buf, child)
            version, _ = r.full_box()
            r.skip(16 if version == 1 else 8, "creation/modification time")
            track.timescale = check_timescale(r.u32("timescale"), url=buf.url, what=f"mdhd at offset {child.start}:")
        elif child.type == "hdlr":
            r = FieldReader(buf, child)
            r.full_box()
            r.skip(4, "pre_defined")
            track.handler_type = r.bytes(4, "handler_type").decode("latin-1")
        elif child.type == "minf":
            for sub in iter_children(buf, child):
                if sub.type == "stbl":
                    _parse_stbl(buf, sub, track)


def _parse_stbl(buf: Buffer, stbl: Box, track: Track) -> None:
    t = track.tables
    for child in iter_children(buf, stbl):
        kind = child.type
        if kind == "stsd":
            track.stsd = child
        elif kind == "stts":
            t.stts = parse_stts(buf, child)
        elif kind == "ctts":
            t.ctts = parse_ctts(buf, child)
        elif kind == "stss":
            t.stss = parse_stss(buf, child)
        elif kind == "stps":
            t.stps = parse_stss(buf, child)
        elif kind == "stsz":
            t.stsz = parse_stsz(buf, child)
        elif kind == "stz2":
            t.stsz = parse_stz2(buf, child)
        elif kind == "stsc":
            t.stsc = parse_stsc(buf, child)
        elif kind == "stco":
            t.chunk_offsets = parse_stco(buf, child)
        elif kind == "co64":
            t.chunk_offsets = parse_co64(buf, child)
