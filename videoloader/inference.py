"""``run_inference``: sample frames from videos by URL, classify them, measure every stage.

The end-to-end job behind ``videoloader infer`` and the Modal app::

    from videoloader import run_inference
    result = run_inference(["https://host/a.mp4", "s3://bucket/b.mp4"], frames_per_video=4, random_seed=0)
    result["top_classes"], result["bandwidth_total_upstream_mb"], result["videos"][1]["error"]

Stages, each timed separately:

1. model load (``model_load_time_seconds``): build the model, load weights
   (downloaded once into ``weights_dir``), move it to ``device``.
2. frame extraction (``frame_extraction_time_seconds``): open each video with
   :class:`~videoloader.VideoReader`, pick frames with a seeded RNG, fetch and
   decode exactly those frames. Videos are read ``num_workers`` at a time.
3. preprocessing (``preprocess_time_seconds``): on the model's device, resize,
   centre-crop and normalise (the weights' own ``transforms()`` when known).
4. inference (``inference_time_seconds``): frames from all videos are batched
   together ``batch_size`` at a time; a video's share of a batch's time is
   proportional to its number of frames in that batch.

Bandwidth, per video and in total:

* **upstream** bytes (``bandwidth_total_upstream_bytes``): body bytes that came
  from the origin for the video: the container index plus the sample ranges,
  retries included, exactly ``TransferStats.bytes_received`` of the reader
  (also counted for a video that then failed). Headers are not counted.
* **downstream** bytes (``bandwidth_total_downstream_bytes``): the compressed
  packet bytes fed to the decoder (``VideoReader.last_decode_nbytes``): on the
  index path the samples from each needed keyframe up to the last frame
  needed (``reader.plan(indices).nbytes``); on the PyAV demux fallback (MKV,
  WebM, MPEG-TS) the sizes of the demuxed packets decoded.
* ``_mb`` keys are the same numbers in decimal megabytes (``bytes / 1e6``).

One failing video never stops the batch: its entry in ``videos`` carries
``error`` (type, message, traceback, URLs redacted) and the top-level
``status`` is ``"ok"``, ``"partial"`` or ``"failed"``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import os
import platform as _platform
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._errors import WeightsUnavailableError

__all__ = [
    "DEFAULT_MODEL",
    "ImageNetPreprocess",
    "InferenceResult",
    "VideoResult",
    "WeightsUnavailableError",
    "run_inference",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "mobilenet_v3_small"
"""The torchvision classifier used when no model is given (2.5 M parameters)."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_MB = 1_000_000
_HUB_LOCK = threading.Lock()


def _redact_url(url: str) -> str:
    from .io import redact_url

    return redact_url(url)


def _redact_text(text: str) -> str:
    from .io import redact_text

    return redact_text(text)


def apply_log_level_from_env(logger_name: str = "videoloader") -> None:
    """Set the ``videoloader`` logger's level from ``LOGGER_LEVEL`` (e.g. ``DEBUG``, ``INFO``), if set."""
    level = os.environ.get("LOGGER_LEVEL")
    if level:
        logging.getLogger(logger_name).setLevel(level.strip().upper())


# --------------------------------------------------------------------------- results


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
    """Decoder backend that ran: ``cpu``, ``nvdec`` or ``videotoolbox``."""
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
    frame_png_bytes_list: list[bytes] | None = None
    error: dict[str, str] | None = None
    """``{"type", "message", "traceback"}`` when the video failed, else None."""

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status
        d["bandwidth_upstream_mb"] = self.bandwidth_upstream_bytes / _MB
        d["bandwidth_downstream_mb"] = self.bandwidth_downstream_bytes / _MB
        if self.frame_png_bytes_list is None:
            del d["frame_png_bytes_list"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoResult":
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

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    @property
    def num_failed(self) -> int:
        return sum(not v.ok for v in self.videos)

    @property
    def status(self) -> str:
        if self.num_failed == 0:
            return "ok"
        return "failed" if self.num_failed == self.num_videos else "partial"

    def to_dict(self) -> dict[str, Any]:
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
            "bandwidth_total_upstream_mb": up / _MB,
            "bandwidth_total_downstream_mb": down / _MB,
            "bandwidth_num_requests": sum(v.bandwidth_num_requests for v in self.videos),
            "videos": [v.to_dict() for v in self.videos],
        }
        if self.return_frame_png:
            d["frame_png_bytes_list"] = [b for v in ok for b in (v.frame_png_bytes_list or [])]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InferenceResult":
        # Derived keys (counts, totals, num_videos_with_fewer_frames) are recomputed by to_dict().
        names = {f.name for f in dataclasses.fields(cls)} - {"videos", "return_frame_png"}
        return cls(
            videos=[VideoResult.from_dict(v) for v in d["videos"]],
            return_frame_png="frame_png_bytes_list" in d,
            **{k: d[k] for k in names},
        )


# --------------------------------------------------------------------------- preprocessing


class ImageNetPreprocess:
    """Standard ImageNet preprocessing on uint8 ``N x 3 x H x W`` tensors, on their own device.

    Resize (shorter side to ``resize_size``, bilinear, antialiased), centre
    crop to ``crop_size``, scale to [0, 1], normalise with ``mean``/``std``.
    Pure torch, so it runs wherever the frames are (NVDEC frames stay on the GPU).
    """

    def __init__(
        self,
        *,
        resize_size: int = 256,
        crop_size: int = 224,
        mean: Sequence[float] = _IMAGENET_MEAN,
        std: Sequence[float] = _IMAGENET_STD,
    ) -> None:
        if resize_size <= 0 or crop_size <= 0 or crop_size > resize_size:
            raise ValueError(f"need 0 < crop_size <= resize_size, got crop {crop_size}, resize {resize_size}")
        self.resize_size, self.crop_size = resize_size, crop_size
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W frames, got shape {tuple(frames.shape)}")
        x = frames.float().div_(255.0)
        h, w = x.shape[-2:]
        scale = self.resize_size / min(h, w)
        size = (max(self.crop_size, round(h * scale)), max(self.crop_size, round(w * scale)))
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - self.crop_size) // 2, (size[1] - self.crop_size) // 2
        x = x[..., top : top + self.crop_size, left : left + self.crop_size]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"ImageNetPreprocess(resize_size={self.resize_size}, crop_size={self.crop_size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageNetPreprocess) and vars(self) == vars(other)


# --------------------------------------------------------------------------- model


@dataclasses.dataclass
class _Model:
    fn: Callable[[torch.Tensor], Any]
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    class_names: list[str] | None
    name: str
    weights: str | None


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return d


@contextlib.contextmanager
def _hub_dir(weights_dir: str | None):
    """Point torch.hub's cache at ``weights_dir`` for the duration (restored after)."""
    if weights_dir is None:
        yield
        return
    with _HUB_LOCK:
        previous = getattr(torch.hub, "_hub_dir", None)
        torch.hub.set_dir(str(weights_dir))
        try:
            yield
        finally:
            torch.hub._hub_dir = previous  # set_dir(None) is not accepted; restore the private slot


def _torchvision_models():
    try:
        import torchvision.models as tvm
    except ImportError as e:  # pragma: no cover - torchvision is in the test env
        raise ImportError(
            "model given by name needs torchvision: pip install 'videoloader[vision]' "
            "(or pass an nn.Module / callable as model=)"
        ) from e
    return tvm


def _resolve_weights_enum(tvm: Any, model_name: str, weights: Any) -> Any:
    """``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"ResNet18_Weights.IMAGENET1K_V1"`` or a WeightsEnum -> WeightsEnum."""
    if not isinstance(weights, str):
        return weights
    if "." in weights and not weights.endswith((".pt", ".pth", ".bin", ".ckpt")):
        return tvm.get_weight(weights)
    enum = tvm.get_model_weights(model_name)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__])
        raise ValueError(f"{model_name}: unknown weights {weights!r}; choose one of {names}, None or a file path") from None


def _is_weights_path(weights: Any) -> bool:
    if isinstance(weights, Path):
        return True
    return isinstance(weights, str) and (os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".ckpt")) or os.path.exists(weights))


def _load_checkpoint(module: torch.nn.Module, path: str | Path) -> None:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist; pass an existing checkpoint path, 'DEFAULT' or None")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    module.load_state_dict(state)


def _download_error(model_name: str, weights_enum: Any, weights_dir: str, e: BaseException) -> WeightsUnavailableError:
    url = getattr(weights_enum, "url", "?")
    fname = url.rsplit("/", 1)[-1]
    target = Path(weights_dir) / "checkpoints" / fname
    return WeightsUnavailableError(
        f"could not load the pretrained weights {weights_enum} for {model_name}: download of {url} "
        f"into {target.parent} failed ({type(e).__name__}: {_redact_text(str(e))}). To proceed: run with weights=None "
        f"(`--weights none`, random init: fine for measuring I/O and decode, not for predictions); or "
        f"pass a local checkpoint with weights='/path/to/{fname}' (`--weights PATH`); or copy {fname} to "
        f"{target} (weights_dir / TORCH_HOME) on a machine with network access."
    )


def _load_model(
    model: Any,
    weights: Any,
    device: torch.device,
    *,
    weights_dir: str | None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None,
    class_names: Sequence[str] | None,
) -> _Model:
    names = list(class_names) if class_names is not None else None
    if weights is not None and isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if isinstance(model, str):
        tvm = _torchvision_models()
        model_name = model
        if model_name not in tvm.list_models():
            raise ValueError(f"unknown torchvision model {model_name!r}; e.g. resnet18, mobilenet_v3_small, efficientnet_b0")
        try:
            default_enum = tvm.get_model_weights(model_name).DEFAULT
        except (ValueError, AttributeError):
            default_enum = None
        if weights is None or _is_weights_path(weights):
            module = tvm.get_model(model_name, weights=None)
            weights_desc = None
            if weights is not None:
                _load_checkpoint(module, weights)
                weights_desc = str(weights)
            enum = default_enum  # transforms only: same input conventions as the architecture's weights
        else:
            enum = _resolve_weights_enum(tvm, model_name, weights)
            hub = str(weights_dir) if weights_dir is not None else torch.hub.get_dir()
            try:
                with _hub_dir(weights_dir):
                    module = tvm.get_model(model_name, weights=enum)
            except (OSError, RuntimeError) as e:  # URLError is an OSError; a corrupt download a RuntimeError
                # The cause is kept only when its message holds no URL secret (a proxy's credentials).
                raise _download_error(model_name, enum, hub, e) from (e if _redact_text(str(e)) == str(e) else None)
            weights_desc = str(enum)
            if names is None:
                names = list(enum.meta.get("categories") or []) or None
        if preprocess is None:
            preprocess = enum.transforms() if enum is not None else ImageNetPreprocess()
        module.eval().to(device)
        return _Model(module, preprocess, names, model_name, weights_desc)
    if isinstance(model, torch.nn.Module):
        weights_desc = None
        if weights is not None:
            if not _is_weights_path(weights):
                if hasattr(weights, "get_state_dict"):  # a torchvision WeightsEnum
                    with _hub_dir(weights_dir):
                        model.load_state_dict(weights.get_state_dict(progress=False))
                    weights_desc = str(weights)
                    names = names or list(weights.meta.get("categories") or []) or None
                    preprocess = preprocess or weights.transforms()
                else:
                    raise ValueError(
                        f"weights={weights!r} needs a torchvision model name; for an nn.Module pass "
                        "weights=None (use it as it is) or a checkpoint path"
                    )
            else:
                _load_checkpoint(model, weights)
                weights_desc = str(weights)
        model.eval().to(device)
        return _Model(model, preprocess or ImageNetPreprocess(), names, type(model).__name__, weights_desc)
    if callable(model):
        if weights is not None:
            raise ValueError(f"weights={weights!r} cannot be applied to a plain callable model; pass weights=None")
        name = getattr(model, "__name__", type(model).__name__)
        return _Model(model, preprocess or ImageNetPreprocess(), names, name, None)
    raise TypeError(f"model must be a torchvision model name, an nn.Module or a callable, got {type(model).__name__}")


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; expected a logits tensor N x num_classes")


# --------------------------------------------------------------------------- frames


def _frame_sampler(frames_per_video: int, offset_max_seconds: float | None) -> Any:
    """The data package's ``RandomFrames``: distinct frames, uniform over the first ``offset_max_seconds``."""
    from .data import RandomFrames

    return RandomFrames(frames_per_video, offset_max_seconds=offset_max_seconds)


def _choose_frames(sampler: Any, video: Any, rng: np.random.Generator) -> list[int]:
    """Up to ``sampler.num_frames`` distinct frames from the sampler's window, in time order.

    A window holding fewer frames than asked gives each of its frames once
    (never a frame repeated to make up the count); the caller reports how many.
    With enough frames the draw is exactly ``sampler(video, rng)``.
    """
    window = sampler.window(video)
    if window.num_frames < sampler.num_frames:
        sampler = dataclasses.replace(sampler, num_frames=window.num_frames)
    return [int(i) for i in sampler.choose(video, window, rng)]


def _encode_png(frame_chw: torch.Tensor) -> bytes:
    arr = np.ascontiguousarray(frame_chw.detach().to("cpu").permute(1, 2, 0).numpy())
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL ships with torchvision
        import av

        codec = av.CodecContext.create("png", "w")
        codec.width, codec.height, codec.pix_fmt = arr.shape[1], arr.shape[0], "rgb24"
        packets = codec.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")) + codec.encode(None)
        return b"".join(bytes(p) for p in packets)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _error_entry(e: BaseException) -> dict[str, str]:
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return {"type": type(e).__name__, "message": _redact_text(str(e)), "traceback": _redact_text(tb)}


@dataclasses.dataclass
class _Extracted:
    result: VideoResult
    frames: torch.Tensor | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- the job


def run_inference(
    video_url: str | None = None,
    *,
    video_urls: Sequence[str] | None = None,
    frames_per_video: int = 1,
    random_seed: int | None = None,
    offset_max_seconds: float | None = None,
    model: Any = DEFAULT_MODEL,
    weights: Any = "DEFAULT",
    weights_dir: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str | torch.device | None = "auto",
    batch_size: int = 64,
    top_k: int = 5,
    return_frame_png: bool = False,
    wandb: Any = False,
    storage_options: dict | None = None,
    num_workers: int = 4,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
    first_video_index: int = 0,
    index_cache: Any = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    wandb_max_images: int = 8,
) -> dict[str, Any]:
    """Sample frames from videos, classify them, and report predictions, timings and bytes.

    Args:
        video_url: one URL (or local path); or give ``video_urls``. A list here
            is accepted as ``video_urls``.
        video_urls: several URLs; each gets an entry in ``result["videos"]``.
        frames_per_video: distinct frames drawn per video (>= 1). A video
            (or its first ``offset_max_seconds``) with fewer frames gives each
            of them once: ``videos[i]["frames_returned"]`` says how many, and
            ``num_videos_with_fewer_frames`` counts those videos.
        random_seed: seed of the frame choice. Video ``i`` draws with
            ``np.random.default_rng((random_seed, first_video_index + i))``, so
            a fixed seed gives the same frames on every run and every shard
            layout. None draws a fresh seed, reported in ``result["random_seed"]``.
        offset_max_seconds: draw only frames whose pts is less than this many
            seconds after the first frame (None: the whole video).
        model: a torchvision model name (``"resnet18"``), an ``nn.Module``
            (returning logits ``N x C``) or a callable taking the preprocessed
            float batch.
        weights: ``"DEFAULT"`` (the model's pretrained torchvision weights), a
            weights name (``"IMAGENET1K_V1"``), None (random init / the module as
            given) or a checkpoint path (a state dict).
        weights_dir: torch.hub cache directory for downloaded weights
            (default ``torch.hub.get_dir()``: ``$TORCH_HOME/hub``).
        backend: decoder backend for :class:`VideoReader` (``auto``, ``cpu``,
            ``nvdec``, ``videotoolbox``).
        device: where the model runs (``"auto"``: CUDA, then MPS, then CPU).
            NVDEC frames are decoded straight onto this device.
        batch_size: frames per forward pass; frames of several videos share a batch.
        top_k: classes kept per frame in ``videos[i]["predictions"]``.
        return_frame_png: add ``frame_png_bytes_list`` (lossless PNG of each
            decoded frame, before preprocessing), per video and flattened.
        wandb: False (default), True (a W&B run in ``$WANDB_PROJECT`` or
            ``videoloader``), a dict of ``wandb.init`` options (``project``,
            ``entity``, ``name``, ``group``, ``mode``, ``dir``, ``tags``), or a
            sink object (see ``videoloader._wandb.MetricsSink``).
        storage_options: fsspec options for the URLs' filesystem.
        num_workers: videos fetched and decoded concurrently.
        preprocess: override the preprocessing (uint8 ``N x 3 x H x W`` -> float batch).
        class_names: override the class names (default: the weights' categories,
            else ``class_<i>``).
        first_video_index: index of the first URL in a larger list (Modal shards).
        index_cache: on-disk MP4 index cache directory, passed to the readers.
        progress: called after each video's frames are decoded, as
            ``progress(num_done, num_total, {"index", "url", "ok", "error"})``.
        wandb_max_images: sampled frames logged to W&B.

    Returns:
        A dict; the keys are listed in ``docs/inference.md`` and in
        :class:`InferenceResult` / :class:`VideoResult` (``InferenceResult.from_dict``
        gives the typed view back).

    Raises:
        ValueError: bad arguments (no URL, frames_per_video < 1, ...).
        WeightsUnavailableError: pretrained weights could not be downloaded or read.
    """
    t_start = time.perf_counter()
    apply_log_level_from_env()
    urls = _collect_urls(video_url, video_urls)
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    if offset_max_seconds is not None and not offset_max_seconds > 0:
        raise ValueError(f"offset_max_seconds must be positive (or None), got {offset_max_seconds}")
    if batch_size < 1 or num_workers < 1 or top_k < 1:
        raise ValueError(f"batch_size, num_workers and top_k must be >= 1, got {batch_size}, {num_workers}, {top_k}")
    if random_seed is None:
        random_seed = secrets.randbits(32)
    sink = _make_sink(wandb)
    dev = _resolve_device(device)
    weights_dir_str = str(weights_dir) if weights_dir is not None else None

    try:
        _sync(dev)
        t0 = time.perf_counter()
        loaded = _load_model(model, weights, dev, weights_dir=weights_dir_str, preprocess=preprocess, class_names=class_names)
        _sync(dev)
        model_load_time = time.perf_counter() - t0
        log.info("model %s (weights %s) on %s loaded in %.2f s", loaded.name, loaded.weights, dev, model_load_time)

        job = _Job(
            model=loaded,
            device=dev,
            backend=backend,
            storage_options=storage_options,
            frames_per_video=frames_per_video,
            random_seed=random_seed,
            offset_max_seconds=offset_max_seconds,
            batch_size=batch_size,
            top_k=top_k,
            return_frame_png=return_frame_png,
            index_cache=index_cache,
            wandb_max_images=wandb_max_images if sink is not None else 0,
        )
        videos = job.run(urls, first_video_index=first_video_index, num_workers=num_workers, progress=progress)

        result = InferenceResult(
            videos=videos,
            platform=_platform.platform(),
            device=str(dev),
            gpu_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            cuda_version=torch.version.cuda,
            torch_version=torch.__version__,
            model=loaded.name,
            weights=loaded.weights,
            weights_dir=weights_dir_str if weights_dir_str is not None else (torch.hub.get_dir() if isinstance(model, str) else None),
            backend=backend,
            frames_per_video=frames_per_video,
            random_seed=int(random_seed),
            offset_max_seconds=offset_max_seconds,
            batch_size=batch_size,
            model_load_time_seconds=model_load_time,
            total_pipeline_time_seconds=time.perf_counter() - t_start,
            return_frame_png=return_frame_png,
        )
    except BaseException:
        if sink is not None:
            sink.finish()
        raise
    out = result.to_dict()
    log.info(
        "%d videos (%d failed): %.3f MB upstream, %.3f MB to the decoder, %.2f s",
        out["num_videos"], out["num_failed"], out["bandwidth_total_upstream_mb"],
        out["bandwidth_total_downstream_mb"], out["total_pipeline_time_seconds"],
    )
    if sink is not None:
        from ._wandb import log_inference

        try:
            log_inference(sink, out, images=job.images)
        finally:
            sink.finish()
    return out


def _collect_urls(video_url: Any, video_urls: Sequence[str] | None) -> list[str]:
    urls: list[str] = []
    if video_url is not None:
        if isinstance(video_url, (str, os.PathLike)):
            urls.append(os.fspath(video_url))
        else:
            urls.extend(os.fspath(u) for u in video_url)
    if video_urls is not None:
        if isinstance(video_urls, (str, os.PathLike)):
            raise ValueError("video_urls must be a list of URLs; for one URL use video_url=")
        urls.extend(os.fspath(u) for u in video_urls)
    if not urls:
        raise ValueError("run_inference needs video_url= or video_urls=")
    return urls


def _make_sink(wandb: Any) -> Any:
    if wandb is None or wandb is False:
        return None
    from ._wandb import WandbSink

    if wandb is True:
        return WandbSink()
    if isinstance(wandb, dict):
        return WandbSink(**wandb)
    if all(hasattr(wandb, m) for m in ("log_config", "log_metrics", "log_table", "log_images", "finish")):
        return wandb
    raise TypeError(f"wandb must be a bool, a dict of wandb.init options or a MetricsSink, got {type(wandb).__name__}")


class _Job:
    """Extraction in worker threads, preprocessing and batched inference on the caller's thread."""

    def __init__(self, *, model: _Model, device: torch.device, backend: str, storage_options: dict | None,
                 frames_per_video: int, random_seed: int, offset_max_seconds: float | None, batch_size: int,
                 top_k: int, return_frame_png: bool, index_cache: Any, wandb_max_images: int) -> None:
        self.model = model
        self.device = device
        self.backend = backend
        self.storage_options = storage_options
        self.frames_per_video = frames_per_video
        self.random_seed = random_seed
        self.offset_max_seconds = offset_max_seconds
        self.batch_size = batch_size
        self.top_k = top_k
        self.return_frame_png = return_frame_png
        self.index_cache = index_cache
        self.wandb_max_images = wandb_max_images
        self.sampler = _frame_sampler(frames_per_video, offset_max_seconds)
        self.images: list[tuple[np.ndarray, str, VideoResult, int]] = []
        # Frames waiting for a full batch: tensors and, per frame, (video, position in video).
        self._pending: list[torch.Tensor] = []
        self._owners: list[tuple[VideoResult, int]] = []
        self._lock = threading.Lock()

    # -- stage 2: one video, in a worker thread --------------------------------

    def extract(self, index: int, url: str) -> _Extracted:
        from ._reader import VideoReader
        from .io import TransferStats

        vr = VideoResult(index=index, url=_redact_url(url))
        stats = TransferStats()
        t0 = time.perf_counter()
        frames = None
        try:
            reader_device = str(self.device) if self.device.type == "cuda" else None
            with VideoReader(url, backend=self.backend, storage_options=self.storage_options, device=reader_device,
                             stats=stats, index_cache=self.index_cache) as reader:
                m = reader.metadata
                vr.num_frames, vr.fps, vr.duration_seconds = m.num_frames, m.fps, m.duration_seconds
                vr.width, vr.height, vr.codec = m.width, m.height, m.codec
                vr.container, vr.access_path, vr.backend = m.container, m.access_path, reader.backend
                if reader.index is not None and reader.index.file_size is not None:
                    vr.file_size_bytes = int(reader.index.file_size)
                rng = np.random.default_rng((self.random_seed, index))
                chosen = _choose_frames(self.sampler, reader, rng)
                vr.frames_requested, vr.frames_returned = self.frames_per_video, len(chosen)
                if len(chosen) < self.frames_per_video:
                    log.info("video %d %s: %d frames asked, %d in the window: each taken once",
                             index, vr.url, self.frames_per_video, len(chosen))
                batch = reader.get_frames_at(chosen)
                downstream = reader.last_decode_nbytes
                vr.selected_frame_indices = chosen
                vr.selected_timestamps_seconds = [float(t) for t in batch.pts_seconds.tolist()]
                vr.bandwidth_downstream_bytes = int(downstream)
                frames = batch.data
                if self.return_frame_png:
                    vr.frame_png_bytes_list = [_encode_png(f) for f in frames]
                if self.wandb_max_images:
                    with self._lock:
                        if len(self.images) < self.wandb_max_images:
                            self.images.append((frames[0].detach().cpu().permute(1, 2, 0).numpy().copy(), "", vr, 0))
            vr.ok = True
        except Exception as e:  # one failing video never stops the batch
            vr.ok = False
            vr.error = _error_entry(e)
            frames = None
            log.warning("video %d %s failed: %s: %s", index, vr.url, type(e).__name__, vr.error["message"])
        finally:
            vr.frame_extraction_time_seconds = time.perf_counter() - t0
            vr.bandwidth_upstream_bytes = stats.bytes_received
            vr.bandwidth_requested_bytes = stats.bytes_requested
            vr.bandwidth_num_requests = stats.num_requests
        return _Extracted(vr, frames)

    # -- stages 3 and 4 ----------------------------------------------------------

    def preprocess(self, item: _Extracted) -> None:
        vr = item.result
        try:
            _sync(self.device)
            t0 = time.perf_counter()
            x = item.frames.to(self.device, non_blocking=True)
            x = self.model.preprocess(x)
            _sync(self.device)
            vr.preprocess_time_seconds = time.perf_counter() - t0
        except Exception as e:
            vr.ok, vr.error = False, _error_entry(e)
            log.warning("video %d %s: preprocessing failed: %s", vr.index, vr.url, vr.error["message"])
            return
        self._pending.append(x)
        self._owners.extend((vr, k) for k in range(x.shape[0]))

    def infer(self, *, final: bool = False) -> None:
        """Run full batches of pending frames (and the remainder when ``final``)."""
        if not self._owners or (len(self._owners) < self.batch_size and not final):
            return
        owners = self._owners
        try:
            x = torch.cat(self._pending) if len(self._pending) > 1 else self._pending[0]
        except RuntimeError as e:  # a custom preprocess gave videos different sizes
            for vr in {id(v): v for v, _ in owners}.values():
                vr.ok, vr.error = False, _error_entry(e)
            self._pending, self._owners = [], []
            return
        n_run = len(owners) if final else (len(owners) // self.batch_size) * self.batch_size
        for start in range(0, n_run, self.batch_size):
            stop = min(start + self.batch_size, n_run)
            self._forward(x[start:stop], owners[start:stop])
        self._pending = [x[n_run:]] if n_run < len(owners) else []
        self._owners = owners[n_run:]

    def _forward(self, x: torch.Tensor, owners: list[tuple[VideoResult, int]]) -> None:
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                logits = _logits(self.model.fn(x))
                probs = torch.softmax(logits.float(), dim=-1)
                k = min(self.top_k, probs.shape[-1])
                top_p, top_i = probs.topk(k, dim=-1)
            top_p, top_i = top_p.cpu().tolist(), top_i.cpu().tolist()
        except Exception as e:
            for vr in {id(v): v for v, _ in owners}.values():
                vr.ok, vr.error = False, _error_entry(e)
            log.warning("inference failed on a batch of %d frames: %s", len(owners), e)
            return
        finally:
            _sync(self.device)
            share = (time.perf_counter() - t0) / max(len(owners), 1)
            for vr, _ in owners:
                vr.inference_time_seconds += share
        names = self.model.class_names
        for (vr, _), ps, idx in zip(owners, top_p, top_i):
            preds = [
                {"class": names[i] if names is not None and i < len(names) else f"class_{i}", "index": int(i), "confidence": float(p)}
                for p, i in zip(ps, idx)
            ]
            vr.predictions.append(preds)
            vr.top_classes.append(preds[0]["class"])
            vr.top_class_indices.append(preds[0]["index"])
            vr.confidences.append(preds[0]["confidence"])

    def run(self, urls: Sequence[str], *, first_video_index: int, num_workers: int,
            progress: Callable[[int, int, dict[str, Any]], None] | None) -> list[VideoResult]:
        total = len(urls)
        results: list[VideoResult] = []
        with ThreadPoolExecutor(max_workers=min(num_workers, total), thread_name_prefix="videoloader-infer") as pool:
            queue: collections.deque[Future[_Extracted]] = collections.deque()
            jobs: Iterable[tuple[int, str]] = iter(enumerate(urls, start=first_video_index))
            # Bounded read-ahead: at most 2 x num_workers decoded videos in memory.
            for i, u in jobs:
                queue.append(pool.submit(self.extract, i, u))
                if len(queue) >= 2 * num_workers:
                    break
            while queue:
                item = queue.popleft().result()
                nxt = next(jobs, None)
                if nxt is not None:
                    queue.append(pool.submit(self.extract, *nxt))
                if item.result.ok:
                    self.preprocess(item)
                    item.frames = None
                    self.infer()
                results.append(item.result)
                if progress is not None:
                    vr = item.result
                    progress(len(results), total, {"index": vr.index, "url": vr.url, "ok": vr.ok, "error": vr.error})
        self.infer(final=True)
        for vr in results:
            vr.total_time_seconds = vr.frame_extraction_time_seconds + vr.preprocess_time_seconds + vr.inference_time_seconds
            if vr.ok and len(vr.top_classes) != len(vr.selected_frame_indices):
                vr.ok = False
                vr.error = vr.error or {"type": "RuntimeError", "message": "missing predictions", "traceback": ""}
        captioned = []
        for arr, _, vr, k in sorted(self.images, key=lambda item: item[2].index):
            label = f": {vr.top_classes[k]} ({vr.confidences[k]:.2f})" if vr.ok and vr.top_classes else ""
            captioned.append((arr, f"video {vr.index} @ {vr.selected_timestamps_seconds[k]:.3f} s{label}", vr, k))
        self.images = captioned
        return results
