"""One torchcodec-style script, run against torchcodec and against videoloader.VideoDecoder.

``run(VideoDecoder, path)`` returns every answer the script gets (tensors,
floats, error names) as a plain dict that ``torch.save`` can write, so the
torchcodec side can run in a subprocess (it needs FFmpeg's plain-soname
libraries on ``LD_LIBRARY_PATH``) and both sides compare key by key.
"""

from __future__ import annotations

import sys
from typing import Any

import torch


def _error(fn: Any) -> str:
    try:
        fn()
    except Exception as e:  # the script records which error each misuse raises
        return type(e).__name__
    return "no error"


def run(decoder_cls: Any, path: str, transforms: list[Any] | None = None) -> dict[str, Any]:
    dec = decoder_cls(path, transforms=transforms) if transforms else decoder_cls(path)
    m = dec.metadata
    n = len(dec)
    out: dict[str, Any] = {"len": n}
    for name in (
        "num_frames",
        "average_fps",
        "begin_stream_seconds",
        "end_stream_seconds",
        "duration_seconds",
        "width",
        "height",
        "codec",
        "bit_rate",
        "rotation",
    ):
        out[f"meta.{name}"] = getattr(m, name)
    out["[0]"] = dec[0]
    out["[-1]"] = dec[-1]
    out["[n//2]"] = dec[n // 2]
    out["[1:5]"] = dec[1:5]
    out["[::7]"] = dec[::7]
    out["[-3:]"] = dec[-3:]
    out["iter"] = torch.stack([f for f in dec])
    f = dec.get_frame_at(3)
    out["frame_at(3)"] = (f.data, f.pts_seconds, f.duration_seconds)
    f = dec.get_frame_at(-1)
    out["frame_at(-1)"] = (f.data, f.pts_seconds, f.duration_seconds)
    b = dec.get_frames_at([5, 1, 5, n - 2])
    out["frames_at"] = (b.data, b.pts_seconds, b.duration_seconds)
    b = dec.get_frames_in_range(2, min(10, n), 3)
    out["frames_in_range"] = (b.data, b.pts_seconds, b.duration_seconds)
    begin, end = m.begin_stream_seconds, m.end_stream_seconds
    mid = begin + (end - begin) * 0.37
    f = dec.get_frame_played_at(mid)
    out["frame_played_at"] = (f.data, f.pts_seconds, f.duration_seconds)
    b = dec.get_frames_played_at([begin, mid, end - 1e-3])
    out["frames_played_at"] = (b.data, b.pts_seconds, b.duration_seconds)
    b = dec.get_frames_played_in_range(begin, min(end, begin + 0.3))
    out["frames_played_in_range"] = (b.data, b.pts_seconds, b.duration_seconds)
    b = dec.get_all_frames()
    out["all_frames"] = (b.data, b.pts_seconds, b.duration_seconds)
    out["err [n]"] = _error(lambda: dec[n])
    out["err [-n-1]"] = _error(lambda: dec[-n - 1])
    out["err frame_at(n)"] = _error(lambda: dec.get_frame_at(n))
    out["err played_at(end)"] = _error(lambda: dec.get_frame_played_at(end + 1.0))
    return out


def transform_pipelines(module: Any) -> dict[str, list[Any]]:
    """The same decode-time pipelines, built from torchcodec's or our transforms module."""
    return {
        "resize": [module.Resize((60, 80))],
        "resize_up": [module.Resize((200, 300))],
        "center_crop": [module.CenterCrop((64, 96))],
        "resize_then_crop": [module.Resize((90, 120)), module.CenterCrop((64, 64))],
        "crop_then_resize": [module.CenterCrop((96, 96)), module.Resize((48, 48))],
        "random_crop": [module.RandomCrop((50, 70))],
        "odd_center_crop": [module.CenterCrop((63, 95))],
    }


def run_transforms(decoder_cls: Any, module: Any, path: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, pipeline in transform_pipelines(module).items():
        torch.manual_seed(0)
        out[name] = decoder_cls(path, transforms=pipeline).get_frames_at([0, 7, 20]).data
    return out


if __name__ == "__main__":  # python _tc_script.py [--transforms] OUT.pt PATH... (the torchcodec side)
    import av  # noqa: F401 - loads PyAV's FFmpeg libraries before torchcodec looks for them
    import torchcodec.transforms
    from torchcodec.decoders import VideoDecoder

    args = sys.argv[1:]
    if args[0] == "--transforms":
        torch.save({p: run_transforms(VideoDecoder, torchcodec.transforms, p) for p in args[2:]}, args[1])
    else:
        torch.save({p: run(VideoDecoder, p) for p in args[1:]}, args[0])
