"""The public surface: pinned names, lazy imports, the error tree."""

from __future__ import annotations

import subprocess
import sys

import pytest

import videoloader

PUBLIC = [
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


def test_public_names_are_pinned_sorted_and_resolve():
    assert videoloader.__all__ == PUBLIC == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(videoloader, name) is not None, name
    with pytest.raises(AttributeError):
        videoloader.NoSuchThing  # noqa: B018


def test_import_is_light():
    code = (
        "import sys, videoloader; "
        "print(sorted(m for m in ('torch', 'av', 'PyNvVideoCodec', 'modal', 'wandb', 'torchcodec', 'decord', "
        "'torchdata') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_error_tree_subclasses_the_builtins_callers_catch():
    assert issubclass(videoloader.SourceNotFoundError, FileNotFoundError)
    assert issubclass(videoloader.SourceAccessError, PermissionError)
    assert issubclass(videoloader.TransferError, TimeoutError)
    assert issubclass(videoloader.MP4ParseError, ValueError)
    assert issubclass(videoloader.UnsupportedFormatError, NotImplementedError)
    assert issubclass(videoloader.CorruptVideoError, videoloader.DecodeError)
    for name in PUBLIC:
        obj = getattr(videoloader, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, videoloader.VideoLoaderError), name
