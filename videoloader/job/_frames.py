"""Which frames the job takes from a video, and how decoded frames are written out as PNG.

The choice uses the data package's :class:`~videoloader.data.RandomFrames`
(distinct frames, uniform over the first ``offset_max_seconds``), so the job
and a training dataset draw frames the same way. PNGs are encoded with PyAV
(a core dependency): lossless, so a saved frame equals the decoded one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from ..data import RandomFrames

__all__ = ["choose_frames", "encode_png", "frame_sampler", "save_frame_pngs", "without_pngs"]


def frame_sampler(frames_per_video: int, offset_max_seconds: float | None) -> RandomFrames:
    """The sampler of ``frames_per_video`` distinct frames from the first ``offset_max_seconds``."""
    return RandomFrames(frames_per_video, offset_max_seconds=offset_max_seconds)


def choose_frames(sampler: RandomFrames, video: Any, rng: np.random.Generator) -> list[int]:
    """Up to ``sampler.num_frames`` distinct frames from the sampler's window, in time order.

    A window holding fewer frames than asked gives each of its frames once
    (never a frame repeated to make up the count); the caller reports how many.
    With enough frames the draw is exactly ``sampler(video, rng)``.
    """
    window = sampler.window(video)
    if window.num_frames < sampler.num_frames:
        sampler = dataclasses.replace(sampler, num_frames=window.num_frames)
    return [int(i) for i in sampler.choose(video, window, rng)]


def encode_png(frame_chw: torch.Tensor) -> bytes:
    """Lossless PNG of one uint8 ``3 x H x W`` RGB frame (on any device)."""
    arr = np.ascontiguousarray(frame_chw.detach().to("cpu").permute(1, 2, 0).numpy())
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = arr.shape[1], arr.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def save_frame_pngs(result: Mapping[str, Any], directory: str | Path, *, digits: int = 4) -> dict[int, list[Path]]:
    """Write each video's ``frame_png_bytes_list`` as ``video{index}_frame{frame}.png`` files.

    Args:
        result: a ``run_inference`` result made with ``return_frame_png=True``.
        directory: where the files go (created when there is a frame to write).
        digits: zero-padded width of the video index in the file names.

    Returns:
        The written paths, per video index, in frame order.
    """
    directory = Path(directory)
    saved: dict[int, list[Path]] = {}
    for v in result["videos"]:
        for frame, png in zip(v.get("selected_frame_indices", []), v.get("frame_png_bytes_list") or [], strict=False):
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"video{v['index']:0{digits}d}_frame{frame:06d}.png"
            path.write_bytes(png)
            saved.setdefault(v["index"], []).append(path)
    return saved


def without_pngs(result: Mapping[str, Any], saved: Mapping[int, Sequence[str]]) -> dict[str, Any]:
    """The result without PNG bytes (not JSON), each video listing its saved files as ``frame_png_paths``."""
    out = {k: v for k, v in result.items() if k != "frame_png_bytes_list"}
    videos = []
    for v in result["videos"]:
        v = {k: val for k, val in v.items() if k != "frame_png_bytes_list"}
        if v["index"] in saved:
            v["frame_png_paths"] = list(saved[v["index"]])
        videos.append(v)
    out["videos"] = videos
    return out
