"""Our torch YUV->RGB against FFmpeg's swscale on the same NV12 / P010 data.

Tolerances (measured with PyAV 18.1 / libswscale 9.5, documented in
videoloader/decoders/_colour.py):

- What the CPU backend does (swscale on the decoder's yuv420p frame) is an
  unscaled fixed-point path that rounds down and repeats chroma; ours rounds
  the exact value and repeats chroma. 8-bit: max |diff| <= 3 levels, mean
  |diff| <= 1.5 per channel, on any content.
- swscale fed NV12 or P010 itself takes its scaled path (vertical chroma
  interpolation, dithering to 8 bits): on smooth-chroma content max |diff|
  <= 6 (NV12) / 8 (P010) and mean <= 2; with sharp chroma edges only the
  mean is comparable (<= 3).
- Against a float64 reference of the same formulas our result is within 1
  level (float32 on the device).
"""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from videoloader.decoders._colour import MATRICES, nv12_to_rgb, p010_to_rgb, resize_rgb, yuv420_to_rgb, yuv420p_to_rgb

from _hw_media import encode

_SPACE_NAMES = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 2: "bt601"}


def _first_frame(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as c:
        return next(c.decode(video=0))


def _plane(p, dtype, rows, cols) -> np.ndarray:
    a = np.frombuffer(bytes(p), dtype)
    return a.reshape(-1, p.line_size // np.dtype(dtype).itemsize)[:rows, :cols]


def _nv12_surface(frame: av.VideoFrame) -> np.ndarray:
    nv = frame.reformat(format="nv12")
    h, w = frame.height, frame.width
    return np.concatenate([_plane(nv.planes[0], np.uint8, h, w), _plane(nv.planes[1], np.uint8, (h + 1) // 2, w)])


def _p010_surface(frame: av.VideoFrame) -> np.ndarray:
    p = frame.reformat(format="p010le")
    h, w = frame.height, frame.width
    return np.concatenate([_plane(p.planes[0], np.uint16, h, w), _plane(p.planes[1], np.uint16, (h + 1) // 2, w)])


def _swscale_rgb(frame: av.VideoFrame, surface_fmt: str, space: int, full: bool) -> np.ndarray:
    """FFmpeg's conversion of the same NV12/P010 data, colourspace and range stated explicitly."""
    src = frame.reformat(format=surface_fmt)
    return src.reformat(
        format="rgb24",
        src_colorspace=space if space != 2 else None,
        src_color_range="JPEG" if full else "MPEG",
        dst_color_range="JPEG",
    ).to_ndarray()


def _tags(frame):
    space = int(frame.colorspace)
    return space, _SPACE_NAMES.get(space, "bt601"), int(frame.color_range) == 2


@pytest.mark.parametrize(
    "colorspace,color_range,smooth",
    [(1, 1, False), (5, 2, False), (None, None, False), (1, 2, True), (5, 1, True)],
)
def test_nv12_matches_swscale(colorspace, color_range, smooth):
    frame = _first_frame(
        encode(
            "h264",
            width=96,
            height=64,
            num_frames=1,
            gop=1,
            colorspace=colorspace,
            color_range=color_range,
            smooth=smooth,
        )
    )
    space, matrix, full = _tags(frame)
    got = nv12_to_rgb(torch.from_numpy(_nv12_surface(frame)), matrix=matrix, full_range=full)
    assert got.dtype == torch.uint8 and tuple(got.shape) == (3, 64, 96)
    got = got.permute(1, 2, 0).numpy().astype(int)
    # What the CPU backend produces: swscale on the decoder's yuv420p frame (the
    # same samples; NV12 only interleaves the chroma planes).
    direct = frame.to_ndarray(format="rgb24").astype(int)
    d = np.abs(got - direct)
    assert d.max() <= 3, d.max()
    assert d.mean(axis=(0, 1)).max() <= 1.5, d.mean(axis=(0, 1))
    # swscale fed the NV12 surface itself (colourspace/range stated) takes its
    # scaled path, which interpolates chroma: equal where chroma is smooth.
    ref = _swscale_rgb(frame, "nv12", space, full).astype(int)
    if smooth:
        assert np.abs(got - ref).max() <= 6 and np.abs(got - ref).mean() <= 2.0
    else:
        assert np.abs(got - ref).mean() <= 3.0


@pytest.mark.parametrize("colorspace,color_range", [(1, 1), (9, 2), (None, None)])
def test_p010_matches_swscale_on_smooth_chroma(colorspace, color_range):
    frame = _first_frame(
        encode(
            "hevc",
            width=96,
            height=64,
            num_frames=1,
            gop=1,
            pix_fmt="yuv420p10le",
            colorspace=colorspace,
            color_range=color_range,
            smooth=True,
            options={"x265-params": "log-level=error"},
        )
    )
    assert frame.format.name == "yuv420p10le"
    space, matrix, full = _tags(frame)
    ref = _swscale_rgb(frame, "p010le", space, full).astype(int)
    surface = torch.from_numpy(_p010_surface(frame).view(np.int16))
    got = p010_to_rgb(surface, matrix=matrix, full_range=full)
    d = np.abs(got.permute(1, 2, 0).numpy().astype(int) - ref)
    assert d.max() <= 8, d.max()
    assert d.mean() <= 2.0, d.mean()
    # The same bytes as a uint8 surface (how a DLPack export may arrive) convert identically.
    as_bytes = torch.from_numpy(_p010_surface(frame).view(np.uint8).copy())
    assert torch.equal(p010_to_rgb(as_bytes, matrix=matrix, full_range=full), got)


def test_p010_textured_mean_close():
    frame = _first_frame(
        encode(
            "hevc",
            width=96,
            height=64,
            num_frames=1,
            gop=1,
            pix_fmt="yuv420p10le",
            colorspace=1,
            color_range=1,
            options={"x265-params": "log-level=error"},
        )
    )
    ref = _swscale_rgb(frame, "p010le", 1, False).astype(int)
    got = p010_to_rgb(torch.from_numpy(_p010_surface(frame).view(np.int16)), matrix="bt709")
    d = np.abs(got.permute(1, 2, 0).numpy().astype(int) - ref)
    assert d.mean() <= 3.0 and np.percentile(d, 95) <= 8


def _float64_reference(y, u, v, matrix, full, bits):
    kr, kb = MATRICES[matrix]
    kg = 1 - kr - kb
    s = 2 ** (bits - 8)
    if full:
        m = 2**bits - 1
        yf, cb, cr = y / m, (u - 2 ** (bits - 1)) / m, (v - 2 ** (bits - 1)) / m
    else:
        yf, cb, cr = (y - 16 * s) / (219 * s), (u - 2 ** (bits - 1)) / (224 * s), (v - 2 ** (bits - 1)) / (224 * s)
    cb = cb.repeat(2, 0).repeat(2, 1)[: y.shape[0], : y.shape[1]]
    cr = cr.repeat(2, 0).repeat(2, 1)[: y.shape[0], : y.shape[1]]
    r = yf + 2 * (1 - kr) * cr
    b = yf + 2 * (1 - kb) * cb
    g = (yf - kr * r - kb * b) / kg
    return np.clip(np.round(np.stack([r, g, b]) * 255), 0, 255)


@pytest.mark.parametrize("matrix", sorted(MATRICES))
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("bits", [8, 10])
def test_formula_against_float64(matrix, full, bits):
    rng = np.random.default_rng(bits)
    h, w = 7, 10  # odd height: chroma rows = ceil(h/2)
    y = rng.integers(0, 2**bits, (h, w))
    u = rng.integers(0, 2**bits, ((h + 1) // 2, w // 2))
    v = rng.integers(0, 2**bits, ((h + 1) // 2, w // 2))
    got = (
        yuv420p_to_rgb(
            torch.from_numpy(y),
            torch.from_numpy(u),
            torch.from_numpy(v),
            bit_depth=bits,
            matrix=matrix,
            full_range=full,
        )
        .numpy()
        .astype(int)
    )
    want = _float64_reference(y.astype(float), u.astype(float), v.astype(float), matrix, full, bits)
    assert np.abs(got - want).max() <= 1


def test_known_values():
    # Limited-range white, black and mid grey; BT.601 red.
    y = torch.tensor([[235, 16], [126, 81]], dtype=torch.uint8)
    uv = torch.tensor([[[128]], [[128]]], dtype=torch.uint8)
    rgb = yuv420_to_rgb(y, uv)
    assert rgb[:, 0, 0].tolist() == [255, 255, 255] and rgb[:, 0, 1].tolist() == [0, 0, 0]
    assert rgb[:, 1, 0].tolist() == [128, 128, 128]
    red = yuv420_to_rgb(torch.full((2, 2), 81), torch.tensor([[[90]], [[240]]]), matrix="bt601")
    assert (red[0] >= 253).all() and (red[1] <= 2).all() and (red[2] <= 2).all()


def test_padded_surface_is_cropped():
    frame = _first_frame(encode("h264", width=64, height=48, num_frames=1, gop=1))
    surf = _nv12_surface(frame)  # 72 x 64
    h = 48
    padded = np.zeros((64 + 32, 80), np.uint8)  # a 64-row surface, 80 wide
    padded[:h, :64] = surf[:h]
    padded[64 : 64 + h // 2, :64] = surf[h:]
    a = nv12_to_rgb(torch.from_numpy(surf))
    b = nv12_to_rgb(torch.from_numpy(padded), height=48, width=64)
    assert torch.equal(a, b)


def test_resize_matches_swscale_roughly():
    frame = _first_frame(encode("h264", width=128, height=96, num_frames=1, gop=1, smooth=True))
    got = nv12_to_rgb(torch.from_numpy(_nv12_surface(frame)), size=(48, 64))
    assert tuple(got.shape) == (3, 48, 64)
    ref = frame.to_ndarray(format="rgb24", width=64, height=48, interpolation="BILINEAR").astype(int)
    d = np.abs(got.permute(1, 2, 0).numpy().astype(int) - ref)
    assert d.mean() <= 2.0 and d.max() <= 12
    up = resize_rgb(torch.zeros(3, 4, 4), (8, 8))
    assert tuple(up.shape) == (3, 8, 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="matrix"):
        yuv420_to_rgb(torch.zeros(2, 2), torch.zeros(2, 1, 1), matrix="bt999")
    with pytest.raises(ValueError, match="chroma planes"):
        yuv420_to_rgb(torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(2, 1, 1, dtype=torch.uint8))
    with pytest.raises(ValueError, match="too small|cannot hold"):
        nv12_to_rgb(torch.zeros(10, 8, dtype=torch.uint8), height=8, width=8)


@pytest.mark.needs_cuda
def test_cuda_matches_cpu():
    frame = _first_frame(encode("h264", width=96, height=64, num_frames=1, gop=1, colorspace=1, color_range=1))
    surf = torch.from_numpy(_nv12_surface(frame))
    cpu = nv12_to_rgb(surf, matrix="bt709", size=(32, 48))
    gpu = nv12_to_rgb(surf.cuda(), matrix="bt709", size=(32, 48))
    assert gpu.is_cuda
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1


def test_every_codec_matrix_has_a_conversion():
    """The matrix names the codec colour descriptions give are the ones this module converts with."""
    from videoloader.codecs import ColourInfo, matrix_name

    assert {matrix_name(code) for code in range(256)} <= set(MATRICES)
    assert ColourInfo().matrix == "bt601" and ColourInfo(matrix_coefficients=9).matrix == "bt2020"


def test_odd_height_surface_offsets_from_the_shape():
    from videoloader.decoders._colour import surface_luma_rows

    # rows = L + ceil(L/2) (full chroma) or floor(L * 1.5) (the NVDEC export): L recovered from either.
    for luma in range(2, 300):
        assert surface_luma_rows(luma + (luma + 1) // 2) == luma
        assert surface_luma_rows(luma * 3 // 2) == luma
    y = torch.randint(16, 236, (47, 8), dtype=torch.uint8)
    uv = torch.randint(16, 241, (24, 8), dtype=torch.uint8)
    full = torch.cat([y, uv])  # 71 rows
    floor = full[: 47 * 3 // 2]  # 70 rows: the last chroma row left out
    a, b = nv12_to_rgb(full), nv12_to_rgb(floor)
    assert a.shape == b.shape == (3, 47, 8)
    assert torch.equal(a[:, :46], b[:, :46])  # chroma starts after row 47, not one row early
    repeated = torch.cat([y, uv[:23], uv[22:23]])
    assert torch.equal(b, nv12_to_rgb(repeated))  # the missing row repeats the one above


def test_aligned_window_grows_to_the_chroma_grid():
    from videoloader.decoders._colour import aligned_window

    assert aligned_window((2, 4, 10, 20), 48, 64) == ((2, 4, 10, 20), (0, 0, 10, 20))  # even: unchanged
    assert aligned_window((3, 5, 10, 21), 48, 64) == ((2, 4, 12, 22), (1, 1, 10, 21))  # every edge odd
    assert aligned_window((46, 62, 1, 1), 47, 63) == ((46, 62, 1, 1), (0, 0, 1, 1))  # ends at an odd picture edge
    assert aligned_window((4, 4, 4, 4), 48, 64, margin=1) == ((2, 2, 8, 8), (2, 2, 4, 4))  # a chroma sample around
    assert aligned_window((0, 0, 4, 4), 48, 64, margin=1) == ((0, 0, 6, 6), (0, 0, 4, 4))  # clamped at the picture
    for bad in ((0, 0, 49, 64), (40, 0, 9, 8), (0, 60, 4, 5)):
        with pytest.raises(ValueError, match="does not fit"):
            aligned_window(bad, 48, 64)


@pytest.mark.parametrize("height,width", [(48, 64), (47, 63)])
@pytest.mark.parametrize("chroma", ["nearest", "bilinear"])
def test_cropped_conversion_is_the_full_conversion_cropped(height, width, chroma):
    # Random samples: any misplaced chroma sample would show. Windows with even
    # and odd edges, at the picture's edges and 1x1.
    g = torch.Generator().manual_seed(1)
    rows, pitch = height + (height + 1) // 2, width + width % 2
    nv12 = torch.randint(0, 256, (rows, pitch), dtype=torch.uint8, generator=g)
    p010 = (torch.randint(0, 1024, (rows, pitch), dtype=torch.int32, generator=g) << 6).to(torch.int16)
    windows = [
        (2, 4, 20, 30),
        (1, 1, 10, 11),
        (3, 5, height - 3, width - 5),
        (0, 1, height, width - 1),
        (0, 0, height, width),
    ]
    windows.append((height - 1, width - 1, 1, 1))
    for convert, surface in ((nv12_to_rgb, nv12), (p010_to_rgb, p010)):
        full = convert(surface, height=height, width=width, chroma=chroma)
        for t, left, h, w in windows:
            got = convert(surface, height=height, width=width, chroma=chroma, crop=(t, left, h, w))
            assert got.is_contiguous() and got.shape == (3, h, w)
            assert torch.equal(got, full[:, t : t + h, left : left + w]), (convert.__name__, (t, left, h, w))
        # Crop then resize: the window's conversion, resized (one pass, no full-size frame).
        got = convert(surface, height=height, width=width, chroma=chroma, crop=(3, 5, 21, 31), size=(10, 16))
        want = resize_rgb(full[:, 3:24, 5:36].float(), (10, 16)).round().clamp(0, 255).to(torch.uint8)
        assert got.shape == (3, 10, 16) and (got.int() - want.int()).abs().max() <= 1
