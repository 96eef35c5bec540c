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
import dataclasses
import logging
import os
import platform
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from .._reader import VideoReader
from ..io import TransferStats, install_log_redaction, redact_url
from ..proxy import TrackingProxy
from . import _wandb
from ._frames import choose_frames, encode_png, frame_sampler
from ._logging import apply_log_level_from_env
from ._model import DEFAULT_MODEL, LoadedModel, load_model, logits_of, resolve_device, sync
from ._schema import InferenceResult, VideoResult
from ._via_proxy import read_via_proxy

__all__ = ["run_inference"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, Any]], None]
"""``progress(num_done, num_total, {"index", "url", "ok", "error"})``, called after each video is decoded."""

# A frame kept for W&B: (H x W x 3 uint8 array, caption, its video, position in the video).
_Image = tuple[np.ndarray, str, VideoResult, int]
_SINK_METHODS = ("log_config", "log_metrics", "log_table", "log_images", "finish")


def run_inference(
    video_url: str | os.PathLike[str] | Sequence[str] | None = None,
    *,
    video_urls: Sequence[str] | None = None,
    frames_per_video: int = 1,
    random_seed: int | None = None,
    offset_max_seconds: float | None = None,
    model: Any = DEFAULT_MODEL,
    weights: Any = "DEFAULT",
    weights_dir: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    device: str | torch.device | None = "auto",
    batch_size: int = 64,
    top_k: int = 5,
    return_frame_png: bool = False,
    wandb: Any = False,
    storage_options: dict[str, Any] | None = None,
    num_workers: int = 4,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
    first_video_index: int = 0,
    index_cache: Any = None,
    progress: Progress | None = None,
    wandb_max_images: int = 8,
    via: str = "reader",
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
        backend: decoder backend for :class:`VideoReader` (``"auto"`` or a
            registered backend's name).
        device: where the model runs (``"auto"``: CUDA, then MPS, then CPU).
            NVDEC frames are decoded straight onto this device.
        batch_size: frames per forward pass; frames of several videos share a batch.
        top_k: classes kept per frame in ``videos[i]["predictions"]``.
        return_frame_png: add ``frame_png_bytes_list`` (lossless PNG of each
            decoded frame, before preprocessing), per video and flattened.
        wandb: False (default), True (a W&B run in ``$WANDB_PROJECT`` or
            ``videoloader``), a dict of ``wandb.init`` options (``project``,
            ``entity``, ``name``, ``group``, ``mode``, ``dir``, ``tags``), or a
            sink object (see :class:`videoloader.job.MetricsSink`).
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
        via: ``"reader"`` (default: :class:`VideoReader`, our index and exact
            byte ranges) or ``"proxy"``: a URL-only decoder path, FFmpeg
            (through PyAV) reading each video through a
            :class:`~videoloader.proxy.TrackingProxy`, frames chosen from the
            stream header; the bandwidth numbers are then the proxy's
            (``bandwidth_num_proxy_requests``: the decoder's requests to it).

    Returns:
        A dict; the keys are listed in ``docs/inference.md`` and in
        :class:`~videoloader.job.InferenceResult` / :class:`~videoloader.job.VideoResult`
        (``InferenceResult.from_dict`` gives the typed view back).

    Raises:
        ValueError: bad arguments (no URL, frames_per_video < 1, ...).
        WeightsUnavailableError: pretrained weights could not be downloaded or read.
        MissingDependencyError: torchvision (a model by name) or wandb (``wandb=True``) is not installed.
    """
    t_start = time.perf_counter()
    apply_log_level_from_env()
    install_log_redaction()  # fsspec and aiohttp log raw URLs at DEBUG: never a credential in our logs
    urls = _collect_urls(video_url, video_urls)
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    if offset_max_seconds is not None and not offset_max_seconds > 0:
        raise ValueError(f"offset_max_seconds must be positive (or None), got {offset_max_seconds}")
    if via not in ("reader", "proxy"):
        raise ValueError(f"via must be 'reader' or 'proxy', got {via!r}")
    if batch_size < 1 or num_workers < 1 or top_k < 1:
        raise ValueError(f"batch_size, num_workers and top_k must be >= 1, got {batch_size}, {num_workers}, {top_k}")
    seed = secrets.randbits(32) if random_seed is None else int(random_seed)
    sink = _make_sink(wandb)
    dev = resolve_device(device)
    weights_dir_str = str(weights_dir) if weights_dir is not None else None

    try:
        sync(dev)
        t0 = time.perf_counter()
        loaded = load_model(
            model, weights, dev, weights_dir=weights_dir_str, preprocess=preprocess, class_names=class_names
        )
        sync(dev)
        model_load_time = time.perf_counter() - t0
        log.info("model %s (weights %s) on %s loaded in %.2f s", loaded.name, loaded.weights, dev, model_load_time)

        job = _Job(
            model=loaded,
            device=dev,
            backend=backend,
            storage_options=storage_options,
            frames_per_video=frames_per_video,
            random_seed=seed,
            offset_max_seconds=offset_max_seconds,
            batch_size=batch_size,
            top_k=top_k,
            return_frame_png=return_frame_png,
            index_cache=index_cache,
            wandb_max_images=wandb_max_images if sink is not None else 0,
        )
        if via == "proxy":
            with TrackingProxy(storage_options=storage_options) as job.proxy:
                videos = job.run(urls, first_video_index=first_video_index, num_workers=num_workers, progress=progress)
        else:
            videos = job.run(urls, first_video_index=first_video_index, num_workers=num_workers, progress=progress)

        result = InferenceResult(
            videos=videos,
            platform=platform.platform(),
            device=str(dev),
            gpu_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            cuda_version=torch.version.cuda,
            torch_version=torch.__version__,
            model=loaded.name,
            weights=loaded.weights,
            weights_dir=weights_dir_str
            if weights_dir_str is not None
            else (torch.hub.get_dir() if isinstance(model, str) else None),
            backend=backend,
            frames_per_video=frames_per_video,
            random_seed=seed,
            offset_max_seconds=offset_max_seconds,
            batch_size=batch_size,
            model_load_time_seconds=model_load_time,
            total_pipeline_time_seconds=time.perf_counter() - t_start,
            return_frame_png=return_frame_png,
            via=via,
        )
    except BaseException:
        if sink is not None:
            sink.finish()
        raise
    out = result.to_dict()
    log.info(
        "%d videos (%d failed): %.3f MB upstream, %.3f MB to the decoder, %.2f s",
        out["num_videos"],
        out["num_failed"],
        out["bandwidth_total_upstream_mb"],
        out["bandwidth_total_downstream_mb"],
        out["total_pipeline_time_seconds"],
    )
    if sink is not None:
        try:
            _wandb.log_inference(sink, out, images=job.images)
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
    """None, a :class:`~videoloader.job.WandbSink`, or the caller's own sink."""
    if wandb is None or wandb is False:
        return None
    if wandb is True:
        return _wandb.WandbSink()  # looked up on the module at call time: tests replace it
    if isinstance(wandb, dict):
        return _wandb.WandbSink(**wandb)
    if all(hasattr(wandb, m) for m in _SINK_METHODS):
        return wandb
    raise TypeError(f"wandb must be a bool, a dict of wandb.init options or a MetricsSink, got {type(wandb).__name__}")


@dataclasses.dataclass
class _Extracted:
    result: VideoResult
    frames: torch.Tensor | None = None


class _Job:
    """Extraction in worker threads, preprocessing and batched inference on the caller's thread."""

    def __init__(
        self,
        *,
        model: LoadedModel,
        device: torch.device,
        backend: str,
        storage_options: dict[str, Any] | None,
        frames_per_video: int,
        random_seed: int,
        offset_max_seconds: float | None,
        batch_size: int,
        top_k: int,
        return_frame_png: bool,
        index_cache: Any,
        wandb_max_images: int,
    ) -> None:
        self.model = model
        self.device = device
        self.backend = backend
        self.storage_options = storage_options
        self.frames_per_video = frames_per_video
        self.random_seed = random_seed
        self.batch_size = batch_size
        self.top_k = top_k
        self.return_frame_png = return_frame_png
        self.index_cache = index_cache
        self.wandb_max_images = wandb_max_images
        self.sampler = frame_sampler(frames_per_video, offset_max_seconds)
        self.images: list[_Image] = []
        self.proxy: TrackingProxy | None = None
        """Set for ``via="proxy"``: videos are read by FFmpeg through it."""
        # Frames waiting for a full batch: tensors and, per frame, (video, position in video).
        self._pending: list[torch.Tensor] = []
        self._owners: list[tuple[VideoResult, int]] = []
        self._lock = threading.Lock()

    # -- stage 2: one video, in a worker thread --------------------------------

    def extract(self, index: int, url: str) -> _Extracted:
        if self.proxy is not None:
            return self._extract_via_proxy(self.proxy, index, url)
        vr = VideoResult(index=index, url=redact_url(url))
        stats = TransferStats()
        t0 = time.perf_counter()
        frames = None
        try:
            reader_device = str(self.device) if self.device.type == "cuda" else None
            with VideoReader(
                url,
                backend=self.backend,
                storage_options=self.storage_options,
                device=reader_device,
                stats=stats,
                index_cache=self.index_cache,
            ) as reader:
                frames = self._read(reader, vr)
            vr.ok = True
        except Exception as e:  # one failing video never stops the batch
            frames = None
            log.warning("video %d %s failed: %s: %s", index, vr.url, type(e).__name__, vr.fail(e))
        finally:
            vr.frame_extraction_time_seconds = time.perf_counter() - t0
            vr.bandwidth_upstream_bytes = stats.bytes_received
            vr.bandwidth_requested_bytes = stats.bytes_requested
            vr.bandwidth_num_requests = stats.num_requests
        return _Extracted(vr, frames)

    def _extract_via_proxy(self, proxy: TrackingProxy, index: int, url: str) -> _Extracted:
        """``extract`` on the URL-only path: FFmpeg reads the video through the proxy, which counts."""
        vr = VideoResult(index=index, url=redact_url(url))
        t0 = time.perf_counter()
        frames = None
        purl = proxy.url_for(url)
        try:
            got = read_via_proxy(purl, url, self.sampler, np.random.default_rng((self.random_seed, index)))
            m = got.metadata
            vr.num_frames, vr.fps, vr.duration_seconds = m.num_frames, m.fps, m.duration_seconds
            vr.width, vr.height, vr.codec, vr.container = got.width, got.height, got.codec, got.container
            vr.access_path, vr.backend = "proxy", "pyav"
            vr.frames_requested, vr.frames_returned = self.frames_per_video, len(got.indices)
            vr.selected_frame_indices = got.indices
            vr.selected_timestamps_seconds = got.timestamps_seconds
            frames = got.frames
            self._keep_frames(vr, frames)
            vr.ok = True
        except Exception as e:  # one failing video never stops the batch
            frames = None
            log.warning("video %d %s failed: %s: %s", index, vr.url, type(e).__name__, vr.fail(e))
        finally:
            vr.frame_extraction_time_seconds = time.perf_counter() - t0
            usage = proxy.usage(purl)
            vr.bandwidth_upstream_bytes = usage["upstream_bytes"]
            vr.bandwidth_requested_bytes = usage["upstream_bytes"]
            vr.bandwidth_num_requests = usage["upstream_requests"]
            vr.bandwidth_downstream_bytes = usage["downstream_bytes"]
            vr.bandwidth_num_proxy_requests = usage["num_requests"]
        return _Extracted(vr, frames)

    def _read(self, reader: VideoReader, vr: VideoResult) -> torch.Tensor:
        """Describe the video in ``vr``, choose its frames, decode them."""
        m = reader.metadata
        vr.num_frames, vr.fps, vr.duration_seconds = m.num_frames, m.fps, m.duration_seconds
        vr.width, vr.height, vr.codec = m.width, m.height, m.codec
        vr.container, vr.access_path, vr.backend = m.container, m.access_path, reader.backend
        if reader.index is not None and reader.index.file_size is not None:
            vr.file_size_bytes = int(reader.index.file_size)
        rng = np.random.default_rng((self.random_seed, vr.index))
        chosen = choose_frames(self.sampler, reader, rng)
        vr.frames_requested, vr.frames_returned = self.frames_per_video, len(chosen)
        if len(chosen) < self.frames_per_video:
            log.info(
                "video %d %s: %d frames asked, %d in the window: each taken once",
                vr.index,
                vr.url,
                self.frames_per_video,
                len(chosen),
            )
        batch = reader.get_frames_at(chosen)
        vr.selected_frame_indices = chosen
        vr.selected_timestamps_seconds = [float(t) for t in batch.pts_seconds.tolist()]
        vr.bandwidth_downstream_bytes = int(reader.last_decode_nbytes)
        frames = batch.data
        self._keep_frames(vr, frames)
        return frames

    def _keep_frames(self, vr: VideoResult, frames: torch.Tensor) -> None:
        """The PNGs asked for (``return_frame_png``) and, while W&B wants more, the first frame as an image."""
        if self.return_frame_png:
            vr.frame_png_bytes_list = [encode_png(f) for f in frames]
        if self.wandb_max_images:
            with self._lock:
                if len(self.images) < self.wandb_max_images:
                    self.images.append((frames[0].detach().cpu().permute(1, 2, 0).numpy().copy(), "", vr, 0))

    # -- stages 3 and 4 ----------------------------------------------------------

    def preprocess(self, item: _Extracted) -> None:
        vr = item.result
        if item.frames is None:
            return
        try:
            sync(self.device)
            t0 = time.perf_counter()
            x = item.frames.to(self.device, non_blocking=True)
            x = self.model.preprocess(x)
            sync(self.device)
            vr.preprocess_time_seconds = time.perf_counter() - t0
        except Exception as e:
            log.warning("video %d %s: preprocessing failed: %s", vr.index, vr.url, vr.fail(e))
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
                vr.fail(e)
            self._pending, self._owners = [], []
            return
        n_run = len(owners) if final else (len(owners) // self.batch_size) * self.batch_size
        for start in range(0, n_run, self.batch_size):
            stop = min(start + self.batch_size, n_run)
            self._forward(x[start:stop], owners[start:stop])
        self._pending = [x[n_run:]] if n_run < len(owners) else []
        self._owners = owners[n_run:]

    def _forward(self, x: torch.Tensor, owners: list[tuple[VideoResult, int]]) -> None:
        sync(self.device)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                probs = torch.softmax(logits_of(self.model.fn(x)).float(), dim=-1)
                k = min(self.top_k, probs.shape[-1])
                top_p_t, top_i_t = probs.topk(k, dim=-1)
            top_p, top_i = top_p_t.cpu().tolist(), top_i_t.cpu().tolist()
        except Exception as e:
            for vr in {id(v): v for v, _ in owners}.values():
                vr.fail(e)
            log.warning("inference failed on a batch of %d frames: %s", len(owners), e)
            return
        finally:
            sync(self.device)
            share = (time.perf_counter() - t0) / max(len(owners), 1)
            for vr, _ in owners:
                vr.inference_time_seconds += share
        names = self.model.class_names
        for (vr, _), ps, idx in zip(owners, top_p, top_i, strict=True):
            classes = [names[i] if names is not None and i < len(names) else f"class_{i}" for i in idx]
            vr.predictions.append(
                [
                    {"class": c, "index": int(i), "confidence": float(p)}
                    for c, i, p in zip(classes, idx, ps, strict=True)
                ]
            )
            vr.top_classes.append(classes[0])
            vr.top_class_indices.append(int(idx[0]))
            vr.confidences.append(float(ps[0]))

    def run(
        self, urls: Sequence[str], *, first_video_index: int, num_workers: int, progress: Progress | None
    ) -> list[VideoResult]:
        total = len(urls)
        results: list[VideoResult] = []
        with ThreadPoolExecutor(max_workers=min(num_workers, total), thread_name_prefix="videoloader-infer") as pool:
            queue: collections.deque[Future[_Extracted]] = collections.deque()
            jobs: Iterator[tuple[int, str]] = iter(enumerate(urls, start=first_video_index))
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
            vr.total_time_seconds = (
                vr.frame_extraction_time_seconds + vr.preprocess_time_seconds + vr.inference_time_seconds
            )
            if vr.ok and len(vr.top_classes) != len(vr.selected_frame_indices):
                vr.ok = False
                vr.error = vr.error or {"type": "RuntimeError", "message": "missing predictions", "traceback": ""}
        self.images = [self._caption(arr, vr, k) for arr, _, vr, k in sorted(self.images, key=lambda im: im[2].index)]
        return results

    @staticmethod
    def _caption(arr: np.ndarray, vr: VideoResult, k: int) -> _Image:
        label = f": {vr.top_classes[k]} ({vr.confidences[k]:.2f})" if vr.ok and vr.top_classes else ""
        return arr, f"video {vr.index} @ {vr.selected_timestamps_seconds[k]:.3f} s{label}", vr, k
