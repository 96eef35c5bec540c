"""ImageNet preprocessing in pure torch, so it runs wherever the frames already are.

Used when a model comes without its own ``transforms()`` (an ``nn.Module``, a
callable, random-init weights of an architecture without a weights enum).
NVDEC frames stay on the GPU: nothing here copies to the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageNetPreprocess"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetPreprocess:
    """Standard ImageNet preprocessing on uint8 ``N x 3 x H x W`` tensors, on their own device.

    Resize (shorter side to ``resize_size``, bilinear, antialiased), centre
    crop to ``crop_size``, scale to [0, 1], normalise with ``mean``/``std``.

    Args:
        resize_size: length of the shorter side after resizing.
        crop_size: side of the square centre crop (at most ``resize_size``).
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel standard deviation divided by.

    Raises:
        ValueError: ``crop_size`` is not in ``(0, resize_size]``.
    """

    def __init__(
        self,
        *,
        resize_size: int = 256,
        crop_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if resize_size <= 0 or crop_size <= 0 or crop_size > resize_size:
            raise ValueError(f"need 0 < crop_size <= resize_size, got crop {crop_size}, resize {resize_size}")
        self.resize_size, self.crop_size = resize_size, crop_size
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Float ``N x 3 x crop x crop`` batch from uint8 ``N x 3 x H x W`` frames."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W frames, got shape {tuple(frames.shape)}")
        x = frames.float().div_(255.0)
        h, w = x.shape[-2:]
        scale = self.resize_size / min(h, w)
        size = (max(self.crop_size, round(h * scale)), max(self.crop_size, round(w * scale)))
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - self.crop_size) // 2, (size[1] - self.crop_size) // 2
        x = x[..., top : top + self.crop_size, left : left + self.crop_size]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"ImageNetPreprocess(resize_size={self.resize_size}, crop_size={self.crop_size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageNetPreprocess) and vars(self) == vars(other)
