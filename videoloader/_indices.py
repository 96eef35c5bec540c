"""Frame indices as users pass them, checked: integers only, never rounded."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

__all__ = ["as_index", "as_indices"]


def as_index(value: Any, what: str = "frame index") -> int:
    """An integer index (int, numpy integer, integer 0-d tensor), never a float or bool."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"a {what} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"a {what} must be an integer (int, numpy integer or integer tensor), got {type(value).__name__} "
            f"{value!r}; frame indices are never rounded: use get_frames_played_at for times in seconds"
        ) from None


def as_indices(indices: Any) -> list[int]:
    """Frame indices from a sequence, an integer numpy array or an integer tensor."""
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__") or getattr(indices, "ndim", 1) == 0:
        raise TypeError(
            f"get_frames_at takes a sequence of frame indices, got {type(indices).__name__} {indices!r}; "
            "use get_frame_at(i) for one frame, or get_frames_at([i])"
        )
    if isinstance(indices, torch.Tensor):
        if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise TypeError(f"frame indices must be integers, got a tensor of {indices.dtype}")
        return [int(i) for i in indices.reshape(-1).tolist()]
    if isinstance(indices, np.ndarray):
        if indices.dtype.kind not in "iu":
            raise TypeError(f"frame indices must be integers, got an array of {indices.dtype}")
        return [int(i) for i in indices.reshape(-1).tolist()]
    return [as_index(i) for i in indices]
