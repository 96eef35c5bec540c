"""Decoder backends by name, imported on first use, and ``backend="auto"``.

Backends are registered as ``"module:Class"`` plus an install hint (STYLE.md
rule 2), so ``import videoloader`` never imports PyAV, torch.cuda or
PyNvVideoCodec. Whether a backend can run here is probed once per process
(:func:`backend_availability`); tests fake it by monkeypatching
:func:`probe_backend` (or by passing ``availability=`` to :func:`resolve_backend`).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from ._base import DecoderBackend

__all__ = [
    "BACKENDS",
    "BackendSpec",
    "backend_availability",
    "codec_supported",
    "get_backend_class",
    "platform_info",
    "probe_backend",
    "resolve_backend",
]


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and how to get it installed."""

    name: str
    target: str
    """``"module:Class"``, imported on first use."""
    install_hint: str
    """What to run (or need) so the backend works."""
    codecs: frozenset[str]
    """Codec families the backend can decode (hardware ones: what the chip can)."""


BACKENDS: dict[str, BackendSpec] = {
    "cpu": BackendSpec(
        "cpu",
        "videoloader.decoders._pyav:PyAVDecoder",
        "pip install av",
        frozenset({"h264", "hevc", "av1", "vp9", "vp8", "mpeg4", "mpeg2video", "mjpeg", "prores"}),
    ),
    "nvdec": BackendSpec(
        "nvdec",
        "videoloader.decoders._nvdec:NvdecDecoder",
        "pip install videoloader[nvdec] (PyNvVideoCodec) on a machine with an NVIDIA GPU and driver; in containers "
        "set NVIDIA_DRIVER_CAPABILITIES=compute,utility,video",
        frozenset({"h264", "hevc", "av1", "vp9"}),
    ),
    "videotoolbox": BackendSpec(
        "videotoolbox",
        "videoloader.decoders._videotoolbox:VideoToolboxDecoder",
        "use macOS with a PyAV build that has VideoToolbox (the PyPI wheels for macOS do)",
        frozenset({"h264", "hevc", "av1"}),
    ),
}

_AUTO_ORDER = ("nvdec", "videotoolbox", "cpu")


def get_backend_class(name: str) -> type["DecoderBackend"]:
    """Import and return the backend class registered under ``name``.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the backend's module or its dependency is
            missing (the message says what to install).
    """
    spec = BACKENDS.get(name)
    if spec is None:
        raise ValueError(f"unknown decoder backend {name!r}; expected one of {sorted(BACKENDS)} or 'auto'")
    module_name, _, class_name = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailableError(
            f"decoder backend {name!r} cannot be imported ({e}); fix: {spec.install_hint}"
        ) from e
    return getattr(module, class_name)


# ------------------------------------------------------------------------------- probes


def _probe_cpu() -> tuple[bool, str]:
    try:
        import av  # noqa: F401
    except Exception as e:  # pragma: no cover - PyAV is a hard dependency
        return False, f"PyAV is not importable: {e}"
    return True, f"PyAV {getattr(av, '__version__', '?')}"


def _probe_nvdec() -> tuple[bool, str]:
    try:
        import torch
    except Exception as e:
        return False, f"torch is not importable: {e}"
    try:
        cuda_ok = torch.cuda.is_available()
    except Exception as e:  # a broken driver can raise here
        return False, f"torch.cuda.is_available() failed: {e}"
    if not cuda_ok:
        return False, f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        ctypes.CDLL("libnvcuvid.so.1")
    except OSError as e:
        return False, (
            f"the NVIDIA video decode library libnvcuvid.so.1 is not loadable ({e}); in a container set "
            f"NVIDIA_DRIVER_CAPABILITIES=compute,utility,video"
        )
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError as e:
        return False, f"PyNvVideoCodec is not installed ({e})"
    except Exception as e:  # it raises RuntimeError when driver libraries are missing
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return False, f"PyNvVideoCodec failed to import: {first}"
    return True, f"PyNvVideoCodec {getattr(PyNvVideoCodec, '__version__', '?')} on {torch.cuda.get_device_name(0)}"


def _videotoolbox_codec_works(codec: str) -> tuple[bool, str]:
    """Decode one tiny keyframe with VideoToolbox; the only reliable per-codec probe."""
    try:
        from ._videotoolbox import probe_codec
    except Exception as e:
        return False, f"videotoolbox backend failed to import: {e}"
    return probe_codec(codec)


def _probe_videotoolbox() -> tuple[bool, str]:
    if sys.platform != "darwin":
        return False, f"VideoToolbox exists only on macOS (this is {platform.system() or sys.platform})"
    try:
        from av.codec.hwaccel import hwdevices_available
    except Exception as e:
        return False, f"this PyAV has no hardware acceleration support ({e})"
    try:
        devices = list(hwdevices_available())
    except Exception as e:
        return False, f"PyAV could not list hardware devices: {e}"
    if "videotoolbox" not in devices:
        return False, f"this PyAV/FFmpeg build has no VideoToolbox device (has: {devices or 'none'})"
    ok, why = _videotoolbox_codec_works("h264")
    return (True, "VideoToolbox via PyAV") if ok else (False, why)


_PROBES = {"cpu": _probe_cpu, "nvdec": _probe_nvdec, "videotoolbox": _probe_videotoolbox}


def probe_backend(name: str) -> tuple[bool, str]:
    """Probe one backend now (uncached). Tests monkeypatch this function.

    Returns:
        ``(available, reason)``; reason says what was found or what is missing.
    """
    probe = _PROBES.get(name)
    if probe is None:
        return False, f"unknown backend {name!r}"
    try:
        return probe()
    except Exception as e:  # a probe must never take the process down
        return False, f"probe failed: {type(e).__name__}: {e}"


@functools.lru_cache(maxsize=None)
def _cached(name: str) -> tuple[bool, str]:
    return probe_backend(name)


def backend_availability(*, refresh: bool = False) -> dict[str, tuple[bool, str]]:
    """``{name: (available, reason)}`` for every registered backend, probed once per process.

    Args:
        refresh: forget earlier probes (after installing a package, or in tests).
    """
    if refresh:
        _cached.cache_clear()
        _codec_cached.cache_clear()
    return {name: _cached(name) for name in BACKENDS}


@functools.lru_cache(maxsize=None)
def _codec_cached(name: str, codec: str) -> tuple[bool, str]:
    return codec_supported(name, codec)


def codec_supported(name: str, codec: str) -> tuple[bool, str]:
    """Whether an available backend decodes ``codec`` here. Tests may monkeypatch it."""
    spec = BACKENDS[name]
    if codec not in spec.codecs:
        return False, f"{name} does not decode {codec!r} (it decodes {', '.join(sorted(spec.codecs))})"
    if name == "videotoolbox" and codec != "h264":
        # AV1 needs an M3 or later; HEVC needs Apple Silicon or a recent Intel Mac.
        return _videotoolbox_codec_works(codec)
    return True, ""


def resolve_backend(
    name: str,
    codec: str,
    *,
    availability: Mapping[str, tuple[bool, str]] | None = None,
) -> str:
    """Pick the backend to decode ``codec`` with.

    ``"auto"`` takes NVDEC where it is available and supports the codec, then
    VideoToolbox on macOS where it decodes the codec, else the CPU. An
    explicitly named backend must be available.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"nvdec"`` or ``"videotoolbox"``.
        codec: FFmpeg codec family (``h264``, ``hevc``, ``av1``, ``vp9``...).
        availability: override of :func:`backend_availability` (tests).

    Returns:
        A registered backend name.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the named backend cannot run here, or cannot
            decode ``codec``; the message says why and how to fix it.
    """
    avail = dict(availability) if availability is not None else backend_availability()
    check = _codec_cached if availability is None else codec_supported
    if name == "auto":
        for candidate in _AUTO_ORDER:
            ok, _ = avail.get(candidate, (False, ""))
            if ok and (candidate == "cpu" or check(candidate, codec)[0]):
                return candidate
        ok, why = avail.get("cpu", (False, "not probed"))
        raise BackendUnavailableError(
            f"no decoder backend can decode {codec!r} here: cpu is unavailable ({why}); "
            f"fix: {BACKENDS['cpu'].install_hint}"
        )
    spec = BACKENDS.get(name)
    if spec is None:
        raise ValueError(f"unknown decoder backend {name!r}; expected 'auto' or one of {sorted(BACKENDS)}")
    ok, why = avail.get(name, (False, "not probed"))
    if not ok:
        raise BackendUnavailableError(
            f"decoder backend {name!r} is unavailable: {why}. Fix: {spec.install_hint}; "
            f"or pass backend='auto' (or 'cpu') to decode on what this machine has."
        )
    if name != "cpu":
        ok, why = check(name, codec)
        if not ok:
            raise BackendUnavailableError(
                f"decoder backend {name!r} cannot decode {codec!r} here: {why}. "
                f"Pass backend='auto' or 'cpu' for this video."
            )
    return name


def platform_info() -> dict:
    """See :func:`videoloader.decoders._platform.platform_info` (re-exported here per the contract)."""
    from ._platform import platform_info as _platform_info

    return _platform_info()
