"""NVDEC backend: PyNvVideoCodec 2.x fed our own packets, frames stay on the GPU.

Flow per packet::

    MP4 sample --AnnexBConverter--> Annex-B / OBUs --PacketData--> Decoder.Decode
      -> 0..n DecodedFrame (display order, pts carried through the parser)
      -> torch.from_dlpack: NV12 ``H*3/2 x W`` uint8 (P016 for 10-bit), CUDA
      -> _colour: RGB uint8 3 x H x W on the same GPU (crop and resize there too)

Decoders are expensive to create (tens of ms, a hardware session each), so one
per (process, GPU, codec, chroma format, bit depth) is kept in a small pool and
reused by the next reader; its maximum size grows when a larger video comes
along. A reused decoder is never given a resize target: NVDEC reconfigures
itself at the next sequence header to that stream's own display size, exactly
what a fresh decoder outputs.

Whether NVDEC takes a stream is asked before a decoder is made
(:func:`check_stream`: ``GetDecoderCaps`` for the codec, chroma format and bit
depth, and its minimum and maximum size), so an unsupported profile, size or
bit depth is ``BackendUnavailableError`` (``backend="auto"`` then decodes on
the CPU), not a ``CorruptVideoError`` from inside ``Decode``.

Two CUDA streams meet here: the decoder writes on its own stream, our colour
conversion (and any copy) runs on torch's current stream. PyNvVideoCodec
reuses its output buffers on every ``Decode``, so the decoder's stream waits
for torch's stream before each ``Decode`` (nothing still reading a buffer is
overwritten) and torch's stream waits for the decoder's before converting (no
frame is read before it is written). A frame returned by
:meth:`NvdecDecoder.send` is also copied out before the next ``Decode`` call
if anyone still holds it (the reader's ``decode_group`` converts wanted
frames immediately, so normally nothing is copied).

PyNvVideoCodec before 2.2.4 reports 16-bit DLPack strides in bytes, which
scrambles 10-bit frames: the probe refuses those versions and every surface's
shape and strides are checked before use.

API names (PyNvVideoCodec 2.2.4, read from its wheel): ``CreateDecoder(gpuid,
codec, cudacontext, cudastream, usedevicememory, maxwidth, maxheight,
outputColorType)``, ``cudaVideoCodec.{H264,HEVC,AV1,VP9}``,
``OutputColorType.NATIVE``, ``PacketData`` (``bsl_data`` pointer, ``bsl``
length, ``pts``), ``Decode(packet) -> list[DecodedFrame]``, ``bsl = 0``
flushes, ``DecodedFrame.getPTS()`` / ``.timestamp``, ``.format``,
``__dlpack__``, ``GetDecoderCaps(gpuid, codec, chromaformat, bitdepth) ->
dict`` (``supported``, ``width_min``/``width_max``, ``height_min``/``height_max``,
``mb_num_max``; it queries GPU 0 whatever ``gpuid`` says, in 2.2.4).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import re
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from .._errors import BackendUnavailableError, CorruptVideoError, MissingDependencyError, UnsupportedFormatError
from .._optional import require
from ..codecs import ColourInfo, stream_colour_info, stream_converter
from ._base import BackendSpec, DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig
from ._colour import ChromaMode, nv12_to_rgb, p010_to_rgb, surface_luma_rows

__all__ = [
    "MIN_PYNVVIDEOCODEC",
    "SPEC",
    "NvdecDecoder",
    "StreamFormat",
    "check_stream",
    "clear_decoder_pool",
    "decoder_caps",
    "import_pynvvideocodec",
    "probe",
    "stream_format",
]

_NVC_CODECS = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9"}
_DRIVER_HINT = "in containers set NVIDIA_DRIVER_CAPABILITIES=compute,utility,video"

SPEC = BackendSpec(
    name="nvdec",
    factory=f"{__name__}:NvdecDecoder",
    probe=f"{__name__}:probe",
    codecs=frozenset(_NVC_CODECS),
    install_hint=(
        f"pip install videoloader[nvdec] (PyNvVideoCodec >= 2.2.4) on a machine with an NVIDIA GPU and driver; {_DRIVER_HINT}"
    ),
    priority=20,
)
"""NVIDIA's hardware decoder; frames stay on the GPU."""
# Smallest decoder surface we create: a 1080p decoder then serves every
# smaller video without being recreated (NVDEC reconfigures within its maximum).
_MIN_MAX_WIDTH, _MIN_MAX_HEIGHT = 1920, 1088
MIN_PYNVVIDEOCODEC = (2, 2, 4)
"""Oldest PyNvVideoCodec accepted: 2.2.4 fixed 16-bit DLPack strides (bytes were
reported instead of elements, so 10-bit frames came out scrambled)."""
_CHROMA_NAMES = {0: "monochrome", 1: "4:2:0", 2: "4:2:2", 3: "4:4:4"}
# Member names of PyNvVideoCodec's cudaVideoChromaFormat, by chroma_format_idc.
_NVC_CHROMA = {0: "Monochrome", 1: "420", 2: "422", 3: "444"}


def import_pynvvideocodec() -> Any:
    """Import PyNvVideoCodec or say exactly why not.

    Raises:
        BackendUnavailableError: not installed, or its import failed (it raises
            RuntimeError, not ImportError, when the driver's video libraries
            are missing).
    """
    try:
        return require("PyNvVideoCodec", purpose="the nvdec backend")
    except MissingDependencyError as e:
        raise BackendUnavailableError(str(e)) from e
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendUnavailableError(
            f"PyNvVideoCodec failed to import: {first}. It needs the NVIDIA driver's video libraries "
            f"(libnvcuvid.so.1, libnvidia-encode.so.1); {_DRIVER_HINT}"
        ) from e


def probe() -> tuple[bool, str]:
    """Whether NVDEC decodes here: a CUDA GPU for torch, the driver's decode library, PyNvVideoCodec."""
    try:
        cuda_ok = torch.cuda.is_available()
    except Exception as e:  # a broken driver can raise here
        return False, f"torch.cuda.is_available() failed: {e}"
    if not cuda_ok:
        return False, f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        ctypes.CDLL("libnvcuvid.so.1")
    except OSError as e:
        return False, f"the NVIDIA video decode library libnvcuvid.so.1 is not loadable ({e}); {_DRIVER_HINT}"
    try:
        nvc = import_pynvvideocodec()
    except BackendUnavailableError as e:
        return False, str(e)
    version = _pynvvideocodec_version(nvc)
    if version is not None and _version_tuple(version) < MIN_PYNVVIDEOCODEC:
        return False, (
            f"PyNvVideoCodec {version} is older than 2.2.4, whose 16-bit DLPack strides are wrong (10-bit frames "
            f"come out scrambled); pip install -U 'pynvvideocodec>=2.2.4,<3'"
        )
    return True, f"PyNvVideoCodec {version or '?'} on {torch.cuda.get_device_name(0)}"


def _pynvvideocodec_version(nvc: Any) -> str | None:
    version = getattr(nvc, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version("pynvvideocodec")
    except Exception:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"2.2.4.post1"`` -> ``(2, 2, 4)``: the leading numeric parts."""
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):
            break
    return tuple(parts)


# ------------------------------------------------------------------ what NVDEC will take


@dataclass(frozen=True)
class StreamFormat:
    """Chroma format and bit depth of a stream, from its configuration record."""

    chroma: int
    """``chroma_format_idc``: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4."""
    bit_depth: int


def stream_format(config: StreamConfig) -> StreamFormat:
    """Read the chroma format and luma bit depth from avcC / hvcC / av1C / vpcC.

    Fields a record does not carry (an avcC without its High-profile
    extension, no extradata at all) default to 4:2:0 and ``config.bit_depth``
    (else 8): what those streams almost always are.
    """
    chroma, depth = 1, int(config.bit_depth or 8)
    ex = config.extradata or b""
    try:
        if config.codec == "hevc" and len(ex) >= 19:
            chroma, depth = ex[16] & 0x03, (ex[17] & 0x07) + 8
        elif config.codec == "av1" and len(ex) >= 3:
            high, twelve, mono = bool(ex[2] & 0x40), bool(ex[2] & 0x20), bool(ex[2] & 0x10)
            sub_x, sub_y = bool(ex[2] & 0x08), bool(ex[2] & 0x04)
            depth = 12 if high and twelve else 10 if high else 8
            chroma = 0 if mono else 1 if (sub_x and sub_y) else 2 if sub_x else 3
        elif config.codec == "vp9" and len(ex) >= 7:
            depth, sub = ex[6] >> 4, (ex[6] >> 1) & 0x07
            chroma = 1 if sub in (0, 1) else 2 if sub == 2 else 3
        elif config.codec == "h264" and len(ex) >= 7 and ex[1] in (100, 110, 122, 144):
            pos = 6
            for _ in range(ex[5] & 0x1F):
                pos += 2 + int.from_bytes(ex[pos : pos + 2], "big")
            n_pps = ex[pos]
            pos += 1
            for _ in range(n_pps):
                pos += 2 + int.from_bytes(ex[pos : pos + 2], "big")
            if pos + 2 <= len(ex):
                chroma, depth = ex[pos] & 0x03, (ex[pos + 1] & 0x07) + 8
    except IndexError:  # a truncated record: keep the defaults
        pass
    return StreamFormat(chroma, depth)


@functools.cache
def decoder_caps(gpu_id: int, codec: str, chroma: int, bit_depth: int) -> dict[str, int]:
    """``GetDecoderCaps`` for one (GPU, codec, chroma, bit depth), asked once per process.

    Raises:
        BackendUnavailableError: PyNvVideoCodec cannot be imported.
        Exception: whatever ``GetDecoderCaps`` raises (no libnvcuvid, bad GPU id).
    """
    nvc = import_pynvvideocodec()
    enum = nvc.cudaVideoChromaFormat
    name = _NVC_CHROMA[chroma]
    chroma_value = getattr(enum, name, None)
    if chroma_value is None:
        chroma_value = getattr(enum, "__members__", {})[name]
    caps = nvc.GetDecoderCaps(
        gpuid=gpu_id,
        codec=getattr(nvc.cudaVideoCodec, _NVC_CODECS[codec]),
        chromaformat=chroma_value,
        bitdepth=bit_depth,
    )
    return {str(k): int(v) for k, v in dict(caps).items()}


def check_stream(config: StreamConfig, gpu_id: int = 0) -> tuple[bool, str]:
    """Whether NVDEC on ``gpu_id`` decodes this stream: ``(works, reason)``; never raises.

    Checks what this backend converts (4:2:0, 8 to 12 bits), then asks
    ``GetDecoderCaps`` whether the chip takes the codec at that chroma format
    and bit depth, and whether the picture fits its minimum and maximum size
    and macroblock count. NVDEC creates its hardware decoder only at the
    first sequence header, so without this check such a stream would fail
    inside ``Decode`` and look corrupt.
    """
    codec = config.codec
    if codec not in _NVC_CODECS:
        return False, f"nvdec does not decode {codec!r} (it decodes {', '.join(sorted(_NVC_CODECS))})"
    fmt = stream_format(config)
    what = f"{codec} {_CHROMA_NAMES.get(fmt.chroma, '?')} {fmt.bit_depth}-bit"
    if fmt.chroma != 1:
        return False, f"this is {what}; the nvdec backend converts 4:2:0 only"
    if fmt.bit_depth not in (8, 10, 12):
        return False, f"this is {what}; NVDEC decodes 8, 10 or 12 bits"
    try:
        caps = decoder_caps(gpu_id, codec, fmt.chroma, fmt.bit_depth)
    except BackendUnavailableError as e:
        return False, str(e)
    except Exception as e:
        return False, f"GetDecoderCaps failed for {what}: {type(e).__name__}: {e}"
    if not caps.get("supported"):
        return False, f"this GPU's NVDEC does not decode {what} (GetDecoderCaps)"
    w, h = int(config.width), int(config.height)
    wmin, hmin = caps.get("width_min", 0), caps.get("height_min", 0)
    wmax, hmax = caps.get("width_max", 0), caps.get("height_max", 0)
    if w < wmin or h < hmin:
        return False, f"{w}x{h} is below NVDEC's minimum {wmin}x{hmin} for {what}"
    if (wmax and w > wmax) or (hmax and h > hmax):
        return False, f"{w}x{h} is above NVDEC's maximum {wmax}x{hmax} for {what}"
    mbs = ((w + 15) // 16) * ((h + 15) // 16)
    if caps.get("mb_num_max") and mbs > caps["mb_num_max"]:
        return False, f"{w}x{h} ({mbs} macroblocks) is above NVDEC's {caps['mb_num_max']} for {what}"
    return True, f"NVDEC decodes {what} at {w}x{h}"


# --------------------------------------------------------------------------- decoder pool


@dataclass(eq=False)
class _PooledDecoder:
    decoder: Any
    max_width: int
    max_height: int
    stream: Any  # torch.cuda.Stream the decoder writes on, or None (its own stream)


@dataclass
class _Pool:
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: dict[tuple, list[_PooledDecoder]] = field(default_factory=dict)
    max_idle_per_key: int = 2


_POOL = _Pool()


def clear_decoder_pool() -> None:
    """Drop every idle pooled decoder (frees their hardware sessions)."""
    with _POOL.lock:
        _POOL.idle.clear()


def _current_cuda_context() -> int:
    """The CUcontext torch uses (its device's primary context), or 0."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        ctx = ctypes.c_void_p()
        if libcuda.cuCtxGetCurrent(ctypes.byref(ctx)) == 0 and ctx.value:
            return int(ctx.value)
    except OSError:
        pass
    return 0


def _current_stream(device: torch.device) -> Any:
    """torch's current CUDA stream on ``device``: where our conversion and copies run."""
    return torch.cuda.current_stream(device)


def _create_decoder(nvc: Any, gpu_id: int, codec: str, width: int, height: int) -> _PooledDecoder:
    max_w, max_h = max(width, _MIN_MAX_WIDTH), max(height, _MIN_MAX_HEIGHT)
    nv_codec = getattr(nvc.cudaVideoCodec, _NVC_CODECS[codec])
    kwargs = dict(
        gpuid=gpu_id,
        codec=nv_codec,
        usedevicememory=True,
        maxwidth=max_w,
        maxheight=max_h,
        outputColorType=nvc.OutputColorType.NATIVE,
    )
    with torch.cuda.device(gpu_id):
        torch.cuda.init()
        torch.cuda.current_stream().synchronize()  # makes torch's primary context current
        stream = torch.cuda.Stream(device=gpu_id)
        ctx = _current_cuda_context()
        errors = []
        # Preferred: decode on a stream we own in torch's context, so each
        # stream can wait on the other; fall back to the library's own stream.
        for extra, s in (({"cudacontext": ctx, "cudastream": stream.cuda_stream}, stream), ({}, None)):
            if extra and not ctx:
                continue
            try:
                dec = nvc.CreateDecoder(**kwargs, **extra)
            except Exception as e:  # PyNvVCExceptionUnsupported, RuntimeError...
                errors.append(f"{type(e).__name__}: {e}")
                continue
            return _PooledDecoder(dec, max_w, max_h, s)
    raise BackendUnavailableError(
        f"NVDEC could not create a {codec} decoder for {width}x{height} on GPU {gpu_id}: "
        f"{'; '.join(errors)}. The GPU may not support this codec/size; use backend='cpu'."
    )


def _acquire(
    nvc: Any, gpu_id: int, codec: str, fmt: StreamFormat, width: int, height: int
) -> tuple[tuple, _PooledDecoder]:
    """An idle pooled decoder large enough for ``width x height``, or a new one.

    A reused decoder is not reconfigured: ``setReconfigParams`` sets a *resize
    target*, so it would scale this stream to the index's sample-entry size
    while a fresh decoder outputs the stream's coded display size. NVDEC
    reconfigures to the new sequence by itself (within its maximum size);
    chroma format and bit depth are part of the pool key because that
    reconfiguration cannot change them.
    """
    key = (os.getpid(), gpu_id, codec, fmt.chroma, fmt.bit_depth)
    entry: _PooledDecoder | None = None
    with _POOL.lock:
        idle = _POOL.idle.get(key, [])
        for i, candidate in enumerate(idle):
            if width <= candidate.max_width and height <= candidate.max_height:
                entry = idle.pop(i)
                break
    if entry is None:
        entry = _create_decoder(nvc, gpu_id, codec, width, height)
    return key, entry


def _release(key: tuple, entry: _PooledDecoder) -> None:
    if key[0] != os.getpid():
        return
    with _POOL.lock:
        idle = _POOL.idle.setdefault(key, [])
        if len(idle) < _POOL.max_idle_per_key:
            idle.append(entry)


# ----------------------------------------------------------------------------- frames


class _NvSurface:
    """A decoded surface: a view into the decoder's pool until detached."""

    __slots__ = ("tensor", "high_bit_depth", "owned", "__weakref__")

    def __init__(self, tensor: torch.Tensor, high_bit_depth: bool) -> None:
        self.tensor = tensor
        self.high_bit_depth = high_bit_depth
        self.owned = False

    def detach(self) -> None:
        """Copy out of the decoder's pool (before the decoder reuses the buffer)."""
        if not self.owned:
            self.tensor = self.tensor.clone()
            self.owned = True


def _frame_pts(frame: Any) -> int | None:
    for name in ("getPTS", "timestamp"):
        v = getattr(frame, name, None)
        if v is None:
            continue
        try:
            return int(v() if callable(v) else v)
        except Exception:
            continue
    return None


def _check_surface(tensor: torch.Tensor, fmt: str) -> None:
    """Refuse a surface whose shape or strides cannot be a semi-planar picture.

    PyNvVideoCodec before 2.2.4 exported 16-bit surfaces with strides in
    bytes instead of elements: read as given, every row after the first is
    someone else's memory. Checked for every frame, since the probe cannot
    see a wheel that misreports its version.

    Raises:
        BackendUnavailableError: the surface is not ``rows x pitch`` with unit
            column stride and a row stride of at least the row length.
    """
    shape, strides = tuple(int(x) for x in tensor.shape), tuple(int(x) for x in tensor.stride())
    ok = len(shape) == 2 and shape[0] >= 2 and shape[1] >= 1 and strides[1] == 1 and strides[0] >= shape[1]
    if not ok:
        raise BackendUnavailableError(
            f"PyNvVideoCodec returned a {fmt or '?'} surface of shape {shape} with strides {strides} (in "
            f"elements; expected rows x pitch with strides (>= pitch, 1)). Versions before 2.2.4 report 16-bit "
            f"strides in bytes and scramble 10-bit frames: pip install -U 'pynvvideocodec>=2.2.4,<3', or use "
            f"backend='cpu'."
        )


def _is_high_bit_depth(frame: Any, tensor: torch.Tensor, stream_bit_depth: int) -> bool:
    fmt = str(getattr(frame, "format", "") or "").upper()
    if "444" in fmt or "NV16" in fmt or "P216" in fmt:
        raise UnsupportedFormatError(
            f"NVDEC returned a {fmt} surface; the nvdec backend converts 4:2:0 (NV12/P016) only. Use backend='cpu'."
        )
    if tensor.dtype in (torch.int16, torch.uint16):
        return True
    return "P016" in fmt or "P010" in fmt or "16" in fmt or stream_bit_depth > 8


# ---------------------------------------------------------------------------- backend


class NvdecDecoder(DecoderBackend):
    """NVIDIA hardware decoding through PyNvVideoCodec; output CUDA tensors.

    Args:
        config: codec, extradata and size from the index.
        output: output size, crops (cut from the decoded planes on the GPU,
            see :mod:`._colour`); ``device`` picks the GPU (``"cuda"``/``"cuda:N"``;
            anything else means the current CUDA device). The conversion always
            interpolates chroma at full resolution (it converts before it
            scales), so ``full_chroma`` changes nothing here.
        chroma: chroma upsampling for the YUV -> RGB step (see :mod:`._colour`).
        reuse_decoders: take the hardware decoder from the per-process pool
            and give it back on :meth:`close`.

    Raises:
        BackendUnavailableError: no CUDA, no PyNvVideoCodec, or NVDEC does not
            take this stream (codec, chroma format, bit depth or size; the
            message says which).
    """

    name = "nvdec"
    supports_crop = True
    output_device_type: ClassVar[str] = "cuda"
    """Frames come back on a CUDA device: ``backend="auto"`` picks this backend
    only when frames are asked for on CUDA (see ``select_backend``)."""

    def __init__(
        self,
        config: StreamConfig,
        *,
        output: OutputSpec = OutputSpec(),
        chroma: ChromaMode = "nearest",
        reuse_decoders: bool = True,
    ) -> None:
        super().__init__(config, output=output)
        if config.codec not in _NVC_CODECS:
            raise BackendUnavailableError(
                f"nvdec does not decode {config.codec!r} (it decodes {', '.join(sorted(_NVC_CODECS))}); "
                f"use backend='cpu' or 'auto'"
            )
        self._nvc = import_pynvvideocodec()
        if not torch.cuda.is_available():
            raise BackendUnavailableError("nvdec needs a CUDA GPU visible to torch; use backend='cpu' or 'auto'")
        self.device = _cuda_device(output.device)
        ok, why = check_stream(config, self.device.index or 0)
        if not ok:
            raise BackendUnavailableError(f"nvdec cannot decode this stream: {why}; use backend='cpu' or 'auto'")
        self._format = stream_format(config)
        self._chroma = chroma
        self._reuse = reuse_decoders
        self._converter = stream_converter(config.codec, config.extradata, temporal_delimiters=True)
        self._colour: ColourInfo | None = None
        self._bit_depth = max(int(config.bit_depth or 8), self._format.bit_depth)
        self._key: tuple | None = None
        self._entry: _PooledDecoder | None = None
        self._live: list[weakref.ref[_NvSurface]] = []
        self._pending_pts: list[int] = []
        self._dirty = False
        self._warned_pts = False
        self._pix_fmt: str | None = None

    @classmethod
    def create(cls, config: StreamConfig, output: OutputSpec, *, num_threads: int = 0) -> DecoderBackend:
        """Frames are decoded on the GPU: a CPU ``output.device`` becomes ``"cuda"``; ``num_threads`` is ignored."""
        if not str(output.device).startswith("cuda"):
            output = dataclasses.replace(output, device="cuda")
        return cls(config, output=output)

    @classmethod
    def stream_supported(cls, config: StreamConfig, output: OutputSpec | None = None) -> tuple[bool, str]:
        """:func:`check_stream` on the GPU ``output.device`` names; what ``select_backend`` asks before choosing."""
        device = output.device if output is not None else "cuda"
        try:
            index = _cuda_device(device).index or 0
        except Exception as e:
            return False, f"cannot pick a GPU for device {device!r}: {e}"
        return check_stream(config, index)

    def pixel_format(self) -> str | None:
        """``nv12``, or ``p010le``/``p016le`` for high bit depth: the surfaces NVDEC returns."""
        return self._pix_fmt

    # -- decoder lifetime ---------------------------------------------------------------

    def _decoder(self) -> _PooledDecoder:
        if self._entry is None:
            c = self.config
            index = self.device.index or 0
            if self._reuse:
                self._key, self._entry = _acquire(self._nvc, index, c.codec, self._format, c.width, c.height)
            else:
                self._entry = _create_decoder(self._nvc, index, c.codec, c.width, c.height)
        return self._entry

    def close(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        try:
            if self._dirty:
                self._drain(entry)
            self._detach_live(entry)
        except Exception:
            return  # a decoder that failed to drain is not given back
        if self._reuse and self._key is not None:
            _release(self._key, entry)

    # -- packets in, frames out ---------------------------------------------------------

    def _detach_live(self, entry: _PooledDecoder | None = None) -> None:
        live, self._live = self._live, []
        surfaces = [s for s in (ref() for ref in live) if s is not None and not s.owned]
        if surfaces:
            self._torch_waits_for_decoder(entry or self._entry)
            for s in surfaces:
                s.detach()

    def _torch_waits_for_decoder(self, entry: _PooledDecoder | None) -> None:
        """Work queued next on torch's stream (conversion, copies) starts after the decoder wrote its frames."""
        if entry is not None and entry.stream is not None:
            _current_stream(self.device).wait_stream(entry.stream)

    def _decoder_waits_for_torch(self, entry: _PooledDecoder) -> None:
        """The next ``Decode`` overwrites the decoder's output buffers only after torch's queued
        work (conversions and copies reading them) is done. Without a stream of ours to
        order, torch's stream is synchronised instead."""
        current = _current_stream(self.device)
        if entry.stream is not None:
            entry.stream.wait_stream(current)
        else:
            current.synchronize()

    def _decode(self, entry: _PooledDecoder, data: bytes, pts: int | None) -> list[Any]:
        nvc = self._nvc
        pkt = nvc.PacketData()
        buf = np.frombuffer(data, dtype=np.uint8) if data else None
        # ``buf`` must outlive Decode: the packet only holds its address.
        pkt.bsl_data = int(buf.ctypes.data) if buf is not None else 0
        pkt.bsl = int(buf.size) if buf is not None else 0
        if pts is not None:
            pkt.pts = int(pts)
        self._decoder_waits_for_torch(entry)
        try:
            frames = entry.decoder.Decode(pkt)
        except Exception as e:
            where = "while flushing" if buf is None else f"at packet pts={pts}"
            raise CorruptVideoError(f"NVDEC {self.config.codec} decode failed {where}: {e}") from e
        del buf
        return list(frames or [])

    def _wrap(self, frames: list[Any]) -> list[DecodedFrame]:
        out = []
        for f in frames:
            tensor = torch.from_dlpack(f)
            _check_surface(tensor, str(getattr(f, "format", "") or ""))
            surface = _NvSurface(tensor, _is_high_bit_depth(f, tensor, self._bit_depth))
            self._pix_fmt = "nv12" if not surface.high_bit_depth else ("p010le" if self._bit_depth <= 10 else "p016le")
            self._live.append(weakref.ref(surface))
            out.append(DecodedFrame(pts=self._map_pts(_frame_pts(f)), handle=surface))
        return out

    def _map_pts(self, pts: int | None) -> int:
        """Keep the parser's pts when it is one we fed; otherwise (a parser that
        loses timestamps) take the smallest pts not yet output, which is the
        next frame in display order within a group that starts at a sync sample."""
        if pts is not None and pts in self._pending_pts:
            self._pending_pts.remove(pts)
            return pts
        if not self._pending_pts:
            return pts if pts is not None else -(2**62)
        if not self._warned_pts:
            warnings.warn(
                f"NVDEC returned a frame with pts={pts}, which was not fed; mapping frames to pts by display order",
                RuntimeWarning,
                stacklevel=3,
            )
            self._warned_pts = True
        return self._pending_pts.pop(0)

    def send(self, packet: Packet) -> list[DecodedFrame]:
        entry = self._decoder()
        self._detach_live()
        if packet.is_sync and (self._colour is None or self.config.codec in ("h264", "hevc", "vp9")):
            info = stream_colour_info(self.config.codec, self.config.extradata, packet.data)
            if self._colour is None or info != ColourInfo() or self.config.codec == "vp9":
                self._colour = info
        data = self._converter.convert(packet.data, is_sync=packet.is_sync)
        self._pending_pts.append(int(packet.pts))
        self._pending_pts.sort()
        self._dirty = True
        return self._wrap(self._decode(entry, data, packet.pts))

    def _drain(self, entry: _PooledDecoder) -> list[Any]:
        frames = self._decode(entry, b"", None)
        self._dirty = False
        return frames

    def flush(self) -> list[DecodedFrame]:
        if self._entry is None or not self._dirty:
            return []
        self._detach_live()
        frames = self._wrap(self._drain(self._entry))
        self._pending_pts.clear()
        return frames

    def convert(self, frame: DecodedFrame) -> torch.Tensor:
        surface: _NvSurface = frame.handle
        if not surface.owned:
            self._torch_waits_for_decoder(self._entry)
        colour = self._colour or ColourInfo()
        t = surface.tensor
        # Plane offsets come from the surface's own shape (odd heights export
        # floor(H * 1.5) rows); the picture is the config size, cropped to the
        # surface if the index's (tkhd) size is larger than what was decoded.
        luma_rows = surface_luma_rows(int(t.shape[0]))
        pitch = int(t.shape[1]) // (2 if surface.high_bit_depth and t.dtype == torch.uint8 else 1)
        h = min(self.config.height or luma_rows, luma_rows)
        w = min(self.config.width or pitch, pitch)
        o = self.output
        crop = o.crop if o.crop is not None and o.crop != (0, 0, h, w) else None
        src_h, src_w = (crop[2], crop[3]) if crop is not None else (h, w)
        size: tuple[int, int] | None = None
        if o.height is not None and o.width is not None:
            size = (o.height, o.width)
        elif o.height is not None:
            size = (o.height, round(src_w * o.height / src_h))
        elif o.width is not None:
            size = (round(src_h * o.width / src_w), o.width)
        # The crop cuts the planes before conversion (grown to the chroma grid,
        # an odd edge cut exactly from the RGB result), so only the window is
        # converted, and the resize runs in the same pass, all on the GPU.
        if surface.high_bit_depth:
            rgb = p010_to_rgb(
                t,
                height=h,
                width=w,
                bit_depth=max(colour.bit_depth, self._bit_depth, 10),
                matrix=colour.matrix,
                full_range=colour.full_range,
                size=size,
                chroma=self._chroma,
                crop=crop,
            )
        else:
            rgb = nv12_to_rgb(
                t,
                height=h,
                width=w,
                matrix=colour.matrix,
                full_range=colour.full_range,
                size=size,
                chroma=self._chroma,
                crop=crop,
            )
        if o.post_crop is not None:
            top, left, ch, cw = o.post_crop
            if top + ch > rgb.shape[1] or left + cw > rgb.shape[2]:
                raise ValueError(f"post_crop {o.post_crop} does not fit in a {rgb.shape[1]}x{rgb.shape[2]} frame")
            rgb = rgb[:, top : top + ch, left : left + cw].contiguous()
        return rgb


def _cuda_device(device: str) -> torch.device:
    """``"cuda"``/``"cuda:N"`` -> that CUDA device (index filled in); anything else -> the current CUDA device."""
    d = torch.device(device) if str(device).startswith("cuda") else torch.device("cuda")
    return torch.device("cuda", d.index if d.index is not None else torch.cuda.current_device())
