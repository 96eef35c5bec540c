"""Decoded frames into a FrameBatch: one stacking step for every backend and path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ._types import FrameBatch
from .decoders import OutputSpec

__all__ = ["output_size", "rotate_batch", "stack", "stack_frames"]


def output_size(output: OutputSpec, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` of converted frames: the coded size, or the asked
    size with a missing side following the aspect ratio."""
    if output.width is None and output.height is None:
        return height, width
    w = output.width or round(width * (output.height or 0) / max(height, 1))
    h = output.height or round(height * (output.width or 0) / max(width, 1))
    return h, w


_NUMPY_DTYPES = frozenset(
    {
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.float32,
        torch.float64,
        torch.bool,
    }
)


def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)``, copied by numpy where the tensors are on the CPU.

    torch copies a batch of frames on its OpenMP pool, whose threads then
    spin waiting for more work on cores the decoder's threads need: on 2 busy
    cores a profile showed 25 ms to stack an 8-frame 224 px clip, against
    0.5 ms for the same copy on the calling thread. Tensors on a
    GPU, sparse, needing gradients, or of a dtype numpy lacks go to ``torch.stack``.
    """
    if tensors and all(
        t.device.type == "cpu" and t.layout == torch.strided and not t.requires_grad and t.dtype in _NUMPY_DTYPES
        for t in tensors
    ):
        first = tensors[0]
        out = torch.empty((len(tensors), *first.shape), dtype=first.dtype)  # packed, as torch.stack returns it
        dst = out.numpy()
        for i, t in enumerate(tensors):
            if t.shape != first.shape:
                raise RuntimeError(
                    f"stack expects each tensor to be equal size, got {tuple(first.shape)} and {tuple(t.shape)}"
                )
            dst[i] = t.numpy()
        return out
    return torch.stack(list(tensors))


def stack_frames(
    tensors: list[torch.Tensor],
    pts_seconds: torch.Tensor,
    duration_seconds: torch.Tensor,
    *,
    dimension_order: Literal["NCHW", "NHWC"],
    empty_hw: tuple[int, int],
) -> FrameBatch:
    """Stack ``3 x H x W`` frames into a batch in ``dimension_order``.

    Args:
        tensors: frames in the order asked.
        pts_seconds, duration_seconds: one float64 value per frame.
        dimension_order: ``"NCHW"`` (a view of channel-last memory, as
            torchcodec returns it) or ``"NHWC"`` (packed).
        empty_hw: the frame size an empty batch reports.
    """
    if not tensors:
        h, w = empty_hw
        nhwc = torch.empty((0, h, w, 3), dtype=torch.uint8)
    else:
        # Stacked channel-last: a plain copy for CHW views of channel-last
        # memory (swscale's rgb24), where stacking as CHW would transpose every
        # pixel (a third of a call's time at 1080p); one transposing copy otherwise.
        nhwc = stack([t.permute(1, 2, 0) for t in tensors])
    # .contiguous() on NCHW gives a packed copy where a consumer needs one.
    data = nhwc.contiguous() if dimension_order == "NHWC" else nhwc.permute(0, 3, 1, 2)
    return FrameBatch(data=data, pts_seconds=pts_seconds, duration_seconds=duration_seconds)


def rotate_batch(batch: FrameBatch, k: int, dimension_order: Literal["NCHW", "NHWC"]) -> FrameBatch:
    """Turn every frame ``k`` quarter turns counter-clockwise (``torch.rot90``), as
    torchcodec 0.17 applies a display rotation; ``k == 0`` returns ``batch`` as is."""
    if k % 4 == 0:
        return batch
    dims = (2, 3) if dimension_order == "NCHW" else (1, 2)
    if batch.data.device.type == "cpu":  # numpy's copy: see ``stack`` for why not torch's
        data = torch.from_numpy(np.ascontiguousarray(np.rot90(batch.data.numpy(), k, dims)))
    else:
        data = torch.rot90(batch.data, k, dims)
        if dimension_order == "NHWC":
            data = data.contiguous()
    return FrameBatch(data=data, pts_seconds=batch.pts_seconds, duration_seconds=batch.duration_seconds)
