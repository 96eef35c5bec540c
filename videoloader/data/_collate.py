"""Collate functions for videoloader samples: skipped (None) samples, host-only fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .._batch import stack

__all__ = ["collate_samples", "collate_skip_none"]


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


def collate_samples(
    batch: Sequence[Any], *, device: str | torch.device | None = None, non_blocking: bool = False
) -> dict[str, Any] | None:
    """Collate videoloader sample dicts, moving only what belongs on a device.

    Tensors of one shape are stacked and numbers (labels, indices) become a
    tensor, both moved to ``device``; strings (``url``, passed-through text
    columns), ``None`` and other values stay Python lists on the host; the
    ``transfer`` dicts are summed into one dict of ints (accounting, never a
    tensor). Skipped (None) samples are dropped and counted in ``num_skipped``;
    a key some samples lack gives None for them. Tensors of different shapes
    (``AllFrames``) stay a list, each moved.

    Args:
        batch: the samples of one batch (``DataLoader(collate_fn=collate_samples)``,
            or ``functools.partial(collate_samples, device="cuda", non_blocking=True)``
            with ``pin_memory=True``).
        device: where tensors go (None: stay where they are).
        non_blocking: passed to ``Tensor.to``.

    Returns:
        The batch dict, or None when every sample was dropped.
    """
    kept = [s for s in batch if s is not None]
    if not kept:
        return None

    def move(t: torch.Tensor) -> torch.Tensor:
        return t if device is None else t.to(device, non_blocking=non_blocking)

    keys = list(dict.fromkeys(k for s in kept for k in s))
    out: dict[str, Any] = {}
    for key in keys:
        values = [s.get(key) for s in kept]
        if key == "transfer" and all(isinstance(v, dict) for v in values):
            out[key] = {name: sum(int(v.get(name, 0)) for v in values) for name in values[0]}
        elif all(isinstance(v, torch.Tensor) for v in values):
            shapes = {tuple(v.shape) for v in values}
            out[key] = move(stack(values)) if len(shapes) == 1 else [move(v) for v in values]
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = move(torch.tensor(values))
        else:
            out[key] = values
    out["num_skipped"] = len(batch) - len(kept)
    return out
