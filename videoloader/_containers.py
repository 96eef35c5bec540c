"""Our own container indexes: which parser reads a source's index.

Each container we index ourselves produces the same packet table with byte
ranges; anything none of them handles goes to the demux source (FFmpeg).
Adding a container means one package that returns a :class:`SampleIndex` and
one entry here. MP4 is tried first (its reader sniffs ISO-BMFF from the
file's head and keeps those bytes); a head that starts with the EBML magic
goes to the Matroska index, reusing the bytes already held.

A Matroska file can open *lazily* (``open_container(..., lazy=True)``): its
head, Info, Tracks and Cues only, enough for frames by time (the Cues, or a
bisection without them, find the keyframe before a time); the reader builds
the complete table (a walk over every cluster) when frame indices are first
needed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ._errors import NotAVideoError
from ._packets import SampleIndex
from .mkv import load_index as load_matroska_index
from .mkv import matroska_doc_type
from .mkv._read import MatroskaHead, cached_index, open_head
from .mp4 import load_index

if TYPE_CHECKING:  # pragma: no cover
    from .io import RangeSource
    from .mp4._read import CacheOption

__all__ = ["load_container_index", "open_container"]

#: Whether Matroska/WebM go through our index. Benchmarks turn it off to
#: measure the demux fallback on the same files; nothing else should.
_MATROSKA_INDEX = True


def load_container_index(source: RangeSource, *, track: int | None, cache: CacheOption) -> tuple[str, SampleIndex]:
    """``(container name, packet table)`` from the first of our indexes that reads ``source``.

    The container name is ``"mp4"``, or the Matroska DocType (``"matroska"`` / ``"webm"``).

    Raises:
        NotAVideoError, UnsupportedFormatError: none of our indexes handles it
            (the reader then demuxes with FFmpeg).
        ContainerError, SourceError: the container is ours but broken, or the
            bytes could not be read.
    """
    container, found = open_container(source, track=track, cache=cache, lazy=False)
    assert isinstance(found, SampleIndex)
    return container, found


def open_container(
    source: RangeSource, *, track: int | None, cache: CacheOption, lazy: bool
) -> tuple[str, SampleIndex | MatroskaHead]:
    """As ``load_container_index``; with ``lazy``, a Matroska file whose
    complete table is not in the cache gives its :class:`MatroskaHead`
    instead of the complete table."""
    stats = getattr(source, "stats", None)
    before = stats.snapshot() if stats is not None else None
    try:
        return "mp4", load_index(source, track=track, cache=cache)
    except NotAVideoError:
        doc_type = matroska_doc_type(source) if _MATROSKA_INDEX else None
        if doc_type is None:
            raise
    hit = cached_index(source, track=track, cache=cache) if lazy else None
    if hit is not None:
        return doc_type, hit
    if lazy:
        head = open_head(source, track=track)
        if stats is not None and before is not None:
            delta = stats.since(before)
            head = dataclasses.replace(
                head, open_nbytes=int(delta.bytes_received), open_requests=int(delta.num_requests)
            )
        return doc_type, head
    table = load_matroska_index(source, track=track, cache=cache)
    if table.index_requests and stats is not None and before is not None:
        # Count the head the MP4 sniff read too: it is part of what this index cost.
        delta = stats.since(before)
        table.index_nbytes, table.index_requests = int(delta.bytes_received), int(delta.num_requests)
    return doc_type, table
