"""What ``videoloader inspect`` and ``videoloader info`` report: a video's index and plans, the platform.

Nothing here decodes: :func:`inspect_video` reads only the index (or the
demux packet table) and asks the reader which byte ranges a few frames would
need; :func:`collect_info` asks torch and the decoder registry what this
machine can do.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import __version__
from .._reader import VideoReader
from ..decoders import platform_info

__all__ = ["OPTIONAL_MODULES", "collect_info", "inspect_video"]

OPTIONAL_MODULES = ("av", "torchvision", "PyNvVideoCodec", "torchdata", "wandb", "modal", "torchcodec", "decord")
"""Modules whose presence ``collect_info`` reports (found, not imported)."""


def _gop_lengths(is_sync: Any) -> list[int]:
    sync = np.flatnonzero(np.asarray(is_sync))
    if len(sync) == 0:
        return []
    return [int(n) for n in np.diff(np.append(sync, len(is_sync)))]


def inspect_video(
    url: str,
    *,
    frames: Sequence[int] | None = None,
    backend: str = "cpu",
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metadata, access path, index summary and the byte ranges planned for a few frames.

    Args:
        url: the video (URL or local path).
        frames: frames to plan (default: first, middle and last).
        backend: decoder backend the reader would use.
        storage_options: fsspec options for the URL's filesystem.

    Returns:
        A JSON-ready dict: ``url`` (redacted), ``metadata``, ``access_path``,
        ``backend``, ``file_size_bytes``, ``index`` (None on the demux path),
        ``plans`` and ``transfer`` (the bytes read so far).
    """
    with VideoReader(url, backend=backend, storage_options=storage_options) as reader:
        m = reader.metadata
        info: dict[str, Any] = {
            "url": reader.url,
            "metadata": {
                "num_frames": m.num_frames,
                "fps": m.fps,
                "duration_seconds": m.duration_seconds,
                "begin_stream_seconds": m.begin_stream_seconds,
                "width": m.width,
                "height": m.height,
                "codec": m.codec,
                "pixel_format": m.pixel_format,
                "bit_depth": m.bit_depth,
                "rotation": m.rotation,
                "container": m.container,
            },
            "access_path": m.access_path,
            "backend": reader.backend,
        }
        idx = reader.index
        size = getattr(idx, "file_size", None) if idx is not None else None
        info["file_size_bytes"] = size
        if idx is not None:
            gops = _gop_lengths(idx.is_sync)
            info["index"] = {
                "num_samples": idx.num_samples,
                "num_keyframes": int(idx.is_sync.sum()),
                "fragmented": bool(idx.fragmented),
                "timescale": idx.timescale,
                "sample_entry": idx.sample_entry,
                "gop_length_min": min(gops) if gops else None,
                "gop_length_max": max(gops) if gops else None,
                "gop_length_mean": (sum(gops) / len(gops)) if gops else None,
                "index_nbytes": idx.index_nbytes,
                "index_requests": idx.index_requests,
                "samples_nbytes": int(idx.sizes.sum()),
            }
            n = m.num_frames
            picks = list(frames) if frames else sorted({0, n // 2, n - 1}) if n else []
            planned = []
            for f in picks:
                plan = reader.plan([f])
                planned.append(
                    {
                        "frame": f,
                        "samples": [plan.groups[0].first_sample, plan.groups[0].last_sample],
                        "ranges": [[r.start, r.stop] for r in plan.ranges],
                        "nbytes": plan.nbytes,
                        "fraction_of_file": (plan.nbytes / size) if size else None,
                    }
                )
            info["plans"] = planned
        else:
            info["index"] = None
            info["plans"] = []
            info["note"] = "demux fallback: PyAV reads the container; no byte-range plan"
        info["transfer"] = reader.transfer_stats.as_dict()
    return info


def collect_info() -> dict[str, Any]:
    """Platform, torch/CUDA, optional modules and decoder availability (``platform_info``)."""
    info: dict[str, Any] = {
        "videoloader_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    info["optional_modules"] = {mod: importlib.util.find_spec(mod) is not None for mod in OPTIONAL_MODULES}
    try:
        info["decoders"] = platform_info()
    except Exception as e:  # a probe that breaks must not take `videoloader info` down with it
        info["decoders"] = {"error": f"{type(e).__name__}: {e}"}
    return info
