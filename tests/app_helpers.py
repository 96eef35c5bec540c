"""Helpers for the application tests (run_inference, CLI, W&B, Modal): a tiny model and served videos."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CLASS_NAMES = [f"pattern_{i}" for i in range(10)]

# Keys every run_inference result carries (docs/inference.md), with their types.
TOP_LEVEL_KEYS = {
    "status": str,
    "num_videos": int,
    "num_succeeded": int,
    "num_failed": int,
    "platform": str,
    "device": str,
    "torch_version": str,
    "model": str,
    "backend": str,
    "frames_per_video": int,
    "random_seed": int,
    "batch_size": int,
    "top_classes": list,
    "confidences": list,
    "selected_timestamps_seconds": list,
    "model_load_time_seconds": float,
    "frame_extraction_time_seconds": float,
    "preprocess_time_seconds": float,
    "inference_time_seconds": float,
    "total_pipeline_time_seconds": float,
    "bandwidth_total_upstream_bytes": int,
    "bandwidth_total_downstream_bytes": int,
    "bandwidth_total_upstream_mb": float,
    "bandwidth_total_downstream_mb": float,
    "bandwidth_num_requests": int,
    "videos": list,
}
NULLABLE_TOP_LEVEL_KEYS = ("gpu_name", "cuda_version", "weights", "weights_dir", "offset_max_seconds")
VIDEO_KEYS = {
    "index": int,
    "url": str,
    "ok": bool,
    "status": str,
    "selected_frame_indices": list,
    "selected_timestamps_seconds": list,
    "top_classes": list,
    "top_class_indices": list,
    "confidences": list,
    "predictions": list,
    "frame_extraction_time_seconds": float,
    "preprocess_time_seconds": float,
    "inference_time_seconds": float,
    "total_time_seconds": float,
    "bandwidth_upstream_bytes": int,
    "bandwidth_downstream_bytes": int,
    "bandwidth_requested_bytes": int,
    "bandwidth_num_requests": int,
    "bandwidth_upstream_mb": float,
    "bandwidth_downstream_mb": float,
}
NULLABLE_VIDEO_KEYS = (
    "num_frames",
    "fps",
    "duration_seconds",
    "width",
    "height",
    "codec",
    "container",
    "access_path",
    "backend",
    "file_size_bytes",
    "frames_requested",
    "frames_returned",
    "error",
)


class TinyNet(torch.nn.Module):
    """Mean colour of a 4x4 grid -> 10 logits: fast, deterministic, and frame-dependent."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.fc = torch.nn.Linear(3 * 16, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 48, generator=g))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


def check_result_schema(result: dict[str, Any]) -> None:
    """Every documented key with its type and unit rules."""
    for key, typ in TOP_LEVEL_KEYS.items():
        assert key in result, key
        assert isinstance(result[key], typ), (key, type(result[key]))
    for key in NULLABLE_TOP_LEVEL_KEYS:
        assert key in result, key
    for key in (
        "model_load_time_seconds",
        "frame_extraction_time_seconds",
        "preprocess_time_seconds",
        "inference_time_seconds",
        "total_pipeline_time_seconds",
    ):
        assert result[key] >= 0, key
    assert result["model_load_time_seconds"] <= result["total_pipeline_time_seconds"]
    assert result["bandwidth_total_upstream_mb"] == result["bandwidth_total_upstream_bytes"] / 1e6
    assert result["bandwidth_total_downstream_mb"] == result["bandwidth_total_downstream_bytes"] / 1e6
    assert result["num_videos"] == len(result["videos"]) == result["num_succeeded"] + result["num_failed"]
    assert result["status"] == (
        "ok" if result["num_failed"] == 0 else "failed" if result["num_failed"] == result["num_videos"] else "partial"
    )
    ok = [v for v in result["videos"] if v["ok"]]
    assert result["top_classes"] == [c for v in ok for c in v["top_classes"]]
    assert result["confidences"] == [c for v in ok for c in v["confidences"]]
    assert result["selected_timestamps_seconds"] == [t for v in ok for t in v["selected_timestamps_seconds"]]
    assert result["bandwidth_total_upstream_bytes"] == sum(v["bandwidth_upstream_bytes"] for v in result["videos"])
    assert result["bandwidth_total_downstream_bytes"] == sum(v["bandwidth_downstream_bytes"] for v in result["videos"])
    assert result["bandwidth_num_requests"] == sum(v["bandwidth_num_requests"] for v in result["videos"])
    for key in ("frame_extraction_time_seconds", "preprocess_time_seconds", "inference_time_seconds"):
        assert abs(result[key] - sum(v[key] for v in result["videos"])) < 1e-9
    for v in result["videos"]:
        for key, typ in VIDEO_KEYS.items():
            assert key in v, key
            assert isinstance(v[key], typ), (key, type(v[key]))
        for key in NULLABLE_VIDEO_KEYS:
            assert key in v, key
        assert "?" not in v["url"], v["url"]
        assert v["bandwidth_upstream_mb"] == v["bandwidth_upstream_bytes"] / 1e6
        if v["ok"]:
            n = v["frames_returned"]  # frames_per_video, or all of a shorter window's frames
            assert v["frames_requested"] == result["frames_per_video"] and 1 <= n <= v["frames_requested"]
            assert v["status"] == "ok" and v["error"] is None
            assert len(v["selected_frame_indices"]) == len(v["selected_timestamps_seconds"]) == n
            assert len(v["top_classes"]) == len(v["confidences"]) == len(v["predictions"]) == n
            assert all(0.0 <= c <= 1.0 for c in v["confidences"])
            assert v["selected_frame_indices"] == sorted(v["selected_frame_indices"])
            assert all(0 <= i < v["num_frames"] for i in v["selected_frame_indices"])
            assert v["access_path"] in ("index", "demux", "proxy")
            assert v["bandwidth_downstream_bytes"] > 0 and v["bandwidth_upstream_bytes"] > 0
            # Every byte fed to the decoder came over the wire once (the demux
            # path also reads container framing and the packet table pass).
            assert v["bandwidth_downstream_bytes"] <= v["bandwidth_upstream_bytes"]
            for preds, top, conf in zip(v["predictions"], v["top_classes"], v["confidences"], strict=True):
                assert preds[0]["class"] == top and preds[0]["confidence"] == conf
                assert [p["confidence"] for p in preds] == sorted((p["confidence"] for p in preds), reverse=True)
            assert (
                abs(
                    v["total_time_seconds"]
                    - (v["frame_extraction_time_seconds"] + v["preprocess_time_seconds"] + v["inference_time_seconds"])
                )
                < 1e-9
            )
        else:
            assert v["status"] == "failed"
            err = v["error"]
            assert set(err) >= {"type", "message", "traceback"}
            assert err["type"] and err["message"] and "Traceback" in err["traceback"]


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


@dataclass
class Served:
    """Videos on a loopback server: name -> URL (with a secret query string), and the local paths."""

    server: Any
    urls: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def url_list(self) -> list[str]:
        return list(self.urls.values())


def serve_videos(server: Any, corpus: dict[str, Path], names: list[str], *, broken: bool = True) -> Served:
    """Serve corpus files (and a broken one: the first half of a moov-at-end MP4) with signed-looking URLs."""
    served = Served(server)
    for name in names:
        served.urls[name] = server.add(f"{name}{corpus[name].suffix}", corpus[name]) + "?token=SECRET123&sig=abc"
        served.paths[name] = corpus[name]
    if broken:
        data = corpus["h264_moov_end"].read_bytes()
        served.urls["broken"] = server.add("broken.mp4", data[: len(data) // 2]) + "?token=SECRET123"
    return served
