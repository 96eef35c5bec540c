"""The one decode path: a plan's groups, their packets from any packet source, one decoder.

Whatever produced the packets (the container index with exact byte ranges, or
FFmpeg's demuxer), each decode group's samples become ``Packet`` objects here,
unwanted non-reference pictures are skipped, and the decoder backend's
``decode_group`` decodes them with its corrupt-frame rule. A wanted frame that
does not come out is an error, never a neighbour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch

from ._errors import CorruptVideoError
from ._packets import SampleIndex
from ._plan import DecodeGroup, Plan
from .decoders import DecoderBackend, Packet, StreamConfig

__all__ = ["PacketSource", "PrefetchingSource", "TimedSource", "decode_plan", "in_order_asked"]


class PacketSource(Protocol):
    """Where a reader's packets come from: the packet table and each group's sample bytes."""

    access_path: str
    """``"index"`` (exact byte ranges) or ``"demux"`` (FFmpeg's demuxer)."""
    container: str
    """Container name for metadata (``mp4``, ``matroska``, ``mpegts``...)."""
    config: StreamConfig
    """What a decoder needs before the first packet (codec, extradata, coded size, timescale)."""
    rotation: int
    """Display rotation in clockwise degrees (0 where the container gives none)."""
    cpu_only: bool
    """Whether its packets must be decoded on the CPU (hardware backends are not tried)."""

    @property
    def has_table(self) -> bool: ...

    @property
    def table(self) -> SampleIndex: ...

    def group_samples(
        self, groups: Sequence[DecodeGroup]
    ) -> Iterator[tuple[DecodeGroup, Iterable[tuple[int, bytes | memoryview]]]]: ...

    def close(self) -> None: ...


@runtime_checkable
class PrefetchingSource(PacketSource, Protocol):
    """A packet source that downloads a plan's bytes apart from decoding them.

    A batch of items can then wait for the network once, and decode afterwards.
    """

    def fetch(self, groups: Sequence[DecodeGroup]) -> list[list[bytes]]:
        """One concurrent download for several groups: each group's replies, in order."""
        ...

    def fetched_samples(
        self, groups: Sequence[DecodeGroup], fetched: list[list[bytes]]
    ) -> Iterator[tuple[DecodeGroup, Iterator[tuple[int, memoryview]]]]:
        """As ``group_samples``, from what :meth:`fetch` returned for ``groups``."""
        ...


@runtime_checkable
class TimedSource(PacketSource, Protocol):
    """A packet source that serves frames by time before (or without) building its table."""

    def frames_at_seconds(
        self, seconds: Sequence[float], decoder: DecoderBackend
    ) -> tuple[list[torch.Tensor], list[float], list[float], int]:
        """The frame on screen at each time: ``(frames, pts_seconds, duration_seconds, bytes fed)``, in order asked."""
        ...


def in_order_asked(
    found: dict[float, tuple[torch.Tensor, float, float]], seconds: Sequence[float]
) -> tuple[list[torch.Tensor], list[float], list[float]]:
    """``(frames, pts_seconds, duration_seconds)`` for ``seconds`` in the order asked (repeats
    included), from ``{time: (frame, pts, duration)}`` found once per distinct time."""
    rows = [found[t] for t in seconds]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def decode_plan(
    plan: Plan,
    source: PacketSource,
    decoder: DecoderBackend,
    *,
    skip: Callable[[bytes | memoryview], bool] | None,
    what: str,
    samples: Iterable[tuple[DecodeGroup, Iterable[tuple[int, bytes | memoryview]]]] | None = None,
) -> tuple[dict[int, torch.Tensor], int]:
    """Decode every group of ``plan``.

    Args:
        plan: groups from :func:`~videoloader._plan.plan_frames` over ``source.table``.
        source: gives each group's samples, decode order, from its sync sample.
        decoder: decodes one group at a time.
        skip: says whether a sample is a non-reference picture (unwanted ones
            are not decoded: no other frame needs them); None when unknown.
        what: names the reader and decoder in errors.
        samples: the groups' samples when the caller fetched them beforehand
            (same shape as ``source.group_samples(plan.groups)``, which is the default).

    Returns:
        ``({frame index: tensor}, compressed bytes fed to the decoder)``.

    Raises:
        CorruptVideoError: the decoder failed, flagged a wanted frame, or did
            not produce one.
    """
    t = source.table
    out: dict[int, torch.Tensor] = {}
    fed = 0
    groups = source.group_samples(plan.groups) if samples is None else samples
    for group, group_samples in groups:
        wanted = {int(t.pts[t.frame_to_sample[f]]): f for f in group.frames}
        packets = []
        for s, data in group_samples:
            pts = int(t.pts[s])
            if skip is not None and pts not in wanted and not t.is_sync[s] and skip(data):
                continue
            packets.append(Packet(bytes(data), pts, int(t.dts[s]), int(t.durations[s]), bool(t.is_sync[s])))
        fed += sum(len(p.data) for p in packets)
        try:
            got = decoder.decode_group(packets, wanted)
        except CorruptVideoError as e:
            raise CorruptVideoError(f"{what}: frames {list(group.frames)}: {e}") from e
        for pts, f in wanted.items():
            if pts not in got:
                raise CorruptVideoError(
                    f"{what} produced no frame {f} (pts {pts}) from samples "
                    f"{group.first_sample}..{group.last_sample}; the stream may be corrupt"
                )
            out[f] = got[pts]
    return out, fed
