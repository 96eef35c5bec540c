"""Modal app: ``run_inference`` on a B200 (or any GPU), fanned out over many containers.

Run (from the repository root; needs ``pip install 'videoloader[modal]'`` and ``modal token new``)::

    modal run modal_jobs/inference_app.py --urls https://host/a.mp4,https://host/b.mp4 --frames 4 --seed 0
    modal run modal_jobs/inference_app.py --urls-file urls.txt --shard-size 64 --out-dir modal_out
    VIDEOLOADER_MODAL_WANDB=1 modal run modal_jobs/inference_app.py --urls-file urls.txt --wandb

What runs where:

* image: ``nvidia/cuda`` CUDA 13 cuDNN runtime (Ubuntu 24.04) + Python 3.12, the
  system libraries PyAV / PyNvVideoCodec load, then the dependencies installed
  with ``pip`` (torch, PyNvVideoCodec...: layers that a source edit does not
  rebuild), then this checkout copied and installed without dependencies, and
  ``add_local_python_source`` last.
* NVDEC in the container: ``import PyNvVideoCodec`` needs the driver's
  ``libnvidia-encode.so.1`` and decoding needs ``libnvcuvid.so.1``; they are
  mounted only when ``NVIDIA_DRIVER_CAPABILITIES`` includes ``video`` (set in
  the image) and the sandbox allows it. :func:`infer_shard` checks at start-up
  (:func:`nvdec_status`), records the answer in its result's
  ``platform_info``, and when NVDEC is missing decodes on the CPU with a
  warning (``backend="auto"``) instead of failing.
* :func:`infer_shard` (GPU ``GPU``, timeout ``TIMEOUT_SECONDS``): one shard of
  URLs through ``run_inference``; model weights cached on the Volume ``VOLUME_NAME``
  at ``WEIGHTS_MOUNT`` (``TORCH_HOME``), downloaded once per volume.
* :func:`fan_out`: splits the URL list into shards of ``shard_size``, maps them
  over containers (``infer_shard.map``), merges videos and totals.
* :func:`main` (local entrypoint): reads the options, calls ``fan_out``, writes
  ``result.json`` and the decoded frames (PNG) into ``--out-dir``.

The GPU, timeout, volume and secret are module constants (tested; Modal does
not report timeouts back). Override the GPU and timeout with the environment
variables ``VIDEOLOADER_MODAL_GPU`` and ``VIDEOLOADER_MODAL_TIMEOUT`` when
running ``modal run``; W&B needs ``VIDEOLOADER_MODAL_WANDB=1`` (which attaches
the ``wandb-secret`` Secret, holding ``WANDB_API_KEY``) plus ``--wandb``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from videoloader._optional import require

# The job (torch, the reader) is imported where it runs, so `modal run` starts quickly on the local side.
modal: Any = require("modal", purpose="the Modal app (modal_jobs/inference_app.py)")

APP_NAME = "videoloader-inference"
CUDA_IMAGE = "nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04"
PYTHON_VERSION = "3.12"
GPU = os.environ.get("VIDEOLOADER_MODAL_GPU", "B200")
"""GPU type of :func:`infer_shard` (``"B200"``; ``"H100"``, ``"L40S"``, ``"A10"``... also work)."""
TIMEOUT_SECONDS = int(os.environ.get("VIDEOLOADER_MODAL_TIMEOUT", "3600"))
"""Wall-clock limit of one shard (one container call)."""
VOLUME_NAME = "videoloader-weights"
WEIGHTS_MOUNT = "/weights"
TORCH_HOME = f"{WEIGHTS_MOUNT}/torch"
"""torch.hub caches pretrained weights under ``$TORCH_HOME/hub/checkpoints`` on the Volume."""
WANDB_SECRET_NAME = "wandb-secret"
USE_WANDB = os.environ.get("VIDEOLOADER_MODAL_WANDB", "") not in ("", "0", "false", "False")
"""Attach ``WANDB_SECRET_NAME`` to the GPU function (the Secret must exist in your Modal workspace)."""
DEFAULT_SHARD_SIZE = 64
REPO_ROOT = Path(__file__).resolve().parent.parent
REMOTE_SRC = "/opt/videoloader-src"
APT_PACKAGES = (
    # PyAV and PyNvVideoCodec wheels bundle FFmpeg; these are what those libraries still dlopen.
    "libgl1",
    "libglib2.0-0",
    "libgomp1",
    "libxcb1",
    "ca-certificates",
)
IMAGE_ENV = {
    "TORCH_HOME": TORCH_HOME,
    # NVDEC needs the driver's video libraries (libnvcuvid, libnvidia-encode) in the container.
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility,video",
    "PYTHONUNBUFFERED": "1",
}
SOURCE_IGNORE = [
    ".venv",
    ".git",
    "**/__pycache__",
    "*.pyc",
    "wandb",
    "build",
    "dist",
    "*.egg-info",
    "modal_out",
    "benchmarks/results",
    ".pytest_cache",
]


def _secrets() -> list[Any]:
    """The Secrets attached to :func:`infer_shard` (``wandb-secret`` when ``USE_WANDB``)."""
    return [modal.Secret.from_name(WANDB_SECRET_NAME)] if USE_WANDB else []


def pip_requirements() -> list[str]:
    """The dependencies (core and the ``nvdec``, ``vision``, ``wandb`` extras) from ``pyproject.toml``.

    Installed in their own layer before the source is copied, so editing the
    code does not reinstall torch.
    """
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    reqs = list(project.get("dependencies", []))
    for extra in ("nvdec", "vision", "wandb"):
        reqs += extras.get(extra, [])
    return reqs


image = (
    modal.Image.from_registry(CUDA_IMAGE, add_python=PYTHON_VERSION)
    .apt_install(*APT_PACKAGES)
    .env(IMAGE_ENV)
    .pip_install(*pip_requirements())
    .add_local_dir(REPO_ROOT, REMOTE_SRC, copy=True, ignore=SOURCE_IGNORE)
    .run_commands(f"python -m pip install --no-deps '{REMOTE_SRC}'")
    .add_local_python_source("videoloader")
)

app = modal.App(APP_NAME, image=image)
weights_volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)


# --------------------------------------------------------------------------- plain functions (tested locally)


def split_shards(urls: list[str], shard_size: int = DEFAULT_SHARD_SIZE) -> list[tuple[int, list[str]]]:
    """``[(first_video_index, urls), ...]`` of at most ``shard_size`` URLs each, in order."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [(i, list(urls[i : i + shard_size])) for i in range(0, len(urls), shard_size)]


def nvdec_status() -> dict[str, Any]:
    """Whether this container decodes with NVDEC, and why not: ``platform_info()`` plus the driver libraries.

    Never raises. Keys: ``nvdec_available``, ``nvdec_reason``, ``libnvcuvid``
    and ``libnvidia_encode`` (loadable or the loader's error), and
    ``platform_info`` (``videoloader.platform_info()``, or its error).
    """
    import ctypes

    status: dict[str, Any] = {}
    for key, lib in (("libnvcuvid", "libnvcuvid.so.1"), ("libnvidia_encode", "libnvidia-encode.so.1")):
        try:
            ctypes.CDLL(lib)
            status[key] = True
        except OSError as e:
            status[key] = f"not loadable: {e}"
    try:
        from videoloader.decoders import platform_info

        info = platform_info()
        nv = info["backends"].get("nvdec", {})
        status.update(nvdec_available=bool(nv.get("available")), nvdec_reason=str(nv.get("reason", "")))
        status["platform_info"] = info
    except Exception as e:
        status.update(nvdec_available=False, nvdec_reason=f"{type(e).__name__}: {e}", platform_info=None)
    return status


def run_shard(urls: list[str], options: dict[str, Any] | None = None, first_video_index: int = 0) -> dict[str, Any]:
    """The body of :func:`infer_shard`: ``run_inference`` over one shard (runs anywhere).

    ``options`` are ``run_inference`` keyword arguments (``frames_per_video``,
    ``random_seed``, ``model``, ``weights``, ...). Video indices (and the seeded
    frame choice) follow the position in the full list, so shards merge into
    exactly what one big call would give.
    """
    from videoloader.job import run_inference

    opts = dict(options or {})
    if opts.get("wandb") and not isinstance(opts["wandb"], dict):
        opts["wandb"] = {"group": opts.pop("wandb_group", None) or APP_NAME, "name": f"shard-{first_video_index}"}
    opts.pop("wandb_group", None)
    return run_inference(video_urls=list(urls), first_video_index=first_video_index, **opts)


_SUM_KEYS = (
    "num_videos",
    "num_succeeded",
    "num_failed",
    "model_load_time_seconds",
    "frame_extraction_time_seconds",
    "preprocess_time_seconds",
    "inference_time_seconds",
    "bandwidth_total_upstream_bytes",
    "bandwidth_total_downstream_bytes",
    "bandwidth_num_requests",
)
# Summed when the shards report them (they depend on the run's options).
_OPTIONAL_SUM_KEYS = ("num_videos_with_fewer_frames", "bandwidth_num_proxy_requests")
_CONCAT_KEYS = ("top_classes", "confidences", "selected_timestamps_seconds", "videos", "frame_png_bytes_list")


def merge_results(results: list[dict[str, Any]], *, wall_seconds: float | None = None) -> dict[str, Any]:
    """Merge shard results (in shard order) into one result with the same keys.

    Lists are concatenated, counts, bytes and stage times summed (stage times are
    container-seconds), ``total_pipeline_time_seconds`` is ``wall_seconds`` (the
    fan-out's wall clock) or the slowest shard, and ``shards`` says how many.
    """
    if not results:
        raise ValueError("merge_results needs at least one shard result")
    merged = {k: v for k, v in results[0].items() if k not in _SUM_KEYS and k not in _CONCAT_KEYS}
    for k in _SUM_KEYS:
        merged[k] = sum(r[k] for r in results)
    for k in _OPTIONAL_SUM_KEYS:
        if any(k in r for r in results):
            merged[k] = sum(r.get(k) or 0 for r in results)
    for k in _CONCAT_KEYS:
        if any(k in r for r in results):
            merged[k] = [x for r in results for x in r.get(k, [])]
    merged["bandwidth_total_upstream_mb"] = merged["bandwidth_total_upstream_bytes"] / 1e6
    merged["bandwidth_total_downstream_mb"] = merged["bandwidth_total_downstream_bytes"] / 1e6
    merged["total_pipeline_time_seconds"] = (
        wall_seconds if wall_seconds is not None else max(r["total_pipeline_time_seconds"] for r in results)
    )
    n, failed = merged["num_videos"], merged["num_failed"]
    merged["status"] = "ok" if failed == 0 else ("failed" if failed == n else "partial")
    merged["shards"] = len(results)
    merged["gpu_names"] = sorted({r["gpu_name"] for r in results if r.get("gpu_name")})
    return merged


def write_outputs(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``result.json`` (PNG bytes replaced by file names) and ``frames/*.png`` into ``out_dir``."""
    from videoloader.job import save_frame_pngs, without_pngs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = save_frame_pngs(result, out / "frames", digits=5)
    relative = {i: [str(p.relative_to(out)) for p in paths] for i, paths in saved.items()}
    path = out / "result.json"
    path.write_text(json.dumps(without_pngs(result, relative), indent=2, default=str) + "\n")
    return path


# --------------------------------------------------------------------------- Modal functions


@app.function(
    gpu=GPU,
    timeout=TIMEOUT_SECONDS,
    volumes={WEIGHTS_MOUNT: weights_volume},
    secrets=_secrets(),
)
def infer_shard(urls: list[str], options: dict[str, Any] | None = None, first_video_index: int = 0) -> dict[str, Any]:
    """One shard on one GPU container; returns ``run_inference``'s dict plus ``platform_info``.

    NVDEC is checked first: when the container lacks it (no ``video`` driver
    capability, no libnvcuvid), an ``"nvdec"`` backend request becomes
    ``"auto"`` (CPU decoding, model still on the GPU) with a warning, and the
    reason is in ``platform_info``.
    """
    import logging

    os.environ.setdefault("TORCH_HOME", TORCH_HOME)
    status = nvdec_status()
    opts = dict(options or {})
    if not status["nvdec_available"]:
        logging.getLogger("videoloader.modal").warning(
            "NVDEC is not available in this container (%s); decoding on the CPU", status["nvdec_reason"]
        )
        if opts.get("backend") == "nvdec":
            opts["backend"] = "auto"
    result = run_shard(urls, opts, first_video_index)
    result["platform_info"] = status
    try:
        weights_volume.commit()  # persist weights downloaded by this container
    except Exception:  # running locally (.local()) there is no volume to commit
        pass
    return result


def fan_out(
    urls: list[str], options: dict[str, Any] | None = None, *, shard_size: int = DEFAULT_SHARD_SIZE, local: bool = False
) -> dict[str, Any]:
    """Split ``urls`` into shards, run them over containers, merge (``local=True``: in this process)."""
    t0 = time.perf_counter()
    shards = split_shards(urls, shard_size)
    if local:
        results = [run_shard(chunk, options, first) for first, chunk in shards]
    else:
        results = list(infer_shard.starmap([(chunk, options, first) for first, chunk in shards], order_outputs=True))
    return merge_results(results, wall_seconds=time.perf_counter() - t0)


@app.local_entrypoint()
def main(
    urls: str = "",
    urls_file: str = "",
    frames: int = 1,
    seed: int = 0,
    offset_max_seconds: float = 0.0,
    model: str = "resnet18",
    weights: str = "DEFAULT",
    backend: str = "auto",
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    out_dir: str = "modal_out",
    save_frames: bool = True,
    wandb: bool = False,
) -> None:
    """``modal run modal_jobs/inference_app.py --urls a,b --frames 4 --out-dir modal_out``."""
    url_list = [u.strip() for u in urls.split(",") if u.strip()]
    if urls_file:
        url_list += [
            line.strip()
            for line in Path(urls_file).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    if not url_list:
        raise SystemExit("give --urls URL[,URL...] or --urls-file FILE (public http(s):// or s3:// URLs)")
    if wandb and not USE_WANDB:
        raise SystemExit(
            "--wandb needs VIDEOLOADER_MODAL_WANDB=1 in the environment (attaches the wandb-secret Secret)"
        )
    options = {
        "frames_per_video": frames,
        "random_seed": seed,
        "offset_max_seconds": offset_max_seconds or None,
        "model": model,
        "weights": None if weights.lower() == "none" else weights,
        "backend": backend,
        "device": "cuda",
        "batch_size": batch_size,
        "return_frame_png": save_frames,
        "wandb": wandb,
    }
    result = fan_out(url_list, options, shard_size=shard_size)
    path = write_outputs(result, out_dir)
    print(
        f"{result['num_succeeded']}/{result['num_videos']} videos ok on {result['gpu_names'] or result['device']} "
        f"in {result['shards']} shard(s); {result['bandwidth_total_upstream_mb']:.2f} MB upstream, "
        f"{result['total_pipeline_time_seconds']:.1f} s; results in {path}"
    )
    for v in result["videos"]:
        if not v["ok"]:
            print(f"FAILED {v['index']} {v['url']}: {v['error']['type']}: {v['error']['message']}")
    if result["num_failed"]:
        raise SystemExit(1)
