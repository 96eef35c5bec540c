"""NVDEC backend: PyNvVideoCodec 2.x fed our own packets, frames stay on the GPU.

Flow per packet::

    MP4 sample --AnnexBConverter--> Annex-B / OBUs --PacketData--> Decoder.Decode
      -> 0..n DecodedFrame (display order, pts carried through the parser)
      -> torch.from_dlpack: NV12 ``H*3/2 x W`` uint8 (P016 for 10-bit), CUDA
      -> _colour: RGB uint8 3 x H x W on the same GPU (resize there too)

Decoders are expensive to create (tens of ms, a hardware session each), so one
per (process, GPU, codec, bit depth) is kept in a small pool and reused by the
next reader; its maximum size grows when a larger video comes along.

PyNvVideoCodec's frame buffers come from a pool the decoder reuses, so a frame
returned by :meth:`NvdecDecoder.send` is copied out before the next
``Decode`` call if anyone still holds it (the reader's ``decode_group``
converts wanted frames immediately, so normally nothing is copied).

API names (PyNvVideoCodec 2.2.4, read from its wheel): ``CreateDecoder(gpuid,
codec, cudacontext, cudastream, usedevicememory, maxwidth, maxheight,
outputColorType)``, ``cudaVideoCodec.{H264,HEVC,AV1,VP9}``,
``OutputColorType.NATIVE``, ``PacketData`` (``bsl_data`` pointer, ``bsl``
length, ``pts``), ``Decode(packet) -> list[DecodedFrame]``, ``bsl = 0``
flushes, ``DecodedFrame.getPTS()`` / ``.timestamp``, ``.format``,
``__dlpack__``, ``setReconfigParams(width, height)``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._errors import BackendUnavailableError, CorruptVideoError, MissingDependencyError, UnsupportedFormatError
from .._optional import require
from ..codecs import ColourInfo, stream_colour_info, stream_converter
from ._base import BackendSpec, DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig
from ._colour import ChromaMode, nv12_to_rgb, p010_to_rgb

__all__ = ["SPEC", "NvdecDecoder", "clear_decoder_pool", "import_pynvvideocodec", "probe"]

_NVC_CODECS = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9"}
_DRIVER_HINT = "in containers set NVIDIA_DRIVER_CAPABILITIES=compute,utility,video"

SPEC = BackendSpec(
    name="nvdec",
    factory=f"{__name__}:NvdecDecoder",
    probe=f"{__name__}:probe",
    codecs=frozenset(_NVC_CODECS),
    install_hint=(
        f"pip install videoloader[nvdec] (PyNvVideoCodec) on a machine with an NVIDIA GPU and driver; {_DRIVER_HINT}"
    ),
    priority=20,
)
"""NVIDIA's hardware decoder; frames stay on the GPU."""
# Smallest decoder surface we create: a 1080p decoder then serves every
# smaller video without being recreated (setReconfigParams only shrinks).
_MIN_MAX_WIDTH, _MIN_MAX_HEIGHT = 1920, 1088


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
    return True, f"PyNvVideoCodec {getattr(nvc, '__version__', '?')} on {torch.cuda.get_device_name(0)}"


# --------------------------------------------------------------------------- decoder pool


@dataclass(eq=False)
class _PooledDecoder:
    decoder: Any
    max_width: int
    max_height: int
    width: int
    height: int
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
        # Preferred: decode on a stream we own in torch's context, so our
        # kernels can wait on it; fall back to the library's own stream.
        for extra, s in (({"cudacontext": ctx, "cudastream": stream.cuda_stream}, stream), ({}, None)):
            if extra and not ctx:
                continue
            try:
                dec = nvc.CreateDecoder(**kwargs, **extra)
            except Exception as e:  # PyNvVCExceptionUnsupported, RuntimeError...
                errors.append(f"{type(e).__name__}: {e}")
                continue
            return _PooledDecoder(dec, max_w, max_h, width, height, s)
    raise BackendUnavailableError(
        f"NVDEC could not create a {codec} decoder for {width}x{height} on GPU {gpu_id}: "
        f"{'; '.join(errors)}. The GPU may not support this codec/size; use backend='cpu'."
    )


def _acquire(
    nvc: Any, gpu_id: int, codec: str, bit_depth: int, width: int, height: int
) -> tuple[tuple, _PooledDecoder]:
    key = (os.getpid(), gpu_id, codec, bit_depth)
    with _POOL.lock:
        idle = _POOL.idle.get(key, [])
        for i, entry in enumerate(idle):
            if width <= entry.max_width and height <= entry.max_height:
                del idle[i]
                break
        else:
            entry = None
    if entry is not None and (entry.width, entry.height) != (width, height):
        try:
            entry.decoder.setReconfigParams(width, height)
            entry.width, entry.height = width, height
        except Exception:
            entry = None  # not reconfigurable: make a fresh one
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
        output: output size; ``device`` picks the GPU (``"cuda"``/``"cuda:N"``;
            anything else means the current CUDA device).
        chroma: chroma upsampling for the YUV -> RGB step (see :mod:`._colour`).
        reuse_decoders: take the hardware decoder from the per-process pool
            and give it back on :meth:`close`.

    Raises:
        BackendUnavailableError: no CUDA, no PyNvVideoCodec, or the codec is
            not one NVDEC decodes.
    """

    name = "nvdec"

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
        device = torch.device(output.device) if str(output.device).startswith("cuda") else torch.device("cuda")
        self.device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        self._chroma = chroma
        self._reuse = reuse_decoders
        self._converter = stream_converter(config.codec, config.extradata, temporal_delimiters=True)
        self._colour: ColourInfo | None = None
        self._bit_depth = int(config.bit_depth or 8)
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

    def pixel_format(self) -> str | None:
        """``nv12``, or ``p010le``/``p016le`` for high bit depth: the surfaces NVDEC returns."""
        return self._pix_fmt

    # -- decoder lifetime ---------------------------------------------------------------

    def _decoder(self) -> _PooledDecoder:
        if self._entry is None:
            if self._reuse:
                c = self.config
                self._key, self._entry = _acquire(
                    self._nvc, self.device.index, c.codec, self._bit_depth, c.width, c.height
                )
            else:
                self._entry = _create_decoder(
                    self._nvc, self.device.index, self.config.codec, self.config.width, self.config.height
                )
        return self._entry

    def close(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        try:
            if self._dirty:
                self._drain(entry)
            self._detach_live()
        except Exception:
            return  # a decoder that failed to drain is not given back
        if self._reuse and self._key is not None:
            _release(self._key, entry)

    # -- packets in, frames out ---------------------------------------------------------

    def _detach_live(self) -> None:
        live, self._live = self._live, []
        surfaces = [s for s in (ref() for ref in live) if s is not None and not s.owned]
        if surfaces:
            self._wait_decoder_stream()
            for s in surfaces:
                s.detach()

    def _wait_decoder_stream(self) -> None:
        entry = self._entry
        if entry is not None and entry.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(entry.stream)

    def _decode(self, entry: _PooledDecoder, data: bytes, pts: int | None) -> list[Any]:
        nvc = self._nvc
        pkt = nvc.PacketData()
        buf = np.frombuffer(data, dtype=np.uint8) if data else None
        # ``buf`` must outlive Decode: the packet only holds its address.
        pkt.bsl_data = int(buf.ctypes.data) if buf is not None else 0
        pkt.bsl = int(buf.size) if buf is not None else 0
        if pts is not None:
            pkt.pts = int(pts)
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
            self._wait_decoder_stream()
        colour = self._colour or ColourInfo()
        t = surface.tensor
        # The picture is the config size, cropped to the surface if the index's
        # (tkhd) size is larger than what the decoder produced.
        rows = int(t.shape[0])
        pitch = int(t.shape[1]) // (2 if surface.high_bit_depth and t.dtype == torch.uint8 else 1)
        h = min(self.config.height or rows, (2 * rows) // 3)
        w = min(self.config.width or pitch, pitch)
        out_h, out_w = self.output.height, self.output.width
        size: tuple[int, int] | None = None
        if out_h is not None and out_w is not None:
            size = (out_h, out_w)
        elif out_h is not None:
            size = (out_h, round(w * out_h / h))
        elif out_w is not None:
            size = (round(h * out_w / w), out_w)
        if surface.high_bit_depth:
            return p010_to_rgb(
                t,
                height=h,
                width=w,
                bit_depth=max(colour.bit_depth, self._bit_depth, 10),
                matrix=colour.matrix,
                full_range=colour.full_range,
                size=size,
                chroma=self._chroma,
            )
        return nv12_to_rgb(
            t, height=h, width=w, matrix=colour.matrix, full_range=colour.full_range, size=size, chroma=self._chroma
        )
