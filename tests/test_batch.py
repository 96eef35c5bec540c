"""Stacking decoded frames into batches: same values and layouts as torch's own ops."""

from __future__ import annotations

import pytest
import torch

from videoloader._batch import rotate_batch, stack, stack_frames
from videoloader._types import FrameBatch


def _channel_last_frames(n: int, h: int = 5, w: int = 7) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # What the CPU decoder returns: CHW views of packed HWC rgb24 memory.
    return [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).permute(2, 0, 1) for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.int64, torch.bool, torch.bfloat16])
def test_stack_equals_torch_stack(dtype):
    frames = [t.to(dtype) for t in _channel_last_frames(4)]
    got = stack(frames)
    want = torch.stack(frames)
    assert got.dtype == dtype and got.shape == want.shape and got.is_contiguous()
    assert torch.equal(got, want)


def test_stack_keeps_gradients():
    frames = [torch.ones(2, 3, requires_grad=True) for _ in range(3)]
    got = stack(frames)
    assert got.requires_grad
    got.sum().backward()
    assert all(torch.equal(f.grad, torch.ones(2, 3)) for f in frames)


@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
def test_stack_frames_layout(order):
    frames = _channel_last_frames(3)
    batch = stack_frames(
        frames,
        torch.zeros(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
        dimension_order=order,
        empty_hw=(5, 7),
    )
    want = torch.stack(frames)
    if order == "NCHW":
        assert batch.data.shape == (3, 3, 5, 7) and torch.equal(batch.data, want)
        assert batch.data.permute(0, 2, 3, 1).is_contiguous()  # a view of channel-last memory, as torchcodec gives
    else:
        assert batch.data.is_contiguous() and torch.equal(batch.data, want.permute(0, 2, 3, 1))


@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate_batch_equals_rot90(order, k):
    data = torch.stack(_channel_last_frames(2))
    if order == "NHWC":
        data = data.permute(0, 2, 3, 1).contiguous()
    dims = (2, 3) if order == "NCHW" else (1, 2)
    batch = FrameBatch(data=data, pts_seconds=torch.zeros(2), duration_seconds=torch.ones(2))
    got = rotate_batch(batch, k, order)
    assert torch.equal(got.data, torch.rot90(data, k, dims))
    if order == "NHWC":
        assert got.data.is_contiguous()


def test_stack_of_unequal_shapes_raises_as_torch_does():
    with pytest.raises(RuntimeError, match="equal size"):
        stack([torch.zeros(2, 3), torch.zeros(3, 2)])
    with pytest.raises(RuntimeError, match="equal size"):
        torch.stack([torch.zeros(2, 3), torch.zeros(3, 2)])
