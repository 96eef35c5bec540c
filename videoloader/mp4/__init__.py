"""ISO-BMFF (MP4/MOV/fMP4) index: where every sample of a video track lives.

stdlib + numpy only. ``load_index(source)`` builds a complete
:class:`SampleIndex` from a RangeSource with a bounded number of small range
reads; ``read_index(url)`` does the same from a URL.
"""

from __future__ import annotations

from .._packets import SampleIndex
from ._cache import IndexCache, default_index_cache
from ._read import load_index, read_index

__all__ = ["IndexCache", "SampleIndex", "default_index_cache", "load_index", "read_index"]
