"""A CPU-decoding backend whose frames are wanted on another device.

``VideoReader(url, backend="cpu", device="cuda:0")`` decodes with FFmpeg on
the CPU and returns its frames on ``cuda:0``: what ``select_backend`` gives
when frames are asked for on a device the chosen backend does not output on
(a CPU backend and a CUDA device, or ``backend="auto"`` falling back to the
CPU because NVDEC cannot take the stream). The copy happens once per
converted frame, right after the CPU conversion.

Imports no decoder library and no torch: the wrapped backend is built from
its own spec when the reader first needs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, ClassVar

from ._base import BackendSpec, DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["OnDeviceBackend", "OnDeviceSpec"]


class OnDeviceBackend(DecoderBackend):
    """Another backend's frames, copied to ``device`` after conversion.

    Args:
        inner: the backend that decodes and converts (its output on its own device).
        device: where the frames go (``"cuda:0"``, ``"mps"``...).
    """

    name: ClassVar[str] = "on-device"

    def __init__(self, inner: DecoderBackend, device: str) -> None:
        super().__init__(inner.config, output=dataclasses.replace(inner.output, device=device))
        self.inner = inner
        self.device = device
        self.supports_crop = inner.supports_crop  # the inner backend converts, crop included

    def send(self, packet: Packet) -> list[DecodedFrame]:
        return self.inner.send(packet)

    def flush(self) -> list[DecodedFrame]:
        return self.inner.flush()

    def convert(self, frame: DecodedFrame) -> torch.Tensor:
        return self.inner.convert(frame).to(self.device)

    def decode_group(self, packets: Iterable[Packet], wanted_pts: Collection[int]) -> dict[int, torch.Tensor]:
        """The inner backend's ``decode_group`` (its corrupt-frame rule included), frames moved to ``device``."""
        return {pts: t.to(self.device) for pts, t in self.inner.decode_group(packets, wanted_pts).items()}

    def reset(self) -> None:
        self.inner.reset()

    def pixel_format(self) -> str | None:
        return self.inner.pixel_format()

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass(frozen=True)
class OnDeviceSpec(BackendSpec):
    """A registered backend's spec whose decoders return frames on ``device``.

    Same name, factory and probes as the backend it was made from (so the
    reader reports that backend), and it pickles into DataLoader workers.
    """

    device: str = "cpu"

    @classmethod
    def wrap(cls, spec: BackendSpec, device: str) -> OnDeviceSpec:
        """``spec``, with frames copied to ``device``."""
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(BackendSpec)}
        return cls(**fields, device=device)

    def create(self, config: StreamConfig, output: OutputSpec, *, num_threads: int = 0) -> DecoderBackend:
        """The backend decodes with a CPU ``output``; its frames are then copied to :attr:`device`."""
        inner = super().create(config, dataclasses.replace(output, device="cpu"), num_threads=num_threads)
        return OnDeviceBackend(inner, self.device)
