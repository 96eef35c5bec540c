"""Weights & Biases logging for ``run_inference`` behind a small sink interface.

``wandb`` is an optional extra (``pip install 'videoloader[wandb]'``) and costs
about 0.8 s to import, so it is imported only when a :class:`WandbSink` is
created. Anything with the :class:`MetricsSink` methods can stand in for it
(the tests use an in-memory fake).

What a run gets (:func:`log_inference`):

* config: model, weights, device, backend, frames_per_video, random_seed,
  offset_max_seconds, batch_size, platform, versions, number of videos;
* metrics (also the run summary): per-stage timings, bandwidth totals (bytes
  and MB), request count, videos ok / failed, videos that held fewer frames
  than asked;
* a ``videos`` table: one row per video (index, redacted URL, status, top
  class, confidence, timestamps, upstream / downstream bytes, stage times, error);
* ``frames``: a few decoded frames as images, captioned with video, time and class.

Only what ``run_inference`` already redacted reaches a sink: URLs without
user-info or query string, error messages with every URL redacted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._optional import require

__all__ = ["CONFIG_KEYS", "METRIC_KEYS", "TABLE_COLUMNS", "MetricsSink", "WandbSink", "log_inference"]

CONFIG_KEYS = (
    "model",
    "weights",
    "device",
    "gpu_name",
    "cuda_version",
    "torch_version",
    "platform",
    "backend",
    "frames_per_video",
    "random_seed",
    "offset_max_seconds",
    "batch_size",
    "num_videos",
)
METRIC_KEYS = (
    "model_load_time_seconds",
    "frame_extraction_time_seconds",
    "preprocess_time_seconds",
    "inference_time_seconds",
    "total_pipeline_time_seconds",
    "bandwidth_total_upstream_bytes",
    "bandwidth_total_downstream_bytes",
    "bandwidth_total_upstream_mb",
    "bandwidth_total_downstream_mb",
    "bandwidth_num_requests",
    "num_succeeded",
    "num_failed",
    "num_videos_with_fewer_frames",
)
TABLE_COLUMNS = (
    "index",
    "url",
    "status",
    "top_class",
    "confidence",
    "timestamps_seconds",
    "upstream_bytes",
    "downstream_bytes",
    "frame_extraction_time_seconds",
    "preprocess_time_seconds",
    "inference_time_seconds",
    "error",
)


@runtime_checkable
class MetricsSink(Protocol):
    """Where ``run_inference`` sends what it measured."""

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, Any]) -> None: ...

    def log_table(self, name: str, columns: Sequence[str], rows: list[list[Any]]) -> None: ...

    def log_images(self, name: str, images: list[tuple[np.ndarray, str]]) -> None:
        """``images``: ``(H x W x 3 uint8 array, caption)`` pairs."""

    def finish(self) -> None: ...


class WandbSink:
    """A :class:`MetricsSink` writing to one W&B run (created on construction).

    Args:
        project: W&B project (default ``$WANDB_PROJECT``, else ``videoloader``).
        entity, name, group, tags, notes, job_type: as in ``wandb.init``.
        mode: ``online``, ``offline`` or ``disabled`` (default: ``$WANDB_MODE`` / wandb's default).
        dir: where the run files go (default ``$WANDB_DIR`` / the working directory).
        settings: extra ``wandb.init`` keyword arguments.

    Raises:
        MissingDependencyError: wandb is not installed (``pip install 'videoloader[wandb]'``).
    """

    def __init__(
        self,
        *,
        project: str | None = None,
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
        job_type: str = "inference",
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        **settings: Any,
    ) -> None:
        wandb = require("wandb", purpose="W&B logging")
        self._wandb = wandb
        self.project = project or os.environ.get("WANDB_PROJECT") or "videoloader"
        kwargs: dict[str, Any] = dict(
            project=self.project,
            entity=entity,
            name=name,
            group=group,
            tags=list(tags) if tags else None,
            notes=notes,
            job_type=job_type,
            reinit="create_new",
        )
        if mode is not None:
            kwargs["mode"] = mode
        if dir is not None:
            kwargs["dir"] = os.fspath(dir)
        kwargs.update(settings)
        self.run = wandb.init(**{k: v for k, v in kwargs.items() if v is not None})

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        self.run.log(metrics)
        for k, v in metrics.items():
            self.run.summary[k] = v

    def log_table(self, name: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        self.run.log({name: self._wandb.Table(columns=list(columns), data=rows)})

    def log_images(self, name: str, images: list[tuple[np.ndarray, str]]) -> None:
        if images:
            self.run.log({name: [self._wandb.Image(arr, caption=caption) for arr, caption in images]})

    def finish(self) -> None:
        self.run.finish()


def _table_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for v in result["videos"]:
        err = v.get("error")
        rows.append(
            [
                v["index"],
                v["url"],
                v["status"],
                v["top_classes"][0] if v["top_classes"] else None,
                v["confidences"][0] if v["confidences"] else None,
                ", ".join(f"{t:.3f}" for t in v["selected_timestamps_seconds"]),
                v["bandwidth_upstream_bytes"],
                v["bandwidth_downstream_bytes"],
                v["frame_extraction_time_seconds"],
                v["preprocess_time_seconds"],
                v["inference_time_seconds"],
                f"{err['type']}: {err['message']}" if err else None,
            ]
        )
    return rows


def log_inference(sink: MetricsSink, result: dict[str, Any], *, images: Sequence[tuple[Any, ...]] = ()) -> None:
    """Send one ``run_inference`` result to ``sink`` (config, metrics, per-video table, frames).

    Args:
        sink: a :class:`MetricsSink`.
        result: the dict ``run_inference`` returns.
        images: ``(H x W x 3 uint8 array, caption, ...)`` tuples; extra items are ignored.
    """
    sink.log_config({k: result.get(k) for k in CONFIG_KEYS})
    sink.log_metrics({k: result[k] for k in METRIC_KEYS})
    sink.log_table("videos", TABLE_COLUMNS, _table_rows(result))
    sink.log_images("frames", [(np.asarray(item[0]), str(item[1])) for item in images])
