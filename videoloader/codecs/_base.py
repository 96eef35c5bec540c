"""What every codec module offers the reader and the decoders.

A :class:`Codec` knows one codec's bitstream well enough for three jobs that
no decoder does for us:

- parse the codec configuration record the container stores
  (``avcC``/``hvcC``/``av1C``/``vpcC``);
- say which samples are non-reference pictures, so the reader can leave the
  unwanted ones out of the decoder (FFmpeg's ``skip_frame=NONREF``, decided
  per packet before the bytes reach a decoder);
- turn container samples into the elementary stream a bare hardware parser
  accepts (NVDEC takes no extradata), and read the colour description it
  needs to convert the planes it returns.

Unknown or unparsable colour descriptions give the FFmpeg default; a codec
that cannot tell which pictures are disposable says so with ``None``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .._errors import CorruptVideoError, UnsupportedFormatError
from ._colour_info import ColourInfo

__all__ = ["Codec", "NonReferenceTest", "PassThrough", "StreamConverter"]

NonReferenceTest = Callable[[bytes | memoryview], bool]
"""Says whether one sample (as stored in MP4/MKV) is a picture no other frame needs."""

ConfigT_co = TypeVar("ConfigT_co", covariant=True)


class StreamConverter(Protocol):
    """Turns one track's container samples, in decode order, into bare-parser packets."""

    def convert(self, sample: bytes | memoryview, *, is_sync: bool) -> bytes:
        """One sample as the bare parser wants it."""
        ...


class PassThrough:
    """The converter of codecs whose samples are already what a bare parser takes (VP9)."""

    def convert(self, sample: bytes | memoryview, *, is_sync: bool) -> bytes:
        """The sample's bytes, unchanged."""
        return bytes(sample)


class Codec(ABC, Generic[ConfigT_co]):
    """One codec's bitstream knowledge, stateless (one shared instance per codec).

    Attributes:
        name: FFmpeg's decoder family name (``"h264"``, ``"hevc"``, ``"av1"``, ``"vp9"``).
    """

    name: str

    @abstractmethod
    def parse_config(self, extradata: bytes) -> ConfigT_co:
        """Parse the codec configuration record (the body of avcC/hvcC/av1C/vpcC).

        Raises:
            CorruptVideoError: the record is truncated.
            UnsupportedFormatError: not a record this module understands.
        """

    def non_reference_test(self, extradata: bytes | None) -> NonReferenceTest | None:
        """A predicate for disposable non-reference samples, or None when this
        codec or stream cannot tell safely (then every sample must be decoded).

        Args:
            extradata: the track's codec configuration, as stored by the container.

        Raises:
            CorruptVideoError: the configuration record is truncated.
        """
        return None

    def reorder_depth(self, extradata: bytes | None) -> int | None:
        """How many frames can precede a frame in decode order yet be shown after it.

        A bound from the configuration record alone, so a reader serving
        frames by time knows how far past a timestamp it must look in decode
        order before no later frame can still be shown earlier. 0 means
        container timestamps never go backwards.

        Args:
            extradata: the track's codec configuration, as stored by the container.

        Returns:
            The bound, or None when this codec or record does not tell (never
            raises: a damaged record gives None too).
        """
        return None

    def stream_converter(self, extradata: bytes | None, *, temporal_delimiters: bool = False) -> StreamConverter:
        """A converter from container samples to the stream a bare parser accepts.

        Args:
            extradata: the track's codec configuration, or None.
            temporal_delimiters: AV1 only: start each temporal unit with a
                temporal delimiter OBU.

        Raises:
            UnsupportedFormatError: extradata of a form this codec cannot use.
        """
        return PassThrough()

    def colour_info(self, extradata: bytes | None, sample: bytes | memoryview | None = None) -> ColourInfo:
        """Best colour description from the configuration and, where it lives
        there (VP9, in-band SPS), the first sync sample.

        Unknown or unparsable descriptions give the FFmpeg default (BT.601,
        limited range), which is what the CPU path then uses too.
        """
        try:
            info = self._colour_info(extradata, sample)
        except (CorruptVideoError, UnsupportedFormatError):
            info = None
        return info if info is not None else ColourInfo()

    def _colour_info(self, extradata: bytes | None, sample: bytes | memoryview | None) -> ColourInfo | None:
        """The colour description, or None when the stream carries none; may raise."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
