"""Collate functions for batches that may hold skipped (None) samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["collate_skip_none"]


def collate_skip_none(batch: Sequence[Any], *, collate_fn: Callable[[list[Any]], Any] | None = None) -> Any:
    """Drop the samples that ``on_error="skip"`` left as None, then collate the rest.

    When the samples are dicts (as the videoloader datasets make), the batch
    dict gets ``num_skipped``: how many samples of this batch were dropped, so
    the training loop sees the loss even when workers run in other processes.

    Args:
        batch: the samples of one batch.
        collate_fn: how to collate the kept samples (default
            ``torch.utils.data.default_collate``).

    Returns:
        The collated batch, or None when every sample was dropped.
    """
    if collate_fn is None:
        from torch.utils.data import default_collate

        collate_fn = default_collate
    kept = [s for s in batch if s is not None]
    if not kept:
        return None
    out = collate_fn(kept)
    if isinstance(out, dict) and "num_skipped" not in out:
        out["num_skipped"] = len(batch) - len(kept)
    return out
