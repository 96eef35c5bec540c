"""videoloader: frame-exact random access to remote videos for PyTorch.

Only public names live here. They are imported on first use (PEP 562), so
``import videoloader`` is cheap in DataLoader workers and never fails for
want of an optional backend (PyNvVideoCodec, torchdata, wandb, modal).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    BackendUnavailableError,
    ContainerError,
    CorruptVideoError,
    DecodeError,
    MatroskaParseError,
    MissingDependencyError,
    MP4ParseError,
    NotAVideoError,
    OriginRefusedError,
    RangeRequestError,
    SourceAccessError,
    SourceChangedError,
    SourceError,
    SourceNotFoundError,
    SourceUnreachableError,
    TrackNotFoundError,
    TransferError,
    TruncatedFileError,
    UnsupportedFormatError,
    VideoLoaderError,
)
from ._types import ByteRange, Frame, FrameBatch, VideoMetadata

__version__ = "0.1.0"

# Public name -> module that defines it, imported lazily.
_LAZY = {
    "AllFrames": "videoloader.data",
    "RandomClip": "videoloader.data",
    "RandomFrames": "videoloader.data",
    "SampleIndex": "videoloader.mp4",
    "TransferStats": "videoloader.io",
    "UniformClip": "videoloader.data",
    "VideoDecoder": "videoloader._torchcodec_api",
    "VideoFrameDataset": "videoloader.data",
    "VideoReader": "videoloader._reader",
    "platform_info": "videoloader.decoders",
    "read_index": "videoloader.mp4",
    "register_backend": "videoloader.decoders",
    "run_inference": "videoloader.job",
}

__all__ = [
    "AllFrames",
    "BackendUnavailableError",
    "ByteRange",
    "ContainerError",
    "CorruptVideoError",
    "DecodeError",
    "Frame",
    "FrameBatch",
    "MP4ParseError",
    "MatroskaParseError",
    "MissingDependencyError",
    "NotAVideoError",
    "OriginRefusedError",
    "RandomClip",
    "RandomFrames",
    "RangeRequestError",
    "SampleIndex",
    "SourceAccessError",
    "SourceChangedError",
    "SourceError",
    "SourceNotFoundError",
    "SourceUnreachableError",
    "TrackNotFoundError",
    "TransferError",
    "TransferStats",
    "TruncatedFileError",
    "UniformClip",
    "UnsupportedFormatError",
    "VideoDecoder",
    "VideoFrameDataset",
    "VideoLoaderError",
    "VideoMetadata",
    "VideoReader",
    "platform_info",
    "read_index",
    "register_backend",
    "run_inference",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'videoloader' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from ._reader import VideoReader
    from ._torchcodec_api import VideoDecoder
    from .data import AllFrames, RandomClip, RandomFrames, UniformClip, VideoFrameDataset
    from .decoders import platform_info, register_backend
    from .io import TransferStats
    from .job import run_inference
    from .mp4 import SampleIndex, read_index
