"""The application built on the reader: classify frames sampled from videos by URL, and report.

``run_inference`` (also ``videoloader.run_inference``) is the job behind the
``videoloader`` command and the Modal app. The package keeps one concern per
module: the result schema (``_schema``), model loading (``_model``,
``_preprocess``), frame choice and PNG output (``_frames``), the run
(``_run``), the W&B sink (``_wandb``), log setup (``_logging``) and the
``inspect`` / ``info`` reports (``_inspect``). Importing it loads torch and
the reader; torchvision and wandb are imported only when a model by name or a
W&B run is asked for.
"""

from __future__ import annotations

from .._errors import WeightsUnavailableError
from ._frames import encode_png, save_frame_pngs, without_pngs
from ._inspect import collect_info, inspect_video
from ._model import DEFAULT_MODEL
from ._preprocess import ImageNetPreprocess
from ._run import run_inference
from ._schema import InferenceResult, VideoResult
from ._wandb import MetricsSink, WandbSink, log_inference

__all__ = [
    "DEFAULT_MODEL",
    "ImageNetPreprocess",
    "InferenceResult",
    "MetricsSink",
    "VideoResult",
    "WandbSink",
    "WeightsUnavailableError",
    "collect_info",
    "encode_png",
    "inspect_video",
    "log_inference",
    "run_inference",
    "save_frame_pngs",
    "without_pngs",
]
