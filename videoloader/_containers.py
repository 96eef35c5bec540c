"""Our own container indexes: which parser reads a source's index.

Each container we index ourselves produces the same packet table with byte
ranges; anything none of them handles goes to the demux source (FFmpeg).
Adding a container means one package that returns a :class:`SampleIndex` and
one entry here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._packets import SampleIndex
from .mp4 import load_index

if TYPE_CHECKING:  # pragma: no cover
    from .io import RangeSource
    from .mp4._read import CacheOption

__all__ = ["load_container_index"]


def load_container_index(source: RangeSource, *, track: int | None, cache: CacheOption) -> tuple[str, SampleIndex]:
    """``(container name, packet table)`` from the first of our indexes that reads ``source``.

    Raises:
        NotAVideoError, UnsupportedFormatError: none of our indexes handles it
            (the reader then demuxes with FFmpeg).
        ContainerError, SourceError: the container is ours but broken, or the
            bytes could not be read.
    """
    return "mp4", load_index(source, track=track, cache=cache)
