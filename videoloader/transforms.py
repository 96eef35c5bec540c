"""Decode-time transforms: resize and crop inside the decoder's scaler.

``VideoDecoder(src, transforms=[Resize((224, 224))])`` (or ``VideoReader``)
converts each wanted frame straight to the transformed size: on the CPU the
crop and the scale are one swscale pass (FFmpeg's crop filter only moves the
plane pointers), so a full-size RGB frame is never made and thrown away.

The classes mirror torchcodec 0.17's ``torchcodec.transforms`` (same names,
same ``size`` argument, ``RandomCrop`` draws its position once, with
``torch.randint`` exactly as torchvision's ``RandomCrop.make_params`` does, so a
seeded run picks the same window). torchcodec's own transform objects and the
matching ``torchvision.transforms.v2`` objects are accepted too and converted.

A pipeline is applied in order, in the displayed (rotated) frame's
coordinates. One pass does at most one resize, so a pipeline must have the
form ``crops, Resize, crops`` (any number of crops, at most one Resize);
several resizes raise ``ValueError``: apply the extra ones after decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["CenterCrop", "DecoderTransform", "Geometry", "RandomCrop", "Resize", "plan_geometry"]

Rect = tuple[int, int, int, int]
"""``(top, left, height, width)`` in pixels."""


def _size_pair(size: Any, what: str, *, allow_int: bool = False) -> tuple[int, int] | int:
    if allow_int and isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"{what} size must be positive, got {size}")
        return size
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"{what} needs a (height, width) pair{' or an int' if allow_int else ''}, got {size!r}")
    h, w = size
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise ValueError(f"{what} size must be positive ints, got {size!r}")
    return int(h), int(w)


class DecoderTransform:
    """Base class of the decode-time transforms."""

    size: Any

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.size == getattr(other, "size", None)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.size))


class Resize(DecoderTransform):
    """Scale the frame (bilinear, as torchcodec's ``Resize``).

    Args:
        size: ``(height, width)``, or one int: the short side's length, the
            aspect ratio kept (the long side rounded down, as torchvision does).
    """

    def __init__(self, size: Sequence[int] | int) -> None:
        self.size = _size_pair(size, "Resize", allow_int=True)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` this resize makes of a ``height x width`` frame."""
        if isinstance(self.size, tuple):
            return self.size
        short = self.size
        if height <= width:
            return short, max(1, int(short * width / height))
        return max(1, int(short * height / width)), short


class CenterCrop(DecoderTransform):
    """Crop a ``(height, width)`` window from the centre (torchvision's rounding)."""

    def __init__(self, size: Sequence[int]) -> None:
        self.size = _size_pair(size, "CenterCrop")

    def window(self, height: int, width: int) -> Rect:
        """The crop window in a ``height x width`` frame."""
        ch, cw = self.size
        _fits(self, ch, cw, height, width)
        return int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0)), ch, cw


class RandomCrop(DecoderTransform):
    """Crop a ``(height, width)`` window at a position drawn once, when the reader opens.

    Every frame of that reader is cropped at the same place (torchcodec's
    rule); open a new reader (a dataset does, per item) for a new position.
    """

    def __init__(self, size: Sequence[int]) -> None:
        self.size = _size_pair(size, "RandomCrop")

    def window(self, height: int, width: int) -> Rect:
        """A random window in a ``height x width`` frame (two ``torch.randint`` draws: top, then left)."""
        ch, cw = self.size
        _fits(self, ch, cw, height, width)
        top = int(torch.randint(0, height - ch + 1, size=()).item())
        left = int(torch.randint(0, width - cw + 1, size=()).item())
        return top, left, ch, cw


def _fits(t: DecoderTransform, ch: int, cw: int, height: int, width: int) -> None:
    if ch > height or cw > width:
        raise ValueError(f"{t!r} does not fit in a {height}x{width} frame")


def as_decoder_transform(obj: Any) -> DecoderTransform:
    """Ours as is; torchcodec's ``Resize``/``CenterCrop``/``RandomCrop`` and the
    torchvision v2 ones converted (with torchcodec's checks on the latter)."""
    if isinstance(obj, DecoderTransform):
        return obj
    kind = type(obj).__name__
    module = type(obj).__module__
    if module.startswith("torchcodec.") and kind in ("Resize", "CenterCrop", "RandomCrop"):
        return {"Resize": Resize, "CenterCrop": CenterCrop, "RandomCrop": RandomCrop}[kind](tuple(obj.size))
    if module.startswith("torchvision.transforms"):
        return _from_torchvision(obj)
    raise TypeError(
        f"unsupported decode-time transform {obj!r}: use videoloader.transforms Resize, CenterCrop or RandomCrop "
        "(or torchcodec's or torchvision v2's of the same name)"
    )


def _from_torchvision(obj: Any) -> DecoderTransform:
    from torchvision.transforms import v2

    if isinstance(obj, v2.Resize):
        if obj.interpolation not in (v2.InterpolationMode.BILINEAR, "bilinear"):
            raise ValueError("torchvision Resize must use bilinear interpolation to run in the decoder")
        if obj.antialias is False:
            raise ValueError("torchvision Resize must have antialias enabled to run in the decoder")
        if obj.size is None or obj.max_size is not None:
            raise ValueError("torchvision Resize needs a size (and no max_size) to run in the decoder")
        size = list(obj.size)
        return Resize(size[0] if len(size) == 1 else size)
    if isinstance(obj, (v2.CenterCrop, v2.RandomCrop)):
        if isinstance(obj, v2.RandomCrop) and (
            obj.padding is not None or obj.pad_if_needed or obj.fill not in (0, {}) or obj.padding_mode != "constant"
        ):
            raise ValueError("torchvision RandomCrop must not pad to run in the decoder")
        cls = CenterCrop if isinstance(obj, v2.CenterCrop) else RandomCrop
        return cls(tuple(obj.size))
    raise TypeError(
        f"torchvision transform {type(obj).__name__} cannot run in the decoder (Resize, CenterCrop, RandomCrop can)"
    )


@dataclass(frozen=True)
class Geometry:
    """A pipeline reduced to one pass: crop the source, scale, crop the result.

    All in the coordinates of the frame the pipeline starts from.
    """

    pre_crop: Rect | None = None
    """Window of the input frame to keep before scaling."""
    size: tuple[int, int] | None = None
    """``(height, width)`` to scale the (cropped) frame to; None: no scaling."""
    post_crop: Rect | None = None
    """Window of the scaled frame to keep."""
    output_hw: tuple[int, int] = (0, 0)
    """``(height, width)`` of the frames out of the pipeline."""


def _intersect(outer: Rect | None, inner: Rect) -> Rect:
    if outer is None:
        return inner
    return outer[0] + inner[0], outer[1] + inner[1], inner[2], inner[3]


def plan_geometry(transforms: Sequence[Any] | None, height: int, width: int) -> Geometry:
    """Reduce ``transforms`` (applied in order to a ``height x width`` frame) to one :class:`Geometry`.

    Raises:
        ValueError: more than one ``Resize``, or a crop larger than its input.
        TypeError: an object that is not a supported transform.
    """
    pre: Rect | None = None
    post: Rect | None = None
    size: tuple[int, int] | None = None
    h, w = height, width
    for obj in transforms or ():
        t = as_decoder_transform(obj)
        if isinstance(t, Resize):
            if size is not None:
                raise ValueError("only one Resize per decode-time pipeline; apply further resizes after decoding")
            size = t.output_size(h, w)
            h, w = size
        else:
            assert isinstance(t, (CenterCrop, RandomCrop))
            rect = t.window(h, w)
            if size is None:
                pre = _intersect(pre, rect)
            else:
                post = _intersect(post, rect)
            h, w = rect[2], rect[3]
    return Geometry(pre_crop=pre, size=size, post_crop=post, output_hw=(h, w))


def rotate_rect(rect: Rect, k: int, height: int, width: int) -> Rect:
    """The window of the coded frame that ``torch.rot90(frame, k)`` turns into ``rect``.

    Args:
        rect: ``(top, left, h, w)`` in the rotated (displayed) frame.
        k: quarter turns counter-clockwise (0..3).
        height, width: the coded (unrotated) frame's size.
    """
    t, left, h, w = rect
    if k == 1:
        return left, width - t - h, w, h
    if k == 2:
        return height - t - h, width - left - w, h, w
    if k == 3:
        return height - left - w, t, w, h
    return rect


def apply_geometry(frame: torch.Tensor, g: Geometry) -> torch.Tensor:
    """Apply ``g`` to a ``C x H x W`` uint8 frame with torch: the fallback for a
    backend whose converter cannot crop (bilinear, antialiased scaling)."""
    if g.pre_crop is not None:
        t, left, h, w = g.pre_crop
        frame = frame[:, t : t + h, left : left + w]
    if g.size is not None and tuple(frame.shape[1:]) != g.size:
        x = frame.unsqueeze(0).float()
        x = torch.nn.functional.interpolate(x, size=g.size, mode="bilinear", antialias=True, align_corners=False)
        frame = x.round_().clamp_(0, 255).to(torch.uint8)[0]
    if g.post_crop is not None:
        t, left, h, w = g.post_crop
        frame = frame[:, t : t + h, left : left + w]
    return frame
