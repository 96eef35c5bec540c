"""``platform_info()``: what this machine can decode with, for bug reports,
benchmark JSON and the ``videoloader`` CLI.

Everything is probed defensively: a missing driver, ``nvidia-smi`` or library
gives ``None`` plus a reason, never an exception.
"""

from __future__ import annotations

import platform as _platform
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["platform_info"]


def _nvidia_smi() -> dict[str, str | None]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = (
            subprocess.run(
                [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.strip()
            .splitlines()
        )
    except Exception:
        return {}
    if not out:
        return {}
    name, _, driver = out[0].partition(",")
    return {"gpu_name": name.strip() or None, "driver_version": driver.strip() or None}


def _pynvml_driver() -> str | None:
    try:
        import pynvml
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def platform_info() -> dict[str, Any]:
    """Describe the decode platform.

    Returns:
        A JSON-serialisable dict with keys ``platform`` (``"cuda"``, ``"mac"``
        or ``"cpu"``), ``device`` (torch device string), ``gpu_name``,
        ``cuda_version``, ``driver_version``, ``torch_version``, ``python``,
        ``os``, ``machine``, ``pyav_version``, ``ffmpeg_versions``
        (``{"libavcodec": "62.28.102", ...}``), ``pynvvideocodec_version``,
        ``backends`` (``{name: {"available": bool, "reason": str}}``) and
        ``default_backend`` (what ``backend="auto"`` picks for H.264).
    """
    from ._registry import backend_availability, resolve_backend

    info: dict[str, Any] = {
        "platform": "cpu",
        "device": "cpu",
        "gpu_name": None,
        "cuda_version": None,
        "driver_version": None,
        "torch_version": None,
        "python": sys.version.split()[0],
        "os": f"{_platform.system()} {_platform.release()}",
        "machine": _platform.machine(),
        "pyav_version": None,
        "ffmpeg_versions": {},
        "pynvvideocodec_version": None,
    }
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["cuda_version"] = torch.version.cuda
        if torch.cuda.is_available():
            info["platform"] = "cuda"
            info["device"] = "cuda:0"
            info["gpu_name"] = torch.cuda.get_device_name(0)
        elif sys.platform == "darwin":
            info["platform"] = "mac"
            mps = getattr(torch.backends, "mps", None)
            info["device"] = "mps" if mps is not None and mps.is_available() else "cpu"
    except Exception:
        if sys.platform == "darwin":
            info["platform"] = "mac"
    if info["platform"] == "cuda":
        smi = _nvidia_smi()
        info["driver_version"] = smi.get("driver_version") or _pynvml_driver()
        info["gpu_name"] = info["gpu_name"] or smi.get("gpu_name")
    try:
        import av

        info["pyav_version"] = av.__version__
        info["ffmpeg_versions"] = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    except Exception:
        pass
    mod = sys.modules.get("PyNvVideoCodec")
    if mod is not None:
        info["pynvvideocodec_version"] = getattr(mod, "__version__", None)
    else:
        try:
            from importlib.metadata import version

            info["pynvvideocodec_version"] = version("pynvvideocodec")
        except Exception:
            pass
    avail = backend_availability()
    info["backends"] = {name: {"available": ok, "reason": why} for name, (ok, why) in avail.items()}
    try:
        info["default_backend"] = resolve_backend("auto", "h264", availability=avail)
    except Exception as e:
        info["default_backend"] = None
        info["default_backend_error"] = str(e)
    return info
