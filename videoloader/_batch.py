"""Decoded frames into a FrameBatch: one stacking step for every backend and path."""

from __future__ import annotations

from typing import Literal

import torch

from ._types import FrameBatch
from .decoders import OutputSpec

__all__ = ["output_size", "rotate_batch", "stack_frames"]


def output_size(output: OutputSpec, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` of converted frames: the coded size, or the asked
    size with a missing side following the aspect ratio."""
    if output.width is None and output.height is None:
        return height, width
    w = output.width or round(width * (output.height or 0) / max(height, 1))
    h = output.height or round(height * (output.width or 0) / max(width, 1))
    return h, w


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
    elif tensors[0].stride(0) == 1:
        # CHW views of channel-last memory (swscale's rgb24): stacking them
        # channel-last is a plain copy, where stacking as CHW would transpose
        # every pixel (a third of a call's time at 1080p).
        nhwc = torch.stack([t.permute(1, 2, 0) for t in tensors])
    else:
        nhwc = torch.stack(tensors).permute(0, 2, 3, 1)
    # .contiguous() on NCHW gives a packed copy where a consumer needs one.
    data = nhwc.contiguous() if dimension_order == "NHWC" else nhwc.permute(0, 3, 1, 2)
    return FrameBatch(data=data, pts_seconds=pts_seconds, duration_seconds=duration_seconds)


def rotate_batch(batch: FrameBatch, k: int, dimension_order: Literal["NCHW", "NHWC"]) -> FrameBatch:
    """Turn every frame ``k`` quarter turns counter-clockwise (``torch.rot90``), as
    torchcodec 0.17 applies a display rotation; ``k == 0`` returns ``batch`` as is."""
    if k % 4 == 0:
        return batch
    dims = (2, 3) if dimension_order == "NCHW" else (1, 2)
    data = torch.rot90(batch.data, k, dims)
    if dimension_order == "NHWC":
        data = data.contiguous()
    return FrameBatch(data=data, pts_seconds=batch.pts_seconds, duration_seconds=batch.duration_seconds)
