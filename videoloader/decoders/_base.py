"""The decoder backend interface: packets in, frames out, flush.

The reader owns *which* packets to feed (one GOP group at a time, from a sync
sample up to the last sample needed) and *which* frames to keep; a backend
only decodes and converts. Backends never see URLs or byte ranges, so the CPU,
NVDEC and VideoToolbox paths share the same planning and exactness rules.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DecodedFrame", "DecoderBackend", "OutputSpec", "Packet", "StreamConfig"]


@dataclass(frozen=True)
class StreamConfig:
    """What a decoder needs to know about the stream before the first packet."""

    codec: str
    """FFmpeg codec family: ``h264``, ``hevc``, ``av1``, ``vp9``..."""
    extradata: bytes | None
    """avcC / hvcC / av1C / vpcC payload from the index (None if absent)."""
    width: int
    height: int
    timescale: int
    """Ticks per second of packet pts/dts."""
    bit_depth: int | None = None
    sample_entry: str = ""


@dataclass(frozen=True)
class Packet:
    """One compressed sample, timestamps in ``StreamConfig.timescale`` ticks."""

    data: bytes
    pts: int
    dts: int
    duration: int
    is_sync: bool


@dataclass(frozen=True)
class OutputSpec:
    """How decoded frames are converted: RGB uint8, optionally scaled.

    ``height``/``width`` of None keep the coded display size. Scaling happens
    inside the backend's converter (FFmpeg's swscale on the CPU, a CUDA
    kernel on NVDEC), never as a separate pass in Python.
    """

    height: int | None = None
    width: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"OutputSpec.{name} must be a positive int or None, got {v!r}")


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded, not yet converted, frame: the backend's own handle plus pts."""

    pts: int
    handle: Any
    corrupt: bool = False
    """The decoder flagged this frame, or a frame decoded before it in the same
    group, as damaged (concealed errors propagate through references)."""


class DecoderBackend(abc.ABC):
    """A decoder for one stream. Not thread-safe: one per reader (or worker)."""

    name: ClassVar[str] = ""
    """Registry name: ``cpu``, ``nvdec``, ``videotoolbox``."""

    def __init__(self, config: StreamConfig, *, output: OutputSpec = OutputSpec()) -> None:
        self.config = config
        self.output = output

    @abc.abstractmethod
    def send(self, packet: Packet) -> list[DecodedFrame]:
        """Feed one packet (decode order); return the frames it released."""

    @abc.abstractmethod
    def flush(self) -> list[DecodedFrame]:
        """Drain every buffered frame and reset, ready for the next group
        starting at a sync sample."""

    @abc.abstractmethod
    def convert(self, frame: DecodedFrame) -> "torch.Tensor":
        """RGB uint8 ``3 x H x W`` tensor at the output size, on the backend's device."""

    def close(self) -> None:
        """Release decoder resources. Idempotent."""

    def decode_group(self, packets: Iterable[Packet], wanted_pts: Collection[int]) -> dict[int, "torch.Tensor"]:
        """Decode one group (starting at a sync sample) and convert only the
        frames whose pts is in ``wanted_pts``; the others are dropped without
        colour conversion. Returns ``{pts: tensor}``; a wanted pts missing from
        the result means the decoder did not produce it (the caller raises).
        """
        wanted = set(wanted_pts)
        out: dict[int, torch.Tensor] = {}

        def keep(frames: list[DecodedFrame]) -> None:
            for f in frames:
                if f.pts in wanted and f.pts not in out:
                    out[f.pts] = self.convert(f)

        try:
            for p in packets:
                keep(self.send(p))
            keep(self.flush())
        except BaseException:
            self.reset()
            raise
        return out

    def reset(self) -> None:
        """Drop any buffered state after a failed group, ready for a new one."""
        try:
            self.flush()
        except Exception:
            pass

    def __enter__(self) -> "DecoderBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
