"""YUV -> RGB uint8 in plain torch, on whatever device the planes live.

NVDEC gives NV12 (8-bit) or P016/P010 (10-bit in the high bits of 16-bit
words) surfaces on the GPU; converting there keeps the frame off the PCIe bus.
The same code runs on CPU tensors, which is how the tests check it against
FFmpeg's swscale.

Maths (ITU-R BT.601/709/2020, limited or full range), for bit depth ``n``::

    limited: Y' = (Y - 16*2^(n-8)) / (219*2^(n-8)),  C' = (C - 2^(n-1)) / (224*2^(n-8))
    full:    Y' = Y / (2^n - 1),                     C' = (C - 2^(n-1)) / (2^n - 1)
    R = Y' + 2(1-Kr) Cr'
    B = Y' + 2(1-Kb) Cb'
    G = (Y' - Kr R - Kb B) / Kg

e.g. 8-bit limited BT.601 (Y, Cb, Cr) = (235, 128, 128) -> (255, 255, 255).

Chroma is upsampled by sample repetition ("nearest"), which is what swscale's
unscaled YUV->RGB path does at the same size; "bilinear" (centre-sited) is
available for callers that prefer smoothness to FFmpeg parity.

Decode-time crops run on the planes, before conversion: only the window (grown
to the 4:2:0 chroma grid, see :func:`aligned_window`) is converted, and an odd
edge is then cut exactly from the RGB result, so a cropped conversion equals
the full conversion cropped (bit-exact with ``nearest`` chroma).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "MATRICES",
    "aligned_window",
    "nv12_to_rgb",
    "p010_to_rgb",
    "resize_rgb",
    "surface_luma_rows",
    "yuv420_to_rgb",
    "yuv420p_to_rgb",
]

# (Kr, Kb) per matrix.
MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
}

ChromaMode = Literal["nearest", "bilinear"]


def _check(matrix: str, bit_depth: int, chroma: str) -> None:
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {sorted(MATRICES)}, got {matrix!r}")
    if bit_depth not in (8, 10, 12, 16):
        raise ValueError(f"bit_depth must be 8, 10, 12 or 16, got {bit_depth!r}")
    if chroma not in ("nearest", "bilinear"):
        raise ValueError(f"chroma must be 'nearest' or 'bilinear', got {chroma!r}")


def _as_int32(plane: torch.Tensor) -> torch.Tensor:
    """Integer samples as int32 (uint16 planes arrive as int16/uint16 from DLPack)."""
    if plane.dtype == torch.uint8:
        return plane.to(torch.int32)
    if plane.dtype == torch.int16:
        return plane.to(torch.int32) & 0xFFFF
    if plane.dtype == torch.uint16:
        return plane.view(torch.int16).to(torch.int32) & 0xFFFF
    if plane.dtype in (torch.int32, torch.int64):
        return plane.to(torch.int32)
    raise ValueError(f"expected an integer plane (uint8/uint16/int16/int32/int64), got {plane.dtype}")


def _upsample_chroma(c: torch.Tensor, height: int, width: int, chroma: ChromaMode) -> torch.Tensor:
    """``2 x ceil(H/2) x ceil(W/2)`` float chroma -> ``2 x H x W``."""
    if chroma == "nearest":
        c = c.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        return c[:, :height, :width]
    # Centre-sited bilinear, edges clamped (align_corners=False): an exact 2x
    # upsample trimmed to the picture, so every chroma sample stays centred on
    # its 2x2 luma block at odd sizes too (and a cropped window converts alike).
    c = F.interpolate(c[None], size=(2 * int(c.shape[1]), 2 * int(c.shape[2])), mode="bilinear", align_corners=False)
    return c[0, :, :height, :width]


def resize_rgb(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of float ``3 x H x W`` (or ``N x 3 x H x W``) in [0, 255],
    antialiased when either side shrinks."""
    squeeze = rgb.ndim == 3
    x = rgb[None] if squeeze else rgb
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if (h, w) == tuple(size):
        return rgb
    antialias = size[0] < h or size[1] < w
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
    return x[0] if squeeze else x


Rect = tuple[int, int, int, int]
"""``(top, left, height, width)`` in luma pixels."""


def aligned_window(crop: Rect, height: int, width: int, *, margin: int = 0) -> tuple[Rect, Rect]:
    """Grow a crop window to the 4:2:0 chroma grid so its planes can be cut exactly.

    Args:
        crop: ``(top, left, h, w)`` of a ``height x width`` picture.
        height, width: the picture's size.
        margin: extra chroma samples to keep on each side (where the picture
            has them), for chroma filters that read neighbours (bilinear: 1).

    Returns:
        ``(outer, inner)``: ``outer`` is the window to cut from the planes (even
        top and left; even height and width unless it ends at an odd picture
        edge), ``inner`` is ``crop`` in ``outer``'s coordinates, to cut from
        the converted frame.

    Raises:
        ValueError: ``crop`` does not fit in the picture.
    """
    t, left, h, w = crop
    if min(crop) < 0 or h <= 0 or w <= 0 or t + h > height or left + w > width:
        raise ValueError(f"crop {crop} does not fit in a {height}x{width} frame")
    m = 2 * margin
    top0 = max(0, (t & ~1) - m)
    left0 = max(0, (left & ~1) - m)
    bottom = min(height, ((t + h + 1) & ~1) + m)
    right = min(width, ((left + w + 1) & ~1) + m)
    return (top0, left0, bottom - top0, right - left0), (t - top0, left - left0, h, w)


def _crop_planes(y: torch.Tensor, uv: torch.Tensor, outer: Rect) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut an :func:`aligned_window` ``outer`` window (even top/left) from luma and its chroma."""
    t, left, h, w = outer
    y = y[t : t + h, left : left + w]
    uv = uv[:, t // 2 : t // 2 + (h + 1) // 2, left // 2 : left // 2 + (w + 1) // 2]
    return y, uv


def yuv420_to_rgb(
    y: torch.Tensor,
    uv: torch.Tensor,
    *,
    matrix: str = "bt601",
    full_range: bool = False,
    bit_depth: int = 8,
    size: tuple[int, int] | None = None,
    chroma: ChromaMode = "nearest",
    crop: Rect | None = None,
) -> torch.Tensor:
    """Convert one 4:2:0 frame to RGB.

    Args:
        y: ``H x W`` integer luma samples (values in ``[0, 2^bit_depth)``).
        uv: ``2 x ceil(H/2) x ceil(W/2)`` integer chroma samples (Cb, Cr).
        matrix: ``bt601``, ``bt709``, ``bt2020``, ``smpte240m`` or ``fcc``.
        full_range: full ("JPEG") range instead of limited ("MPEG") range.
        bit_depth: bits per sample of ``y``/``uv`` values.
        size: ``(height, width)`` to resize to (bilinear, antialiased when
            shrinking), or None for the coded (or cropped) size.
        chroma: chroma upsampling, ``nearest`` (swscale parity) or ``bilinear``.
        crop: ``(top, left, h, w)`` window of the frame to keep before
            resizing, any parity; only the planes around it are converted.

    Returns:
        ``3 x H x W`` uint8 RGB tensor on the input's device.

    Raises:
        ValueError: bad arguments, plane shapes that are not 4:2:0, or a crop
            that does not fit.
    """
    _check(matrix, bit_depth, chroma)
    if y.ndim != 2 or uv.ndim != 3 or uv.shape[0] != 2:
        raise ValueError(f"expected y H x W and uv 2 x H/2 x W/2, got {tuple(y.shape)} and {tuple(uv.shape)}")
    height, width = int(y.shape[0]), int(y.shape[1])
    if uv.shape[1] != (height + 1) // 2 or uv.shape[2] != (width + 1) // 2:
        raise ValueError(f"chroma planes {tuple(uv.shape[1:])} do not match luma {height}x{width} for 4:2:0")
    inner: Rect | None = None
    if crop is not None:
        outer, inner = aligned_window(crop, height, width, margin=1 if chroma == "bilinear" else 0)
        y, uv = _crop_planes(y, uv, outer)
        height, width = outer[2], outer[3]
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    scale = float(1 << (bit_depth - 8))
    mid = float(1 << (bit_depth - 1))
    if full_range:
        maxv = float((1 << bit_depth) - 1)
        y_off, y_mul, c_mul = 0.0, 1.0 / maxv, 1.0 / maxv
    else:
        y_off, y_mul, c_mul = 16.0 * scale, 1.0 / (219.0 * scale), 1.0 / (224.0 * scale)
    yf = (_as_int32(y).to(torch.float32) - y_off) * y_mul
    cf = (_as_int32(uv).to(torch.float32) - mid) * c_mul
    cf = _upsample_chroma(cf, height, width, chroma)
    cb, cr = cf[0], cf[1]
    r = yf + (2.0 * (1.0 - kr)) * cr
    b = yf + (2.0 * (1.0 - kb)) * cb
    g = yf - (2.0 * kr * (1.0 - kr) / kg) * cr - (2.0 * kb * (1.0 - kb) / kg) * cb
    rgb = torch.stack((r, g, b)) * 255.0
    if inner is not None and inner != (0, 0, height, width):
        t, left, height, width = inner
        rgb = rgb[:, t : t + height, left : left + width]
    if size is not None and tuple(size) != (height, width):
        rgb = resize_rgb(rgb.clamp_(0.0, 255.0), size)
    return rgb.round_().clamp_(0.0, 255.0).to(torch.uint8).contiguous()


def surface_luma_rows(rows: int) -> int:
    """Luma rows of a semi-planar 4:2:0 surface that has ``rows`` rows in all.

    A surface of ``L`` luma rows holds ``ceil(L/2)`` chroma rows, but
    PyNvVideoCodec exports ``floor(L * 1.5)`` rows, one chroma row short when
    ``L`` is odd (AV1 and VP9 allow odd heights). The two layouts give
    different remainders mod 3, so ``L`` is recovered exactly from either:
    ``3k`` rows (``L = 2k``), ``3k + 1`` (``L = 2k + 1``, floor export) or
    ``3k + 2`` (``L = 2k + 1``, every chroma row present).
    """
    if rows % 3 == 0:
        return 2 * rows // 3
    if rows % 3 == 1:
        return (2 * rows + 1) // 3
    return (2 * rows - 1) // 3


def _split_semiplanar(frame: torch.Tensor, height: int | None, width: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``L + ceil(L/2)`` (or ``floor(L*1.5)``) rows x W semi-planar surface -> (luma, 2 x H/2 x W/2 chroma).

    Plane offsets come from the surface's own shape (see :func:`surface_luma_rows`):
    chroma starts right after the surface's ``L`` luma rows, which may be more
    than the picture's ``height`` (decoders pad to their alignment). When the
    export leaves out the last chroma row of an odd-height surface, that row
    (which only the picture's last luma row uses) repeats the one above it.
    """
    if frame.ndim != 2:
        raise ValueError(f"expected a 2-D semi-planar surface (rows x width), got shape {tuple(frame.shape)}")
    rows, pitch = int(frame.shape[0]), int(frame.shape[1])
    luma_rows = surface_luma_rows(rows)
    if height is None:
        height = luma_rows
    if width is None:
        width = pitch
    ch, cw = (height + 1) // 2, (width + 1) // 2
    if pitch < 2 * cw or luma_rows < height:
        raise ValueError(f"surface of {rows}x{pitch} is too small for a {width}x{height} 4:2:0 frame")
    available = rows - luma_rows
    if available < ch - 1 or available < 1:
        raise ValueError(f"surface of {rows} rows cannot hold a {height}-row 4:2:0 picture")
    luma = frame[:height, :width]
    chroma = frame[luma_rows : luma_rows + ch, : 2 * cw]
    if available < ch:
        rows_idx = torch.arange(ch, device=frame.device).clamp_(max=available - 1)
        chroma = chroma.index_select(0, rows_idx)
    uv = chroma.reshape(ch, cw, 2).permute(2, 0, 1)
    return luma, uv


def nv12_to_rgb(
    frame: torch.Tensor,
    *,
    height: int | None = None,
    width: int | None = None,
    matrix: str = "bt601",
    full_range: bool = False,
    size: tuple[int, int] | None = None,
    chroma: ChromaMode = "nearest",
    crop: Rect | None = None,
) -> torch.Tensor:
    """NV12 surface (``H*3/2 x W`` uint8, as NVDEC/DLPack gives it) -> ``3 x H x W`` RGB uint8.

    ``height``/``width`` crop a padded surface to the picture (defaults: from
    the shape). Odd heights work with either row count (``floor`` or ``ceil``
    of ``H*3/2``; see :func:`surface_luma_rows`). ``crop`` and ``size``: see
    :func:`yuv420_to_rgb`.
    """
    y, uv = _split_semiplanar(frame, height, width)
    return yuv420_to_rgb(y, uv, matrix=matrix, full_range=full_range, bit_depth=8, size=size, chroma=chroma, crop=crop)


def p010_to_rgb(
    frame: torch.Tensor,
    *,
    height: int | None = None,
    width: int | None = None,
    bit_depth: int = 10,
    matrix: str = "bt709",
    full_range: bool = False,
    size: tuple[int, int] | None = None,
    chroma: ChromaMode = "nearest",
    crop: Rect | None = None,
) -> torch.Tensor:
    """P010/P016 surface -> ``3 x H x W`` RGB uint8.

    ``frame`` is ``H*3/2 x W`` 16-bit words (uint16 or int16), or the same
    bytes as ``H*3/2 x 2W`` uint8 (little-endian); the ``bit_depth``
    significant bits sit at the top of each word (P010: ``value << 6``).
    ``crop`` and ``size``: see :func:`yuv420_to_rgb`; only the cropped
    planes are widened to 32 bits.
    """
    if frame.dtype == torch.uint8:
        if frame.shape[-1] % 2:
            raise ValueError(f"a uint8 view of P010 needs an even row length, got {tuple(frame.shape)}")
        frame = frame.contiguous().view(torch.int16)
    y, uv = _split_semiplanar(frame, height, width)
    inner: Rect | None = crop
    if crop is not None:
        outer, inner = aligned_window(crop, int(y.shape[0]), int(y.shape[1]), margin=1 if chroma == "bilinear" else 0)
        y, uv = _crop_planes(y, uv, outer)
    shift = 16 - bit_depth
    return yuv420_to_rgb(
        _as_int32(y) >> shift,
        _as_int32(uv) >> shift,
        matrix=matrix,
        full_range=full_range,
        bit_depth=bit_depth,
        size=size,
        chroma=chroma,
        crop=inner,
    )


def yuv420p_to_rgb(
    y: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    bit_depth: int = 8,
    matrix: str = "bt601",
    full_range: bool = False,
    size: tuple[int, int] | None = None,
    chroma: ChromaMode = "nearest",
) -> torch.Tensor:
    """Planar 4:2:0 (``yuv420p``/``yuv420p10le`` values, not shifted) -> ``3 x H x W`` RGB uint8."""
    uv = torch.stack((u, v))
    return yuv420_to_rgb(y, uv, matrix=matrix, full_range=full_range, bit_depth=bit_depth, size=size, chroma=chroma)
