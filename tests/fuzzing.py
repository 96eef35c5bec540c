"""Seeded mutants of small generated MP4, Matroska and WebM files, run in sandboxed worker processes.

Shared by ``tests/test_fuzz.py`` (a few hundred cases) and
``benchmarks/fuzz.py`` (thousands). A case is ``(corpus name, seed)``: the
seed alone rebuilds the mutant, so any failure is reproducible with
``python tests/fuzzing.py --replay NAME SEED``.

Mutations aim at the container, not the codec: box headers (size and type
bits, sizes of 0, 1 and 2..7, huge sizes), table bodies (bit flips, huge
counts, extreme words), truncations, duplicated and removed boxes, swapped
box types; a few flip bits in sample payload, where only the shape of the
frames can be checked (decoders accept most payload damage). Matroska/WebM
mutations know the EBML element tree: bit flips in element IDs and size
fields, huge and unknown sizes, sizes off by a little, truncations,
duplicated, removed and retyped elements, integer values (timestamps, track
numbers, scales), block headers (track, relative timestamp, keyframe and
lacing flags), and Cues / SeekHead positions aimed anywhere.

Each case runs in a worker process with an address-space limit
(``RLIMIT_AS``) and a wall-clock timeout enforced by the parent, which kills
and replaces a worker that hangs or dies. Outcomes:

* ``ok-exact``: frames equal the unmutated file's (checked whenever the
  mutant's index equals the original's and every sample's bytes are intact);
* ``ok-frames``: frames of the right shape and dtype (payload or index touched);
* the name of a ``VideoLoaderError`` subclass: refused cleanly;
* failures: ``wrong-frames``, ``bad-batch``, ``empty-video`` (opened as a
  video of 0 frames), ``other-exception``, ``memory`` (MemoryError under the
  address-space limit), ``timeout``, ``crash`` (the worker died).
"""

from __future__ import annotations

import json
import os
import random
import resource
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FAILURES = frozenset({"wrong-frames", "bad-batch", "empty-video", "other-exception", "memory", "timeout", "crash"})

_COMMON = dict(width=64, height=48, fps=30, threads=1, container="mp4", container_options={"fflags": "+bitexact"})
_FRAG = "frag_keyframe+empty_moov+default_base_moof"
#: Matroska muxer: a Cluster every ~100 ms, so the small files still have several.
_MKV = {"fflags": "+bitexact", "cluster_time_limit": "100"}

#: name -> (make_video recipe, strip the trailing mfra); the recipe's container names the file's suffix.
RECIPES: dict[str, tuple[dict, bool]] = {
    "h264_faststart": (dict(codec="h264", num_frames=8, gop=4, bframes=2, movflags="faststart"), False),
    "h264_moov_end": (dict(codec="h264", num_frames=8, gop=4), False),
    "frag_nosidx": (dict(codec="h264", num_frames=8, gop=4, movflags=_FRAG), True),
    "frag_sidx": (dict(codec="h264", num_frames=8, gop=4, movflags=_FRAG + "+global_sidx"), True),
    "frag_mfra": (dict(codec="h264", num_frames=8, gop=4, movflags=_FRAG), False),
    "hevc": (dict(codec="hevc", num_frames=6, gop=3, codec_tag="hvc1", movflags="faststart"), False),
    "mkv_h264": (dict(codec="h264", num_frames=8, gop=4, bframes=2, container="mkv", container_options=_MKV), False),
    "webm_vp9": (dict(codec="vp9", num_frames=8, gop=4, container="webm", container_options=_MKV), False),
    "mkv_audio": (
        dict(codec="h264", num_frames=6, gop=3, bframes=2, container="mkv", audio=True, container_options=_MKV),
        False,
    ),
}


def _suffix(name: str) -> str:
    return "." + RECIPES[name][0].get("container", "mp4")


def make_corpus(directory: Path | str) -> dict[str, Path]:
    """Write every entry of :data:`RECIPES` as ``directory/<name>.<container>`` (reused if present)."""
    import media

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (recipe, strip_mfra) in RECIPES.items():
        path = directory / f"{name}{_suffix(name)}"
        if not path.exists():
            tmp = directory / f".{name}.tmp{_suffix(name)}"
            media.make_video(tmp, **{**_COMMON, **recipe})
            if strip_mfra:
                tmp.write_bytes(
                    b"".join(
                        tmp.read_bytes()[b.start : b.stop]
                        for b in media.iter_boxes(tmp.read_bytes())
                        if b.type != "mfra"
                    )
                )
            tmp.replace(path)
        out[name] = path
    return out


# --------------------------------------------------------------------------- box tree

_CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex", "moof", "traf", "mfra", "udta"}
_VISUAL_ENTRIES = {"avc1", "avc3", "hvc1", "hev1", "av01", "vp09", "mp4v", "encv"}
_TABLES = {
    "stts",
    "ctts",
    "stss",
    "stps",
    "stsz",
    "stz2",
    "stsc",
    "stco",
    "co64",
    "elst",
    "trun",
    "tfhd",
    "tfdt",
    "sidx",
    "mdhd",
    "mvhd",
    "tkhd",
    "hdlr",
    "mehd",
    "trex",
    "tfra",
    "mfro",
    "mfhd",
    "stsd",
    "avcC",
    "hvcC",
}
#: Offsets (from the body start) of count-like fields: (offset, width in bytes).
_COUNTS: dict[str, list[tuple[int, int]]] = {
    **{t: [(4, 4)] for t in ("stts", "ctts", "stss", "stps", "stco", "co64", "stsc", "elst", "stsd")},
    "stsz": [(4, 4), (8, 4)],
    "stz2": [(8, 4)],
    "trun": [(4, 4), (8, 4)],
    "sidx": [(8, 4), (22, 2), (16, 4)],
    "tfra": [(12, 4)],
    "mdhd": [(12, 4), (16, 4)],
    "mvhd": [(12, 4), (16, 4)],
    "tfdt": [(4, 4), (4, 8)],
    "tfhd": [(4, 4), (8, 8)],
    "mfro": [(4, 4)],
    "tkhd": [(12, 4)],
}
_TYPE_SWAPS = {
    "moov": ["free", "moof", "mdat"],
    "mdat": ["free", "moov"],
    "moof": ["free", "moov"],
    "trak": ["free"],
    "stco": ["co64"],
    "co64": ["stco"],
    "stsz": ["stz2"],
    "stz2": ["stsz"],
    "sidx": ["free", "moof"],
    "avc1": ["hvc1", "avc3", "encv"],
    "hvc1": ["hev1", "avc1"],
    "avcC": ["hvcC", "free"],
    "hvcC": ["avcC"],
    "stss": ["stps", "free"],
    "ctts": ["free"],
    "elst": ["free"],
    "tfdt": ["free"],
    "mfra": ["free"],
    "stts": ["ctts"],
    "trun": ["free"],
    "traf": ["free"],
    "mvex": ["free"],
    "edts": ["free"],
}


@dataclass(frozen=True)
class Node:
    type: str
    start: int
    header: int
    size: int
    parents: tuple[int, ...]
    """Starts of the enclosing boxes, outermost first."""

    @property
    def body(self) -> int:
        return self.start + self.header

    @property
    def end(self) -> int:
        return self.start + self.size


def box_tree(data: bytes) -> list[Node]:
    """Every box of a well-formed file (containers, stsd entries and their children)."""
    nodes: list[Node] = []

    def walk(start: int, stop: int, parents: tuple[int, ...]) -> None:
        pos = start
        while pos + 8 <= stop:
            size, kind = struct.unpack_from(">I4s", data, pos)
            header = 8
            if size == 1:
                size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
            elif size == 0:
                size = stop - pos
            if size < header or pos + size > stop:
                return
            t = kind.decode("latin-1")
            node = Node(t, pos, header, size, parents)
            nodes.append(node)
            inner = parents + (pos,)
            if t in _CONTAINERS:
                walk(node.body, node.end, inner)
            elif t == "stsd":
                walk(node.body + 8, node.end, inner)
            elif t in _VISUAL_ENTRIES:
                walk(node.body + 78, node.end, inner)
            pos += size

    walk(0, len(data), ())
    return nodes


# --------------------------------------------------------------------------- mutations


def _interesting32(rng: random.Random, size: int) -> int:
    return rng.choice(
        [
            0,
            1,
            2,
            7,
            8,
            0xFF,
            0xFFFF,
            0x10000,
            0x7FFFFFFF,
            0x80000000,
            0xFFFFFFFE,
            0xFFFFFFFF,
            20_000_000,
            size,
            max(size - 1, 0),
            rng.getrandbits(32),
            rng.getrandbits(16),
        ]
    )


def _interesting(rng: random.Random, width: int, size: int) -> int:
    if width == 2:
        return rng.choice([0, 1, 0xFFFF, 0x8000, rng.getrandbits(16)])
    if width == 8:
        return rng.choice([1 << 63, (1 << 64) - 1, 1 << 62, 1 << 32, (1 << 63) - 1, size, rng.getrandbits(64)])
    return _interesting32(rng, size)


def _put(buf: bytearray, pos: int, value: int, width: int) -> None:
    if 0 <= pos and pos + width <= len(buf):
        buf[pos : pos + width] = value.to_bytes(width, "big")


def _resize(buf: bytearray, nodes: list[Node], node: Node, delta: int) -> bool:
    """Add ``delta`` to the 32-bit size of every box enclosing ``node``."""
    by_start = {n.start: n for n in nodes}
    for p in node.parents:
        parent = by_start[p]
        if parent.header != 8 or not 0 < parent.size + delta < 1 << 32:
            return False
        _put(buf, p, parent.size + delta, 4)
    return True


def mutate_once(data: bytearray, rng: random.Random) -> str:
    """Apply one random mutation to ``data`` in place; returns what it did."""
    nodes = box_tree(bytes(data))
    size = len(data)
    tables = [n for n in nodes if n.type in _TABLES]
    mdats = [n for n in nodes if n.type == "mdat" and n.size > n.header]
    kind = rng.choices(
        [
            "header_bitflip",
            "table_bitflip",
            "table_word",
            "count",
            "box_size",
            "zero_size",
            "truncate",
            "duplicate",
            "remove",
            "type_swap",
            "payload_bitflip",
            "pointer",
        ],
        weights=[10, 14, 12, 16, 10, 5, 8, 7, 5, 6, 7, 8],
    )[0]
    pointers = [n for n in nodes if n.type in ("stco", "co64", "tfra", "tfhd", "sidx", "mfro", "trun")]
    if kind == "pointer" and not pointers:
        kind = "count" if tables else "truncate"
    if kind == "pointer":
        return _point(data, rng.choice(pointers), rng.choice(nodes), rng)
    if not nodes:
        if size < 2:
            return "nothing left to mutate"
        kind = "truncate"
    if kind in ("table_bitflip", "table_word", "count") and not tables:
        kind = "header_bitflip"
    if kind == "payload_bitflip" and not mdats:
        kind = "header_bitflip" if nodes else "truncate"
    if kind == "header_bitflip" and nodes:
        n = rng.choice(nodes)
        bit = rng.randrange(8 * 8)
        data[n.start + bit // 8] ^= 1 << (bit % 8)
        return f"{kind} {n.type}@{n.start} bit {bit}"
    if kind == "table_bitflip":
        n = rng.choice(tables)
        flips = []
        for _ in range(rng.randint(1, 4)):
            if n.size <= n.header:
                break
            bit = rng.randrange(8 * (n.size - n.header))
            data[n.body + bit // 8] ^= 1 << (bit % 8)
            flips.append(bit)
        return f"{kind} {n.type}@{n.start} bits {flips}"
    if kind == "table_word":
        n = rng.choice(tables)
        width = rng.choice([4, 4, 8])
        words = max((n.size - n.header) // 4, 1)
        pos = n.body + 4 * rng.randrange(words)
        value = _interesting(rng, width, size)
        _put(data, pos, value, width)
        return f"{kind} {n.type}@{n.start}+{pos - n.start} = {value:#x}"
    if kind == "count":
        counted = [n for n in tables if n.type in _COUNTS] or tables
        n = rng.choice(counted)
        offset, width = rng.choice(_COUNTS.get(n.type, [(4, 4)]))
        value = _interesting(rng, width, size)
        _put(data, n.body + offset, value, width)
        return f"{kind} {n.type}@{n.start}+{n.header + offset} = {value:#x}"
    if kind == "box_size":
        n = rng.choice(nodes)
        value = rng.choice(
            [
                1,
                2,
                7,
                8,
                9,
                n.size - 1,
                n.size + 1,
                n.size + rng.randint(2, 64),
                n.size * 2,
                0x7FFFFFFF,
                0xFFFFFFFF,
                size - n.start,
                size - n.start + 1,
                rng.getrandbits(32),
            ]
        )
        _put(data, n.start, max(value, 0) & 0xFFFFFFFF, 4)
        if value == 1 and rng.random() < 0.5:  # a largesize made of the body's first bytes, or a chosen one
            _put(data, n.start + 8, rng.choice([0, 8, 15, 16, n.size, 1 << 40, (1 << 64) - 1]), 8)
        return f"{kind} {n.type}@{n.start} = {value:#x}"
    if kind == "zero_size":
        n = rng.choice(nodes)
        _put(data, n.start, 0, 4)
        return f"{kind} {n.type}@{n.start}"
    if kind == "truncate":
        if nodes and rng.random() < 0.6:
            n = rng.choice(nodes)
            cut = min(max(1, rng.choice([n.start, n.start + 4, n.start + 8, n.body + 4, n.end - 1, n.end])), size - 1)
        else:
            cut = rng.randrange(1, max(size, 2))
        del data[cut:]
        return f"{kind} at {cut}"
    if kind == "duplicate":
        n = rng.choice([m for m in nodes if m.type != "mdat"] or nodes)
        if n.header != 8 or not _resize(data, nodes, n, n.size):
            return "duplicate skipped"
        data[n.end : n.end] = data[n.start : n.end]
        return f"{kind} {n.type}@{n.start}"
    if kind == "remove":
        n = rng.choice(nodes)
        if not _resize(data, nodes, n, -n.size):
            return "remove skipped"
        del data[n.start : n.end]
        return f"{kind} {n.type}@{n.start}"
    if kind == "type_swap":
        n = rng.choice([m for m in nodes if m.type in _TYPE_SWAPS] or nodes)
        new = rng.choice(_TYPE_SWAPS.get(n.type, ["free"]))
        data[n.start + 4 : n.start + 8] = new.encode("latin-1")
        return f"{kind} {n.type}@{n.start} -> {new}"
    n = rng.choice(mdats)
    flips = []
    for _ in range(rng.randint(1, 3)):
        bit = rng.randrange(8 * (n.size - n.header))
        data[n.body + bit // 8] ^= 1 << (bit % 8)
        flips.append(bit)
    return f"payload_bitflip mdat@{n.start} bits {flips}"


def _point(data: bytearray, n: Node, target: Node, rng: random.Random) -> str:
    """Aim one offset field of ``n`` at the start of ``target`` (possibly itself,
    or a box before it: index loops), setting the flag bits that enable it."""
    body, version = n.body, data[n.body] if n.body < len(data) else 0
    to = target.start + rng.choice([0, 0, 8, -8])
    if n.type in ("stco", "co64"):
        width = 4 if n.type == "stco" else 8
        count = max((n.size - n.header - 8) // width, 1)
        _put(data, body + 8 + width * rng.randrange(count), max(to, 0), width)
    elif n.type == "tfra":
        width = 8 if version == 1 else 4
        _put(data, body + 16 + width, max(to, 0), width)
    elif n.type == "tfhd":
        data[body + 3] |= 0x01  # base-data-offset-present
        _put(data, body + 8, max(to, 0), 8)
    elif n.type == "sidx":
        first = body + (16 if version == 0 else 20)
        refs = first + (4 if version == 0 else 8) + 4
        if rng.random() < 0.5 and refs + 4 <= len(data):
            data[refs] |= 0x80  # reference_type 1: a nested sidx
        _put(data, first, max(to - n.end, 0), 4 if version == 0 else 8)
    elif n.type == "mfro":
        _put(data, body + 4, max(len(data) - to, 0), 4)
    else:  # trun
        data[body + 3] |= 0x01  # data-offset-present
        base = rng.choice([n.parents[0] if n.parents else 0, 0])
        _put(data, body + 8, (to - base) & 0xFFFFFFFF, 4)
    return f"pointer {n.type}@{n.start} -> {target.type}@{target.start}"


# --------------------------------------------------------------------------- EBML element tree

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
#: Master elements whose children the tree lists (IDs with their length marker).
_EBML_MASTERS = {
    0x1A45DFA3,  # EBML
    0x18538067,  # Segment
    0x114D9B74,  # SeekHead
    0x4DBB,  # Seek
    0x1549A966,  # Info
    0x1654AE6B,  # Tracks
    0xAE,  # TrackEntry
    0xE0,  # Video
    0xE1,  # Audio
    0x6D80,  # ContentEncodings
    0x6240,  # ContentEncoding
    0x1C53BB6B,  # Cues
    0xBB,  # CuePoint
    0xB7,  # CueTrackPositions
    0x1F43B675,  # Cluster
    0xA0,  # BlockGroup
    0x1254C367,  # Tags
    0x7373,  # Tag
}
_EBML_NAMES = {
    0x1A45DFA3: "EBML",
    0x4282: "DocType",
    0x18538067: "Segment",
    0x114D9B74: "SeekHead",
    0x4DBB: "Seek",
    0x53AB: "SeekID",
    0x53AC: "SeekPosition",
    0x1549A966: "Info",
    0x2AD7B1: "TimestampScale",
    0x4489: "Duration",
    0x1654AE6B: "Tracks",
    0xAE: "TrackEntry",
    0xD7: "TrackNumber",
    0x83: "TrackType",
    0x86: "CodecID",
    0x63A2: "CodecPrivate",
    0x23E383: "DefaultDuration",
    0xE0: "Video",
    0xB0: "PixelWidth",
    0xBA: "PixelHeight",
    0xE1: "Audio",
    0x1C53BB6B: "Cues",
    0xBB: "CuePoint",
    0xB3: "CueTime",
    0xB7: "CueTrackPositions",
    0xF7: "CueTrack",
    0xF1: "CueClusterPosition",
    0xF0: "CueRelativePosition",
    0x1F43B675: "Cluster",
    0xE7: "Timestamp",
    0xA3: "SimpleBlock",
    0xA0: "BlockGroup",
    0xA1: "Block",
    0xFB: "ReferenceBlock",
    0x9B: "BlockDuration",
    0xEC: "Void",
    0xBF: "CRC32",
    0x1254C367: "Tags",
}
#: Unsigned integer elements whose values the mutations replace.
_EBML_UINTS = {0x53AC, 0x2AD7B1, 0xD7, 0x83, 0x23E383, 0xB0, 0xBA, 0xB3, 0xF7, 0xF1, 0xF0, 0xE7, 0x9B, 0x4287}
#: Elements that hold positions (relative to the Segment's data or to the Cluster's).
_EBML_POSITIONS = {0x53AC, 0xF1, 0xF0}
#: Retyping: an element's ID replaced by another one of the same length.
_EBML_SWAPS = {
    0xA3: [0xA0, 0xA1, 0xEC, 0xAF],  # SimpleBlock -> BlockGroup, Block, Void, EncryptedBlock
    0xA0: [0xA3, 0xEC],
    0xA1: [0xA3, 0xEC],
    0xE7: [0xEC, 0xA7],  # Timestamp -> Void, Position
    0xAE: [0xEC],
    0xE0: [0xE1, 0xEC],
    0x86: [0xEC],
    0xD7: [0x83, 0xEC],
    0xFB: [0xEC, 0x9B],
    0x1F43B675: [0x1C53BB6B, 0x1254C367, 0x1549A966, 0x1A45DFA3],
    0x1C53BB6B: [0x1F43B675, 0x1254C367],
    0x1549A966: [0x1654AE6B, 0x1F43B675],
    0x1654AE6B: [0x1549A966, 0x1F43B675],
    0x114D9B74: [0x1C53BB6B, 0x1F43B675],
    0x6D80: [],
}


@dataclass(frozen=True)
class Element:
    id: int
    start: int
    id_len: int
    size_len: int
    size: int
    """Payload bytes (for an unknown size: up to its parent's end)."""
    parents: tuple[int, ...]
    """Starts of the enclosing elements, outermost first."""

    @property
    def data_start(self) -> int:
        return self.start + self.id_len + self.size_len

    @property
    def end(self) -> int:
        return self.data_start + self.size

    @property
    def name(self) -> str:
        return _EBML_NAMES.get(self.id, f"{self.id:#x}")


def _vint_len(first: int) -> int:
    return 9 - first.bit_length() if first else 9


def ebml_tree(data: bytes) -> list[Element]:
    """Every element of a well-formed Matroska/WebM file (masters' children included)."""
    out: list[Element] = []

    def walk(pos: int, stop: int, parents: tuple[int, ...]) -> None:
        while pos < stop:
            id_len = _vint_len(data[pos])
            if id_len > 4 or pos + id_len >= stop:
                return
            eid = int.from_bytes(data[pos : pos + id_len], "big")
            size_len = _vint_len(data[pos + id_len])
            if size_len > 8 or pos + id_len + size_len > stop:
                return
            raw = int.from_bytes(data[pos + id_len : pos + id_len + size_len], "big") & ((1 << (7 * size_len)) - 1)
            body = pos + id_len + size_len
            size = stop - body if raw == (1 << (7 * size_len)) - 1 else raw
            if body + size > stop:
                return
            e = Element(eid, pos, id_len, size_len, size, parents)
            out.append(e)
            if eid in _EBML_MASTERS:
                walk(body, e.end, parents + (pos,))
            pos = e.end

    walk(0, len(data), ())
    return out


def _put_vint(buf: bytearray, e: Element, value: int) -> bool:
    """Write ``value`` into ``e``'s size field (same length); False if it does not fit."""
    n = e.size_len
    if not 0 <= value < (1 << (7 * n)) - 1:
        return False
    buf[e.start + e.id_len : e.data_start] = ((1 << (7 * n)) | value).to_bytes(n, "big")
    return True


def _resize_ebml(buf: bytearray, nodes: list[Element], e: Element, delta: int) -> bool:
    """Add ``delta`` to the size of every element enclosing ``e`` (sizes keep their length)."""
    by_start = {n.start: n for n in nodes}
    for p in e.parents:
        parent = by_start[p]
        if buf[parent.start + parent.id_len] == 0xFF >> (parent.size_len - 1) and all(
            b == 0xFF for b in buf[parent.start + parent.id_len + 1 : parent.data_start]
        ):
            continue  # unknown size: nothing to adjust
        if not _put_vint(buf, parent, parent.size + delta):
            return False
    return True


def _segment_data_start(nodes: list[Element]) -> int:
    return next((n.data_start for n in nodes if n.id == 0x18538067), 0)


def mutate_matroska_once(data: bytearray, rng: random.Random) -> str:
    """Apply one random EBML-aware mutation to ``data`` in place; returns what it did."""
    nodes = ebml_tree(bytes(data))
    size = len(data)
    if not nodes:
        if size < 2:
            return "nothing left to mutate"
        cut = rng.randrange(1, size)
        del data[cut:]
        return f"truncate at {cut}"
    kind = rng.choices(
        [
            "id_bitflip",
            "size_bitflip",
            "huge_size",
            "unknown_size",
            "size_delta",
            "uint",
            "block_header",
            "position",
            "truncate",
            "duplicate",
            "remove",
            "id_swap",
            "payload_bitflip",
        ],
        weights=[8, 8, 6, 6, 8, 12, 12, 10, 7, 6, 6, 6, 5],
    )[0]
    blocks = [n for n in nodes if n.id in (0xA3, 0xA1) and n.size >= 4]
    uints = [n for n in nodes if n.id in _EBML_UINTS and 1 <= n.size <= 8]
    positions = [n for n in nodes if n.id in _EBML_POSITIONS and 1 <= n.size <= 8]
    if kind in ("block_header", "payload_bitflip") and not blocks:
        kind = "uint"
    if kind == "position" and not positions:
        kind = "uint"
    if kind == "uint" and not uints:
        kind = "size_delta"
    if kind == "id_bitflip":
        n = rng.choice(nodes)
        bit = rng.randrange(8 * n.id_len)
        data[n.start + bit // 8] ^= 1 << (bit % 8)
        return f"{kind} {n.name}@{n.start} bit {bit}"
    if kind == "size_bitflip":
        n = rng.choice(nodes)
        bit = rng.randrange(8 * n.size_len)
        data[n.start + n.id_len + bit // 8] ^= 1 << (bit % 8)
        return f"{kind} {n.name}@{n.start} bit {bit}"
    if kind == "huge_size":
        n = rng.choice(nodes)
        value = rng.choice([(1 << (7 * n.size_len)) - 2, size, size - n.data_start + 1, 1 << (7 * n.size_len - 1)])
        _put_vint(data, n, min(value, (1 << (7 * n.size_len)) - 2))
        return f"{kind} {n.name}@{n.start} = {value:#x}"
    if kind == "unknown_size":
        n = rng.choice([m for m in nodes if m.id in _EBML_MASTERS and rng.random() < 0.8] or nodes)
        data[n.start + n.id_len : n.data_start] = bytes([0xFF >> (n.size_len - 1)]) + b"\xff" * (n.size_len - 1)
        return f"{kind} {n.name}@{n.start}"
    if kind == "size_delta":
        n = rng.choice(nodes)
        value = max(0, n.size + rng.choice([-8, -3, -2, -1, 1, 2, 3, 8, -n.size]))
        _put_vint(data, n, value)
        return f"{kind} {n.name}@{n.start} {n.size} -> {value}"
    if kind == "uint":
        n = rng.choice(uints)
        value = rng.choice([0, 1, 2, (1 << (8 * n.size)) - 1, 1 << (8 * n.size - 1), rng.getrandbits(8 * n.size)])
        data[n.data_start : n.end] = value.to_bytes(n.size, "big")
        return f"{kind} {n.name}@{n.start} = {value:#x}"
    if kind == "block_header":
        n = rng.choice(blocks)
        at = n.data_start
        track_len = _vint_len(data[at])
        what = rng.choice(["track", "timestamp", "flags", "lacing", "keyframe"])
        if what == "track":
            data[at] = rng.choice([0x80, 0x81, 0x82, 0x83, 0xFF, 0x40, 0x00, rng.getrandbits(8)])
        elif what == "timestamp" and at + track_len + 2 <= size:
            value = rng.choice([0, 0x7FFF, 0x8000, 0xFFFF, rng.getrandbits(16)])
            data[at + track_len : at + track_len + 2] = value.to_bytes(2, "big")
        elif at + track_len + 2 < size:
            flags = at + track_len + 2
            data[flags] ^= {"flags": 1 << rng.randrange(8), "lacing": rng.choice([0x02, 0x04, 0x06]), "keyframe": 0x80}[
                what if what != "timestamp" else "flags"
            ]
        return f"{kind} {n.name}@{n.start} {what}"
    if kind == "position":
        n = rng.choice(positions)
        seg = _segment_data_start(nodes)
        target = rng.choice(nodes)
        value = rng.choice(
            [
                target.start - seg,
                target.start - seg + rng.choice([-1, 1, 4]),
                target.data_start - seg,
                size,
                (1 << (8 * n.size)) - 1,
                0,
                rng.getrandbits(8 * n.size),
            ]
        )
        value = max(0, value) & ((1 << (8 * n.size)) - 1)
        data[n.data_start : n.end] = value.to_bytes(n.size, "big")
        return f"{kind} {n.name}@{n.start} -> {value} ({target.name}@{target.start})"
    if kind == "truncate":
        if rng.random() < 0.6:
            n = rng.choice(nodes)
            cut = rng.choice([n.start, n.start + n.id_len, n.data_start, n.data_start + 1, n.end - 1, n.end])
        else:
            cut = rng.randrange(1, max(size, 2))
        cut = min(max(1, cut), size - 1)
        del data[cut:]
        return f"{kind} at {cut}"
    if kind == "duplicate":
        n = rng.choice([m for m in nodes if m.id != 0x18538067])
        if not _resize_ebml(data, nodes, n, n.end - n.start):
            return "duplicate skipped"
        data[n.end : n.end] = data[n.start : n.end]
        return f"{kind} {n.name}@{n.start}"
    if kind == "remove":
        n = rng.choice([m for m in nodes if m.id != 0x18538067])
        if not _resize_ebml(data, nodes, n, -(n.end - n.start)):
            return "remove skipped"
        del data[n.start : n.end]
        return f"{kind} {n.name}@{n.start}"
    if kind == "id_swap":
        n = rng.choice([m for m in nodes if _EBML_SWAPS.get(m.id)] or nodes)
        choices = [c for c in _EBML_SWAPS.get(n.id, []) if (c.bit_length() + 7) // 8 == n.id_len] or [0xEC]
        new = rng.choice(choices)
        if (new.bit_length() + 7) // 8 != n.id_len:
            return "id_swap skipped"
        data[n.start : n.start + n.id_len] = new.to_bytes(n.id_len, "big")
        return f"{kind} {n.name}@{n.start} -> {_EBML_NAMES.get(new, hex(new))}"
    n = rng.choice(blocks)
    flips = []
    for _ in range(rng.randint(1, 3)):
        bit = rng.randrange(8 * 4, 8 * n.size) if n.size > 4 else 8 * 3
        data[n.data_start + bit // 8] ^= 1 << (bit % 8)
        flips.append(bit)
    return f"payload_bitflip {n.name}@{n.start} bits {flips}"


def mutant(original: bytes, seed: int) -> tuple[bytes, list[str]]:
    """The mutant of ``original`` for ``seed`` (one to three mutations; EBML-aware for Matroska/WebM)."""
    rng = random.Random(seed)
    data = bytearray(original)
    mutate = mutate_matroska_once if original[:4] == EBML_MAGIC else mutate_once
    steps = [mutate(data, rng) for _ in range(rng.choices([1, 2, 3], weights=[70, 22, 8])[0])]
    return bytes(data), steps


def cases(num: int, seed: int = 0, names: list[str] | None = None) -> list[tuple[str, int]]:
    """``num`` cases spread round-robin over the corpus, seeds from ``seed``."""
    names = list(names or RECIPES)
    return [(names[i % len(names)], seed + i) for i in range(num)]


# --------------------------------------------------------------------------- worker side


class _Original:
    """What a case compares against: the unmutated file, its index and frames."""

    def __init__(self, path: Path) -> None:
        import videoloader

        self.data = path.read_bytes()
        self.index = _container_index(path)
        with videoloader.VideoReader(str(path), index_cache=False, num_threads=1) as r:
            self.frames = r.get_frames_at(list(range(len(r)))).data.numpy()


def _container_index(path: Path):
    """The packet table our own container index (MP4 or Matroska) reads from ``path``."""
    from videoloader._containers import load_container_index
    from videoloader.io import RangeSource

    with RangeSource(str(path)) as source:
        return load_container_index(source, track=None, cache=False)[1]


def _same_index(a, b) -> bool:
    import numpy as np

    arrays = ("offsets", "sizes", "pts", "dts", "is_sync", "is_discard")
    scalars = ("codec", "extradata", "width", "height", "timescale", "bit_depth", "sample_entry")
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays) and all(
        getattr(a, k) == getattr(b, k) for k in scalars
    )


def _intact_samples(index, original: bytes, data: bytes) -> bool:
    return all(
        original[o : o + s] == data[o : o + s]
        for o, s in zip(index.offsets.tolist(), index.sizes.tolist(), strict=False)
    )


def _where(exc: BaseException) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames]


def run_case(name: str, seed: int, path: Path, originals: dict[str, _Original]) -> dict:
    """Build, write and open one mutant; decode one to three frames."""
    import numpy as np

    import videoloader
    from videoloader import VideoLoaderError

    orig = originals[name]
    data, steps = mutant(orig.data, seed)
    path.write_bytes(data)
    rng = random.Random(seed ^ 0x5EED)
    result: dict = {"name": name, "seed": seed, "steps": steps}
    t0 = time.perf_counter()
    try:
        exact = False
        try:
            index = _container_index(path)
            exact = _same_index(index, orig.index) and _intact_samples(index, orig.data, data)
        except VideoLoaderError:
            pass
        with videoloader.VideoReader(str(path), index_cache=False, num_threads=1) as reader:
            n = len(reader)
            frames = sorted(rng.sample(range(n), min(n, rng.randint(1, 3))))
            batch = reader.get_frames_at(frames)
            got = batch.data.numpy()
            h, w = orig.frames.shape[2:]
            if n == 0:
                result["outcome"] = "empty-video"
            elif got.dtype != np.uint8 or got.shape[:2] != (len(frames), 3) or (exact and got.shape[2:] != (h, w)):
                result["outcome"] = "bad-batch"
                result["detail"] = f"frames {frames}: {got.dtype} {got.shape}"
            elif exact:
                same = np.array_equal(got, orig.frames[frames])
                result["outcome"] = "ok-exact" if same else "wrong-frames"
                if not same:
                    result["detail"] = f"frames {frames} differ from the unmutated file's"
            else:
                result["outcome"] = "ok-frames"
    except VideoLoaderError as e:
        result["outcome"] = type(e).__name__
        result["detail"] = str(e)[:300]
    except MemoryError as e:
        result.update(outcome="memory", detail=str(e)[:300], where=_where(e))
    except Exception as e:  # noqa: BLE001 - what the fuzz test exists to catch
        result.update(outcome="other-exception", detail=f"{type(e).__name__}: {str(e)[:300]}", where=_where(e))
    result["seconds"] = round(time.perf_counter() - t0, 4)
    result["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _worker_main(corpus_dir: str, headroom: int) -> None:
    """Read ``name seed`` lines on stdin, answer one JSON line each on stdout."""
    import logging

    logging.disable(logging.CRITICAL)
    import av

    av.logging.set_level(None)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write on the answer channel
    corpus = {p.stem: p for p in Path(corpus_dir).iterdir() if p.stem in RECIPES and p.suffix == _suffix(p.stem)}
    originals = {name: _Original(p) for name, p in corpus.items()}
    import psutil

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = psutil.Process().memory_info().vms + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        out.write("ready\n")
        for line in sys.stdin:
            name, seed = line.split()
            path = Path(tmp) / f"mutant{_suffix(name)}"
            out.write(json.dumps(run_case(name, int(seed), path, originals)) + "\n")


# --------------------------------------------------------------------------- parent side


class _Worker:
    def __init__(self, corpus_dir: Path, headroom: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(corpus_dir), str(headroom)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        self.case: tuple[str, int] | None = None
        self.started = time.monotonic()
        self.ready = False

    def send(self, case: tuple[str, int]) -> None:
        self.case = case
        self.started = time.monotonic()
        self.proc.stdin.write(f"{case[0]} {case[1]}\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_cases(
    corpus_dir: Path | str,
    todo: list[tuple[str, int]],
    *,
    workers: int = 2,
    timeout: float = 10.0,
    headroom: int = 1 << 30,
    start_timeout: float = 120.0,
    progress=None,
) -> list[dict]:
    """Run ``todo`` on ``workers`` sandboxed processes; one result dict per case, in order.

    Args:
        corpus_dir: folder from :func:`make_corpus`.
        todo: ``(name, seed)`` cases.
        workers: processes running cases in parallel.
        timeout: seconds a case may take before its worker is killed (``timeout``).
        headroom: bytes of address space a worker may add to what it holds after start-up.
        start_timeout: seconds a worker may take to start (imports, decoding the originals).
        progress: optional callable taking each result as it arrives.
    """
    corpus_dir = Path(corpus_dir)
    pending = list(reversed(todo))
    results: dict[tuple[str, int], dict] = {}
    pool = [_Worker(corpus_dir, headroom) for _ in range(min(workers, len(todo)))]
    try:
        while pending or any(w.case for w in pool):
            for w in pool:
                if w.ready and w.case is None and pending:
                    w.send(pending.pop())
            streams = {w.proc.stdout: w for w in pool}
            ready, _, _ = select.select(list(streams), [], [], 0.2)
            now = time.monotonic()
            for stream in ready:
                w = streams[stream]
                line = stream.readline()
                if line == "":  # the worker died
                    code = w.proc.wait()
                    if w.case is None:
                        raise RuntimeError(f"a fuzz worker died while starting (exit {code})")
                    results[w.case] = _failed(corpus_dir, w.case, "crash", f"worker exited with {code}")
                    pool[pool.index(w)] = _Worker(corpus_dir, headroom)
                elif line.strip() == "ready":
                    w.ready = True
                else:
                    res = json.loads(line)
                    results[(res["name"], res["seed"])] = res
                    if progress:
                        progress(res)
                    w.case = None
            for i, w in enumerate(pool):
                if w.case is not None and now - w.started > timeout:
                    results[w.case] = _failed(corpus_dir, w.case, "timeout", f"no answer in {timeout} s")
                    w.kill()
                    pool[i] = _Worker(corpus_dir, headroom)
                elif not w.ready and now - w.started > start_timeout:
                    raise RuntimeError(f"a fuzz worker did not start in {start_timeout} s")
    finally:
        for w in pool:
            w.kill()
    return [results[c] for c in todo]


def _failed(corpus_dir: Path, case: tuple[str, int], outcome: str, detail: str) -> dict:
    _data, steps = mutant((corpus_dir / f"{case[0]}{_suffix(case[0])}").read_bytes(), case[1])
    return {"name": case[0], "seed": case[1], "outcome": outcome, "detail": detail, "steps": steps}


def describe(result: dict) -> str:
    """One line naming a case, for failure reports."""
    where = " <- ".join(reversed(result.get("where", [])))
    return (
        f"{result['name']} seed {result['seed']}: {result['outcome']} {result.get('detail', '')} "
        f"[{'; '.join(result.get('steps', []))}]" + (f" at {where}" if where else "")
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker_main(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--replay"]:  # python tests/fuzzing.py --replay NAME SEED [CORPUS_DIR]
        sys.path[:0] = [str(ROOT), str(HERE)]
        directory = Path(sys.argv[4] if len(sys.argv) > 4 else tempfile.gettempdir()) / "videoloader-fuzz-corpus"
        corpus = make_corpus(directory)
        name, seed = sys.argv[2], int(sys.argv[3])
        out = Path(tempfile.gettempdir()) / f"fuzz-{name}-{seed}{_suffix(name)}"
        print(json.dumps(run_case(name, seed, out, {name: _Original(corpus[name])}), indent=1))
        print(f"mutant kept at {out}")
    else:
        sys.exit("usage: fuzzing.py --replay NAME SEED [CORPUS_DIR]")
