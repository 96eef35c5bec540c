"""Matroska/WebM index: where every block of a video track lives.

stdlib + numpy only, like ``mp4/``. ``load_index(source)`` reads the head,
the SeekHead's targets and the Cues, then walks the clusters' element headers
(never a block's payload) to build a complete :class:`SampleIndex` with byte
ranges.
"""

from __future__ import annotations

from ._read import EBML_MAGIC, load_index, matroska_doc_type

__all__ = ["EBML_MAGIC", "load_index", "matroska_doc_type"]
