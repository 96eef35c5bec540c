"""Codec name -> codec module, and the per-name helpers the decoders call."""

from __future__ import annotations

from ._av1 import AV1
from ._base import Codec, NonReferenceTest, PassThrough, StreamConverter
from ._colour_info import ColourInfo
from ._h264 import H264
from ._hevc import HEVC
from ._vp9 import VP9

__all__ = ["CODECS", "get_codec", "reorder_depth", "stream_colour_info", "stream_converter"]

CODECS: dict[str, Codec[object]] = {codec.name: codec for codec in (H264, HEVC, AV1, VP9)}
"""Every codec with bitstream knowledge, by FFmpeg decoder family name."""


def get_codec(name: str) -> Codec[object] | None:
    """The codec module for an FFmpeg codec name, or None for codecs we have
    no bitstream knowledge of (``"mpeg4"``, ``"vp8"``...): callers then treat
    every sample as needed and pass samples through unchanged."""
    return CODECS.get(name)


def stream_converter(codec: str, extradata: bytes | None, *, temporal_delimiters: bool = False) -> StreamConverter:
    """The converter from container samples to a bare parser's stream for a codec name.

    Annex-B for H.264/HEVC, in-band sequence headers for AV1, pass-through otherwise.

    Raises:
        UnsupportedFormatError: H.264/HEVC extradata that is neither Annex-B nor a version-1 record.
        CorruptVideoError: a truncated configuration record.
    """
    found = get_codec(codec)
    if found is None:
        return PassThrough()
    return found.stream_converter(extradata, temporal_delimiters=temporal_delimiters)


def stream_colour_info(codec: str, extradata: bytes | None, sample: bytes | memoryview | None = None) -> ColourInfo:
    """Best colour description of a stream from its configuration and, where it
    lives there (VP9, in-band SPS), its first sync sample.

    Unknown codecs and unknown or unparsable descriptions give the FFmpeg
    default (BT.601, limited range), which is what the CPU path then uses too.
    """
    found = get_codec(codec)
    return found.colour_info(extradata, sample) if found is not None else ColourInfo()


def non_reference_test(codec: str, extradata: bytes | None) -> NonReferenceTest | None:
    """The test for a sample no other frame references (one that can be left
    undecoded unless wanted), for a stream of ``codec`` with ``extradata``; None
    where the codec has no safe test (see :meth:`Codec.non_reference_test`)."""
    c = get_codec(codec)
    return c.non_reference_test(extradata) if c is not None else None


# Codecs with no module here whose container timestamps never go backwards either
# (VP8 has no frame reordering: an alt-ref frame is hidden, not shown later).
_NO_REORDER = frozenset({"vp8"})


def reorder_depth(codec: str, extradata: bytes | None) -> int | None:
    """How many frames can precede a frame in decode order yet be shown after it.

    A reader that serves frames by time must look this many frames past a
    timestamp in decode order before no later frame can still be shown
    earlier. H.264/HEVC: the bound of the ``avcC``/``hvcC`` record's first SPS
    (see :func:`h264_reorder_depth`, :func:`hevc_reorder_depth`); 0 for VP8,
    VP9 and AV1, whose container timestamps never go backwards.

    Returns:
        The bound, or None for other codecs and for missing or damaged
        records (never raises).
    """
    if codec in _NO_REORDER:
        return 0
    found = get_codec(codec)
    return found.reorder_depth(extradata) if found is not None else None
