"""A torchdata.nodes pipeline: decode samples in threads instead of processes.

Decoding and network waits release the GIL, so a thread pool in one process
loads samples in parallel without forking workers, pickling datasets or
copying tensors between processes::

    IterableWrapper | SamplerWrapper -> ParallelMapper(method="thread")
        -> Batcher -> Mapper(collate) -> Prefetcher -> Loader

torchdata is optional (``pip install 'videoloader[data]'``) and imported here only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._optional import require
from ._collate import collate_skip_none
from ._dataset import VideoFrameDataset, VideoFrameIterableDataset

if TYPE_CHECKING:  # pragma: no cover
    from ._sources import VideoRecord

__all__ = ["make_node_loader"]


def _nodes() -> Any:
    return require("torchdata.nodes", purpose="make_node_loader (torchdata >= 0.10)")


class _ShardItems:
    """Re-iterable ``(position, record)`` pairs of an iterable dataset's shard."""

    def __init__(self, dataset: VideoFrameIterableDataset) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[Any]:
        return self.dataset.items()


def make_node_loader(
    dataset: VideoFrameDataset | VideoFrameIterableDataset,
    *,
    batch_size: int | None = 8,
    num_threads: int = 8,
    sampler: Any = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
    in_order: bool = True,
    prefetch_factor: int = 2,
) -> Any:
    """A ``torchdata.nodes.Loader`` that loads ``dataset``'s samples in ``num_threads`` threads.

    Iterate it like a DataLoader; ``state_dict()``/``load_state_dict()`` resume
    mid-epoch. Call ``dataset.set_epoch(e)`` before each epoch.

    Args:
        dataset: a VideoFrameDataset or VideoFrameIterableDataset.
        batch_size: samples per batch; None yields single samples.
        num_threads: samples loaded concurrently.
        sampler: order of a map-style dataset's items (a torch Sampler, e.g.
            ``RandomSampler`` or ``DistributedSampler``; default sequential).
            Not allowed for iterable datasets (they shard themselves).
        collate_fn: batch collation; default ``collate_skip_none`` when
            ``on_error="skip"``, else ``default_collate``.
        drop_last: drop a last, smaller batch.
        in_order: keep the sampler's order (False: yield samples as they finish).
        prefetch_factor: batches prepared ahead.

    Raises:
        MissingDependencyError: torchdata is not installed (``pip install 'videoloader[data]'``).
    """
    tn = _nodes()
    import torch.utils.data as tud

    # An iterable dataset maps (position, record) pairs, a map-style one item indices.
    map_fn: Callable[[tuple[int, VideoRecord]], dict[str, Any] | None] | Callable[[int], dict[str, Any] | None]
    if isinstance(dataset, VideoFrameIterableDataset):
        if sampler is not None:
            raise ValueError("an iterable dataset shards itself; sampler is for map-style datasets")
        node = tn.IterableWrapper(_ShardItems(dataset))
        map_fn = dataset.load_item
    elif isinstance(dataset, VideoFrameDataset):
        node = tn.SamplerWrapper(sampler if sampler is not None else tud.SequentialSampler(dataset))
        map_fn = dataset.__getitem__
    else:
        raise TypeError(f"make_node_loader takes a VideoFrameDataset or VideoFrameIterableDataset, got {dataset!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    node = tn.ParallelMapper(node, map_fn, num_workers=num_threads, method="thread", in_order=in_order)
    if batch_size is not None:
        if collate_fn is None:
            collate_fn = collate_skip_none if dataset.on_error == "skip" else tud.default_collate
        node = tn.Batcher(node, batch_size=batch_size, drop_last=drop_last)
        node = tn.Mapper(node, collate_fn)
    if prefetch_factor > 0:
        node = tn.Prefetcher(node, prefetch_factor=prefetch_factor)
    return tn.Loader(node)
