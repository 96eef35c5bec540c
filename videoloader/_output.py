"""What a reader's frames look like: rotation and decode-time transforms, planned once.

Users speak in the displayed frame's coordinates (after the track's display
rotation); decoders work on the coded frame. :func:`plan_output` turns a size,
transforms and the rotation into the decoder's ``OutputSpec`` (crop and scale in
one converter pass) plus what is left for torch: the quarter turns, and the
crops of a backend that cannot crop itself. :meth:`OutputPlan.batch` stacks
decoded frames into the batch users get.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ._batch import output_size, rotate_batch, stack_frames
from ._types import FrameBatch
from .decoders import OutputSpec
from .transforms import Geometry, apply_geometry, plan_geometry, rotate_rect

__all__ = ["OutputPlan", "plan_output", "rotation_degrees"]


@dataclass(frozen=True)
class OutputPlan:
    """How decoded frames become the frames a reader returns."""

    spec: OutputSpec
    """What the decoder backend is asked for (coded-frame coordinates)."""
    coded_hw: tuple[int, int]
    """``(height, width)`` of the coded frame."""
    rot_k: int = 0
    """Quarter turns counter-clockwise applied to every frame (``torch.rot90``)."""
    torch_geometry: Geometry | None = None
    """Crops and scaling done in torch, for a backend that cannot crop."""

    @property
    def displayed_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the displayed (rotated) coded frame."""
        h, w = self.coded_hw
        return (w, h) if self.rot_k % 2 else (h, w)

    def without_backend_crop(self) -> OutputPlan:
        """The same frames from a backend that cannot crop: full-size decode, geometry in torch."""
        o = self.spec
        size = (o.height, o.width) if o.height is not None and o.width is not None else None
        return dataclasses.replace(
            self,
            spec=OutputSpec(device=o.device),
            torch_geometry=Geometry(pre_crop=o.crop, size=size, post_crop=o.post_crop),
        )

    def batch(
        self,
        tensors: list[torch.Tensor],
        pts_seconds: torch.Tensor,
        duration_seconds: torch.Tensor,
        dimension_order: Literal["NCHW", "NHWC"],
    ) -> FrameBatch:
        """Stack decoded frames (torch geometry and rotation applied) into a batch."""
        g = self.torch_geometry
        if g is not None:
            tensors = [apply_geometry(t, g) for t in tensors]
        batch = stack_frames(
            tensors, pts_seconds, duration_seconds, dimension_order=dimension_order, empty_hw=self._frame_hw()
        )
        return rotate_batch(batch, self.rot_k, dimension_order)

    def _frame_hw(self) -> tuple[int, int]:
        """``(height, width)`` of a frame before rotation (what an empty batch reports)."""
        g, o = self.torch_geometry, self.spec
        crop, size, post = (g.pre_crop, g.size, g.post_crop) if g is not None else (o.crop, None, o.post_crop)
        if post is not None:
            return post[2], post[3]
        if size is not None:
            return size
        if crop is not None:
            return output_size(o, crop[2], crop[3]) if g is None else (crop[2], crop[3])
        return output_size(o, *self.coded_hw)


def plan_output(
    spec: OutputSpec,
    *,
    coded_hw: tuple[int, int],
    rotation_cw: int,
    transforms: Sequence[Any] | None,
    apply_rotation: bool,
) -> OutputPlan:
    """Plan the decoder's output for a size or transforms given in displayed coordinates.

    Args:
        spec: the size asked (``height``/``width``, displayed sides) and the device.
        coded_hw: ``(height, width)`` of the coded frame.
        rotation_cw: the track's display rotation, clockwise degrees (0 if unknown).
        transforms: Resize / CenterCrop / RandomCrop (ours, torchcodec's or torchvision v2's).
        apply_rotation: turn frames by the display rotation, as torchcodec 0.17 does.
    """
    ch, cw = coded_hw
    k = (-rotation_cw % 360) // 90 if apply_rotation and rotation_cw % 90 == 0 else 0
    if not transforms:
        if k % 2:  # an output size names the displayed frame's sides
            spec = dataclasses.replace(spec, height=spec.width, width=spec.height)
        return OutputPlan(spec=spec, coded_hw=coded_hw, rot_k=k)
    dh, dw = (cw, ch) if k % 2 else (ch, cw)
    g = plan_geometry(transforms, dh, dw)
    pre = None if g.pre_crop is None else rotate_rect(g.pre_crop, k, ch, cw)
    size = None if g.size is None else ((g.size[1], g.size[0]) if k % 2 else g.size)
    post = None
    if g.post_crop is not None:
        sh, sw = size if size is not None else (pre[2], pre[3]) if pre is not None else (ch, cw)
        post = rotate_rect(g.post_crop, k, sh, sw)
    height, width = size if size is not None else (None, None)
    spec = OutputSpec(height=height, width=width, device=spec.device, crop=pre, post_crop=post, full_chroma=True)
    return OutputPlan(spec=spec, coded_hw=coded_hw, rot_k=k)


def rotation_degrees(rotation_cw: int) -> int:
    """The display rotation as torchcodec and FFmpeg report it: counter-clockwise, in (-180, 180]."""
    return -rotation_cw if rotation_cw <= 180 else 360 - rotation_cw
