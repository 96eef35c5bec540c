"""The job's URL-only decoder path: FFmpeg (through PyAV) reading each video through the tracking proxy.

``run_inference(..., via="proxy")`` measures what a decoder that only takes a
URL costs, with the proxy's own accounting: each video is registered with a
:class:`~videoloader.proxy.TrackingProxy`, FFmpeg opens the loopback URL and
does its own demuxing, seeking and HTTP reads, and the video's numbers come
from the proxy (:meth:`~videoloader.proxy.TrackingProxy.usage`).

No videoloader index is used on this path, so frames are chosen the way a
URL-only tool can: from the stream header FFmpeg reads (frame count, average
frame rate, start and duration), frame ``i`` being the one shown at
``start + i / fps``; each is found by seeking to the keyframe before that time
and decoding up to it. For constant-frame-rate video that is frame ``i``
exactly; for variable frame rate it is the frame on screen at that time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import av
import numpy as np
import torch

from .._errors import CorruptVideoError, DecodeError
from ..data import RandomFrames
from ..io import redact_url
from ._frames import choose_frames

__all__ = ["ProxyRead", "read_via_proxy"]

# TrackingProxy (videoloader.proxy) registers the URL and counts; this module only decodes.


@dataclasses.dataclass(frozen=True)
class _HeaderMetadata:
    num_frames: int
    fps: float
    begin_stream_seconds: float
    duration_seconds: float


class _HeaderVideo:
    """What the frame sampler needs, from the stream header FFmpeg read (no index of ours)."""

    def __init__(self, url: str, metadata: _HeaderMetadata) -> None:
        self.url = redact_url(url)
        self.metadata = metadata

    def frame_indices_played_at(self, seconds: Any) -> list[int]:
        m = self.metadata
        out = []
        for t in np.atleast_1d(np.asarray(seconds, dtype=np.float64)).tolist():
            i = math.floor((t - m.begin_stream_seconds) * m.fps + 1e-9)
            if not 0 <= i < m.num_frames:
                raise IndexError(f"time {t} s is outside the video's {m.num_frames} frames")
            out.append(i)
        return out


@dataclasses.dataclass
class ProxyRead:
    """One video read through the proxy: the frames and what the proxy counted."""

    frames: torch.Tensor
    """uint8 ``N x 3 x H x W``, in the order of ``indices``."""
    indices: list[int]
    timestamps_seconds: list[float]
    """Presentation time of each decoded frame."""
    metadata: _HeaderMetadata
    container: str
    codec: str
    width: int
    height: int


def _metadata(container: Any, stream: Any, where: str) -> _HeaderMetadata:
    tb = stream.time_base
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if not fps > 0:
        raise CorruptVideoError(
            f"{where}: the stream header gives no frame rate: a URL-only reader cannot place frames"
        )
    begin = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
    if stream.duration is not None and tb is not None:
        duration = float(stream.duration * tb)
    elif container.duration is not None:
        duration = float(container.duration) / 1e6
    else:
        duration = 0.0
    n = int(stream.frames) or round(duration * fps)
    if n <= 0:
        raise CorruptVideoError(f"{where}: the stream header gives no frame count or duration")
    return _HeaderMetadata(num_frames=n, fps=fps, begin_stream_seconds=begin, duration_seconds=n / fps)


def _decode_at(container: Any, stream: Any, seconds: Sequence[float], fps: float, where: str) -> list[Any]:
    """The frame on screen at each time (sorted times): seek to the keyframe before, decode up to it."""
    tb = stream.time_base
    half = 0.5 / fps
    out: list[Any] = []
    for t in seconds:
        container.seek(int(math.floor(t / tb)), stream=stream, backward=True, any_frame=False)
        last = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            last = frame
            if float(frame.pts * tb) >= t - half:
                break
        if last is None:
            raise CorruptVideoError(f"{where}: no frame decoded at {t:.3f} s")
        out.append(last)
    return out


def read_via_proxy(purl: str, url: str, sampler: RandomFrames, rng: np.random.Generator) -> ProxyRead:
    """Choose and decode one video's frames with FFmpeg reading ``purl``, the proxy URL of ``url``.

    The caller registered ``url`` (:meth:`TrackingProxy.url_for`) and reads
    the proxy's numbers for it afterwards (:meth:`TrackingProxy.usage`), also
    when this fails.

    Raises:
        CorruptVideoError: FFmpeg found no usable video stream header or frame.
        DecodeError: FFmpeg failed to open or decode (an origin's error
            reaches it as an HTTP status from the proxy).
    """
    try:
        return _read(purl, url, sampler, rng)
    except av.error.FFmpegError as e:
        # FFmpeg's message names the proxy URL, whose path holds the proxy's token: say it without.
        reason = e.strerror or type(e).__name__
        raise DecodeError(f"{redact_url(url)}: FFmpeg reading through the tracking proxy failed: {reason}") from None


def _read(purl: str, url: str, sampler: RandomFrames, rng: np.random.Generator) -> ProxyRead:
    """``read_via_proxy`` without the translation of FFmpeg's errors."""
    where = redact_url(url)
    with av.open(purl, mode="r", timeout=60) as container:
        if not container.streams.video:
            raise CorruptVideoError(f"{where}: FFmpeg finds no video stream")
        stream = container.streams.video[0]
        meta = _metadata(container, stream, where)
        video = _HeaderVideo(url, meta)
        chosen = choose_frames(sampler, video, rng)
        times = [meta.begin_stream_seconds + i / meta.fps for i in chosen]
        decoded = _decode_at(container, stream, times, meta.fps, where)
        arrays = [f.to_ndarray(format="rgb24") for f in decoded]
        timestamps = [float(f.pts * stream.time_base) for f in decoded]
        codec = stream.codec_context.name
        fmt = container.format.name
    frames = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ProxyRead(
        frames=frames,
        indices=chosen,
        timestamps_seconds=timestamps,
        metadata=meta,
        container=fmt,
        codec=codec,
        width=int(frames.shape[3]),
        height=int(frames.shape[2]),
    )
