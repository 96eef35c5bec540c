"""Small value objects shared by every layer.

``ByteRange`` is used by ``io/``, ``mp4/`` and the planner, so this module
must not import torch or av at import time.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ByteRange", "Frame", "FrameBatch", "VideoMetadata"]


@dataclass(frozen=True, order=True)
class ByteRange:
    """A half-open byte range ``[start, stop)`` of a source."""

    start: int
    """First byte (inclusive)."""
    stop: int
    """One past the last byte (exclusive)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.stop, int)):
            object.__setattr__(self, "start", int(self.start))
            object.__setattr__(self, "stop", int(self.stop))
        if self.start < 0 or self.stop < self.start:
            raise ValueError(f"ByteRange needs 0 <= start <= stop, got [{self.start}, {self.stop})")

    @property
    def nbytes(self) -> int:
        """Length of the range in bytes."""
        return self.stop - self.start

    def http_header(self) -> str:
        """The HTTP Range header value (inclusive end, as the wire wants)."""
        return f"bytes={self.start}-{self.stop - 1}"


@dataclass
class FrameBatch:
    """Frames returned by a reader, in the order they were asked for."""

    data: torch.Tensor
    """uint8 RGB frames, ``N x C x H x W`` (or ``N x H x W x C`` for NHWC).

    NCHW data from the CPU backend is a view of channel-last memory (as
    torchcodec returns it); call ``.contiguous()`` where packed NCHW is needed."""
    pts_seconds: torch.Tensor
    """float64 presentation time of each frame, shape ``N``."""
    duration_seconds: torch.Tensor
    """float64 display duration of each frame, shape ``N``."""

    def __post_init__(self) -> None:
        n = self.data.shape[0] if self.data.ndim else -1
        if self.data.ndim != 4:
            raise ValueError(f"FrameBatch.data must be 4-D, got shape {tuple(self.data.shape)}")
        if tuple(self.pts_seconds.shape) != (n,) or tuple(self.duration_seconds.shape) != (n,):
            raise ValueError(
                f"FrameBatch: data has {n} frames but pts_seconds has shape "
                f"{tuple(self.pts_seconds.shape)} and duration_seconds {tuple(self.duration_seconds.shape)}"
            )

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, key: int | slice) -> Frame | FrameBatch:
        """``batch[i]`` is a :class:`Frame`; ``batch[a:b]`` a FrameBatch (as in torchcodec)."""
        if isinstance(key, slice):
            return FrameBatch(self.data[key], self.pts_seconds[key], self.duration_seconds[key])
        i = operator.index(key)
        return Frame(self.data[i], float(self.pts_seconds[i]), float(self.duration_seconds[i]))

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield Frame(self.data[i], float(self.pts_seconds[i]), float(self.duration_seconds[i]))

    def __repr__(self) -> str:
        return (
            f"FrameBatch(data=<{self.data.dtype} {tuple(self.data.shape)} on {self.data.device}>, "
            f"pts_seconds={self.pts_seconds.tolist()!r})"
        )


@dataclass
class Frame:
    """One frame, as torchcodec's ``VideoDecoder`` returns it from ``get_frame_at``."""

    data: torch.Tensor
    """uint8 RGB frame, ``C x H x W`` (or ``H x W x C`` for NHWC)."""
    pts_seconds: float
    """Presentation time of the frame."""
    duration_seconds: float
    """Display duration: the next frame's pts minus this one's (the container's last duration for the last frame)."""

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Frame.data must be 3-D, got shape {tuple(self.data.shape)}")
        self.pts_seconds = float(self.pts_seconds)
        self.duration_seconds = float(self.duration_seconds)

    def __iter__(self) -> Iterator[Any]:
        """``data, pts_seconds, duration_seconds = frame``, as with torchcodec's Frame."""
        yield self.data
        yield self.pts_seconds
        yield self.duration_seconds

    def __repr__(self) -> str:
        return (
            f"Frame(data=<{self.data.dtype} {tuple(self.data.shape)} on {self.data.device}>, "
            f"pts_seconds={self.pts_seconds!r}, duration_seconds={self.duration_seconds!r})"
        )


@dataclass(frozen=True)
class VideoMetadata:
    """What a reader knows about the video stream it opened."""

    num_frames: int
    """Frames a plain sequential decode yields (edit lists applied)."""
    fps: float
    """Average frame rate: ``num_frames / duration_seconds``."""
    duration_seconds: float
    """From the first frame's pts to the end of the last frame."""
    width: int
    """Width of the frames returned (after ``rotation`` is applied)."""
    height: int
    """Height of the frames returned (after ``rotation`` is applied)."""
    codec: str
    """FFmpeg codec name: ``h264``, ``hevc``, ``av1``, ``vp9``, ..."""
    pixel_format: str | None = None
    """FFmpeg pixel format of decoded frames, e.g. ``yuv420p``, ``yuv420p10le``."""
    bit_depth: int | None = None
    rotation: int = 0
    """Display rotation in degrees, counter-clockwise, in ``[-180, 180)``: what FFmpeg
    and torchcodec 0.17 report. Readers return frames already rotated by it (unless
    opened with ``apply_rotation=False``); ``width``/``height`` describe the rotated frames."""
    begin_stream_seconds: float = 0.0
    """Presentation time of the first frame."""
    container: str = "mp4"
    """``mp4`` for the index path, else the FFmpeg format name of the fallback."""
    access_path: str = "index"
    """``index``: our own MP4 index and exact ranges; ``demux``: PyAV fallback."""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    bit_rate: int | None = None
    """Average bit rate of the video stream in bits per second: every sample's bytes
    x 8 over the media duration, as FFmpeg computes it for MP4; None on the demux path."""

    @property
    def average_fps(self) -> float:
        """torchcodec's name for :attr:`fps`."""
        return self.fps

    @property
    def end_stream_seconds(self) -> float:
        """End of the last frame: ``begin_stream_seconds + duration_seconds``."""
        return self.begin_stream_seconds + self.duration_seconds

    @property
    def duration_seconds_from_header(self) -> float:
        """torchcodec's name; our duration is always computed from the packet table."""
        return self.duration_seconds

    @property
    def num_frames_from_content(self) -> int:
        """torchcodec's name; our frame count is always from the packet table."""
        return self.num_frames

    def __post_init__(self) -> None:
        if self.num_frames < 0 or self.width < 0 or self.height < 0:
            raise ValueError(f"VideoMetadata: negative size or count in {self!r}")
        if self.access_path not in ("index", "demux"):
            raise ValueError(f"VideoMetadata.access_path must be 'index' or 'demux', got {self.access_path!r}")
