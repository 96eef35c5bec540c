"""Index packets: samples read with exact byte ranges where the container index put them.

The packet source of the index path. A plan's groups say which byte ranges
hold their samples and where each sample sits inside them; this module fetches
the ranges (one concurrent, coalesced batch per pipeline step) and hands out
each sample's bytes in decode order. No decoding, no torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ._errors import CorruptVideoError
from ._packets import SampleIndex
from ._plan import DecodeGroup
from ._types import ByteRange
from .decoders import StreamConfig

__all__ = ["PIPELINE_BATCH_BYTES", "IndexPackets"]

# Fetch at most this many bytes ahead of the decoder: bounds memory on long
# clips while the next batch downloads during the current batch's decode.
PIPELINE_BATCH_BYTES = 16 * 1024 * 1024

SampleBytes = Iterator[tuple[int, memoryview]]


class RangeReader(Protocol):
    """What the index packets read from: a ``RangeSource``, or bytes already held in front of one."""

    @property
    def url(self) -> str: ...

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]: ...


class IndexPackets:
    """Samples of an indexed track, fetched by byte range.

    Args:
        source: where the bytes are.
        table: the track's packet table, with byte ranges.
        container: the container's name for metadata (``"mp4"``).
    """

    access_path = "index"
    has_table = True
    cpu_only = False

    def __init__(self, source: RangeReader, table: SampleIndex, *, container: str = "mp4") -> None:
        self.source = source
        self.table = table
        self.container = container
        self.rotation = table.rotation
        self.config = StreamConfig(
            codec=table.codec,
            extradata=table.extradata,
            width=table.width,
            height=table.height,
            timescale=table.timescale,
            bit_depth=table.bit_depth,
            sample_entry=table.sample_entry,
        )

    def group_samples(self, groups: Sequence[DecodeGroup]) -> Iterator[tuple[DecodeGroup, SampleBytes]]:
        """``(group, samples)`` for each group in order; ``samples`` yields
        ``(sample index, bytes)`` from the group's sync sample on, decode order.

        Groups are fetched in batches of about ``PIPELINE_BATCH_BYTES``; the
        next batch downloads while the caller decodes the current one.
        """
        batches: list[list[DecodeGroup]] = [[]]
        nbytes = 0
        for g in groups:
            if batches[-1] and nbytes + g.nbytes > PIPELINE_BATCH_BYTES:
                batches.append([])
                nbytes = 0
            batches[-1].append(g)
            nbytes += g.nbytes
        if len(batches) == 1:
            for g, blobs in zip(batches[0], self.fetch(batches[0]), strict=False):
                yield g, self._samples(g, blobs)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloader-fetch") as pool:
            pending = pool.submit(self.fetch, batches[0])
            for i, batch in enumerate(batches):
                fetched = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(self.fetch, batches[i + 1])
                for g, blobs in zip(batch, fetched, strict=False):
                    yield g, self._samples(g, blobs)

    def fetched_samples(
        self, groups: Sequence[DecodeGroup], fetched: list[list[bytes]]
    ) -> Iterator[tuple[DecodeGroup, SampleBytes]]:
        """Like :meth:`group_samples`, from bytes :meth:`fetch` already returned for ``groups``.

        Lets a caller download several plans' bytes at once (one network wait
        for a whole batch of items) and decode each plan later, elsewhere.
        """
        for g, blobs in zip(groups, fetched, strict=True):
            yield g, self._samples(g, blobs)

    def fetch(self, groups: Sequence[DecodeGroup]) -> list[list[bytes]]:
        """One concurrent range call for several groups: each group's replies."""
        blobs = self.source.read_ranges([r for g in groups for r in g.ranges])
        out, k = [], 0
        for g in groups:
            out.append(blobs[k : k + len(g.ranges)])
            k += len(g.ranges)
        return out

    def _samples(self, group: DecodeGroup, blobs: list[bytes]) -> SampleBytes:
        views = [memoryview(b) for b in blobs]
        sizes = self.table.sizes
        for j, s in enumerate(range(group.first_sample, group.last_sample + 1)):
            rel, size = int(group.sample_offset[j]), int(sizes[s])
            data = views[int(group.sample_range[j])][rel : rel + size]
            if len(data) != size:
                raise CorruptVideoError(f"{self.source.url}: sample {s} is not inside its fetched range")
            yield s, data

    def close(self) -> None:
        """Nothing of its own to release (the reader closes the source)."""
