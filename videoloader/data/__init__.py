"""Datasets, frame samplers and loaders for PyTorch training over video URLs.

``VideoFrameDataset`` (map-style) and ``VideoFrameIterableDataset``
(streaming, sharded by rank and worker) work with ``torch.utils.data.DataLoader``
(any ``num_workers``, fork or spawn) and ``StatefulDataLoader``;
``make_node_loader`` builds a thread-based ``torchdata.nodes`` pipeline instead.
``set_epoch`` reaches workers kept by ``persistent_workers=True``. The errors
(``ManifestError``, ``SamplingError``, ``SampleError``) live in the one tree of
``videoloader._errors`` and are re-exported here.
"""

from .._errors import ManifestError, SampleError, SamplingError
from ._collate import collate_samples, collate_skip_none
from ._dataset import VideoFrameDataset, VideoFrameIterableDataset
from ._nodes import make_node_loader
from ._samplers import AllFrames, FrameSampler, FrameWindow, RandomClip, RandomFrames, UniformClip
from ._sources import Columns, SourceTable, VideoRecord, iter_manifest, read_manifest

__all__ = [
    "AllFrames",
    "Columns",
    "FrameSampler",
    "FrameWindow",
    "ManifestError",
    "RandomClip",
    "RandomFrames",
    "SampleError",
    "SamplingError",
    "SourceTable",
    "UniformClip",
    "VideoFrameDataset",
    "VideoFrameIterableDataset",
    "VideoRecord",
    "collate_samples",
    "collate_skip_none",
    "iter_manifest",
    "make_node_loader",
    "read_manifest",
]
