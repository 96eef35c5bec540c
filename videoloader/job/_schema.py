"""The result of ``run_inference``: one :class:`VideoResult` per video, one :class:`InferenceResult` per call.

The job fills these dataclasses; callers get ``InferenceResult.to_dict()``,
a plain dict that crosses process and Modal boundaries as is. The keys are
documented in ``docs/inference.md``; ``from_dict`` gives the typed view back.
Everything stored here is already redacted (URLs without credentials or query
string, error messages and tracebacks with every URL redacted).
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import Any

from ..io import redact_text

__all__ = ["MB", "InferenceResult", "VideoResult", "error_entry"]

MB = 1_000_000
"""Bytes in a (decimal) megabyte: the ``_mb`` keys are ``bytes / MB``."""


def error_entry(e: BaseException) -> dict[str, str]:
    """``{"type", "message", "traceback"}`` of a failure, every URL in it redacted."""
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return {"type": type(e).__name__, "message": redact_text(str(e)), "traceback": redact_text(tb)}


@dataclasses.dataclass
class VideoResult:
    """The outcome for one input video (an entry of ``result["videos"]``)."""

    index: int
    """Position of the video in the input list (global position for Modal shards)."""
    url: str
    """The URL with query string, fragment and credentials removed."""
    ok: bool = False
    num_frames: int | None = None
    fps: float | None = None
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    container: str | None = None
    access_path: str | None = None
    """``index`` (our MP4 index, exact byte ranges) or ``demux`` (PyAV fallback)."""
    backend: str | None = None
    """Name of the decoder backend that ran (see ``videoloader.decoders.backend_names()``)."""
    file_size_bytes: int | None = None
    frames_requested: int | None = None
    """Frames asked for (``frames_per_video``)."""
    frames_returned: int | None = None
    """Frames actually selected: fewer than asked when the video (or its first
    ``offset_max_seconds``) holds fewer frames; each frame is then taken once."""
    selected_frame_indices: list[int] = dataclasses.field(default_factory=list)
    selected_timestamps_seconds: list[float] = dataclasses.field(default_factory=list)
    """Presentation time of each selected frame, seconds."""
    top_classes: list[str] = dataclasses.field(default_factory=list)
    """Top-1 class name per selected frame."""
    top_class_indices: list[int] = dataclasses.field(default_factory=list)
    confidences: list[float] = dataclasses.field(default_factory=list)
    """Softmax probability of the top-1 class per frame, in [0, 1]."""
    predictions: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    """Per frame, the ``top_k`` classes: ``[{"class": name, "index": i, "confidence": p}, ...]``."""
    frame_extraction_time_seconds: float = 0.0
    preprocess_time_seconds: float = 0.0
    inference_time_seconds: float = 0.0
    total_time_seconds: float = 0.0
    """Sum of this video's three stage times."""
    bandwidth_upstream_bytes: int = 0
    bandwidth_downstream_bytes: int = 0
    bandwidth_requested_bytes: int = 0
    bandwidth_num_requests: int = 0
    bandwidth_num_proxy_requests: int = 0
    """``via="proxy"``: the decoder's HTTP requests to the tracking proxy (0 otherwise)."""
    frame_png_bytes_list: list[bytes] | None = None
    error: dict[str, str] | None = None
    """``{"type", "message", "traceback"}`` when the video failed, else None."""

    @property
    def status(self) -> str:
        """``"ok"`` or ``"failed"``."""
        return "ok" if self.ok else "failed"

    def fail(self, e: BaseException) -> str:
        """Mark the video failed with ``e``; returns the redacted message (for the log)."""
        self.ok, self.error = False, error_entry(e)
        return self.error["message"]

    def to_dict(self) -> dict[str, Any]:
        """The documented per-video dict (``_mb`` keys and ``status`` added, no PNG key unless asked)."""
        d = dataclasses.asdict(self)
        d["status"] = self.status
        d["bandwidth_upstream_mb"] = self.bandwidth_upstream_bytes / MB
        d["bandwidth_downstream_mb"] = self.bandwidth_downstream_bytes / MB
        if self.frame_png_bytes_list is None:
            del d["frame_png_bytes_list"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoResult:
        """The typed view of a per-video dict (derived keys are dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass
class InferenceResult:
    """Typed view of ``run_inference``'s result; ``to_dict()`` gives the documented dict."""

    videos: list[VideoResult]
    platform: str
    device: str
    gpu_name: str | None
    cuda_version: str | None
    """CUDA version torch was built with (``torch.version.cuda``); None for CPU-only builds."""
    torch_version: str
    model: str
    weights: str | None
    weights_dir: str | None
    backend: str
    frames_per_video: int
    random_seed: int
    offset_max_seconds: float | None
    batch_size: int
    model_load_time_seconds: float
    total_pipeline_time_seconds: float
    """Wall clock from the call until the result is ready (model load included, W&B logging not)."""
    return_frame_png: bool = False
    via: str = "reader"
    """``"reader"`` (VideoReader) or ``"proxy"`` (FFmpeg through the tracking proxy)."""

    @property
    def num_videos(self) -> int:
        """Videos in the call."""
        return len(self.videos)

    @property
    def num_failed(self) -> int:
        """Videos that failed."""
        return sum(not v.ok for v in self.videos)

    @property
    def status(self) -> str:
        """``"ok"`` (none failed), ``"failed"`` (all failed) or ``"partial"``."""
        if self.num_failed == 0:
            return "ok"
        return "failed" if self.num_failed == self.num_videos else "partial"

    def to_dict(self) -> dict[str, Any]:
        """The documented result dict: the fields plus counts, totals and flattened per-frame lists."""
        ok = [v for v in self.videos if v.ok]
        up = sum(v.bandwidth_upstream_bytes for v in self.videos)
        down = sum(v.bandwidth_downstream_bytes for v in self.videos)
        d: dict[str, Any] = {
            "status": self.status,
            "num_videos": self.num_videos,
            "num_succeeded": self.num_videos - self.num_failed,
            "num_failed": self.num_failed,
            "platform": self.platform,
            "device": self.device,
            "gpu_name": self.gpu_name,
            "cuda_version": self.cuda_version,
            "torch_version": self.torch_version,
            "model": self.model,
            "weights": self.weights,
            "weights_dir": self.weights_dir,
            "backend": self.backend,
            "frames_per_video": self.frames_per_video,
            "num_videos_with_fewer_frames": sum(
                v.frames_returned is not None and v.frames_returned < self.frames_per_video for v in ok
            ),
            "random_seed": self.random_seed,
            "offset_max_seconds": self.offset_max_seconds,
            "batch_size": self.batch_size,
            "top_classes": [c for v in ok for c in v.top_classes],
            "confidences": [c for v in ok for c in v.confidences],
            "selected_timestamps_seconds": [t for v in ok for t in v.selected_timestamps_seconds],
            "model_load_time_seconds": self.model_load_time_seconds,
            "frame_extraction_time_seconds": sum(v.frame_extraction_time_seconds for v in self.videos),
            "preprocess_time_seconds": sum(v.preprocess_time_seconds for v in self.videos),
            "inference_time_seconds": sum(v.inference_time_seconds for v in self.videos),
            "total_pipeline_time_seconds": self.total_pipeline_time_seconds,
            "bandwidth_total_upstream_bytes": up,
            "bandwidth_total_downstream_bytes": down,
            "bandwidth_total_upstream_mb": up / MB,
            "bandwidth_total_downstream_mb": down / MB,
            "bandwidth_num_requests": sum(v.bandwidth_num_requests for v in self.videos),
            "bandwidth_num_proxy_requests": sum(v.bandwidth_num_proxy_requests for v in self.videos),
            "via": self.via,
            "videos": [v.to_dict() for v in self.videos],
        }
        if self.return_frame_png:
            d["frame_png_bytes_list"] = [b for v in ok for b in (v.frame_png_bytes_list or [])]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InferenceResult:
        """The typed view of a result dict; derived keys (counts, totals) are recomputed by ``to_dict()``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"videos", "return_frame_png"}
        return cls(
            videos=[VideoResult.from_dict(v) for v in d["videos"]],
            return_frame_png="frame_png_bytes_list" in d,
            **{k: d[k] for k in names if k in d or k != "via"},
        )
