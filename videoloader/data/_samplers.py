"""Frame samplers: which frame indices one dataset item decodes.

A sampler is a small frozen value object. ``sampler(video, rng)`` returns the
frame indices (presentation order, ``int64``) to decode for one item, chosen
from the video's metadata and frame times alone: nothing is decoded to decide.
``video`` is anything with ``.metadata`` (``num_frames``,
``begin_stream_seconds``, ``duration_seconds``) and
``.frame_indices_played_at(seconds)``: a :class:`~videoloader.VideoReader`.

Every sampler draws only from ``rng`` (a ``numpy.random.Generator``); the
dataset seeds it from ``(seed, epoch, item)``, so the same item in the same
epoch always gets the same frames, whatever the worker layout.

Windows. Times are presentation times in seconds, as the reader reports them
(``pts_seconds``). An item's window is the intersection of the video, the
sampler's ``start_seconds``/``end_seconds`` and the record's ``start``/``end``;
``offset_max_seconds`` then keeps only its first N seconds. A frame is in the
window when it is on screen at some time in ``[start, end)``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal, Protocol

import numpy as np

from .._errors import SamplingError
from ..io import redact_text, redact_url

__all__ = ["AllFrames", "FrameSampler", "RandomClip", "RandomFrames", "SamplingError", "UniformClip"]

ShortPolicy = Literal["repeat_last", "error"]
_POLICIES = ("repeat_last", "error")


class _Video(Protocol):  # what samplers need from a reader
    @property
    def metadata(self) -> Any: ...

    def frame_indices_played_at(self, seconds: Any) -> list[int]: ...


@dataclass(frozen=True)
class FrameWindow:
    """The frames an item may draw from: indices ``[lo, hi)``, times ``[start_seconds, end_seconds)``."""

    lo: int
    """First frame index in the window."""
    hi: int
    """One past the last frame index in the window."""
    start_seconds: float
    """Window start (presentation time, seconds)."""
    end_seconds: float
    """Window end, exclusive (presentation time, seconds)."""

    @property
    def num_frames(self) -> int:
        """Frames in the window."""
        return self.hi - self.lo


def _check_optional_seconds(name: str, value: float | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number of seconds or None, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")


def _check_count(name: str, value: int, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class FrameSampler(abc.ABC):
    """Base of the samplers: the window fields and their resolution to frames.

    Subclasses implement :meth:`choose`.
    """

    # Window fields are keyword-only in every subclass (declared there last).

    def _check_window(self) -> None:
        start = getattr(self, "start_seconds", None)
        end = getattr(self, "end_seconds", None)
        _check_optional_seconds("start_seconds", start)
        _check_optional_seconds("end_seconds", end)
        _check_optional_seconds("offset_max_seconds", getattr(self, "offset_max_seconds", None), positive=True)
        if start is not None and end is not None and end <= start:
            raise ValueError(f"end_seconds ({end}) must be > start_seconds ({start})")

    def window(
        self, video: _Video, *, start_seconds: float | None = None, end_seconds: float | None = None
    ) -> FrameWindow:
        """The frames this sampler may draw from for one item.

        Args:
            video: the reader (metadata and frame times).
            start_seconds, end_seconds: the record's own window (None: unbounded).

        Raises:
            SamplingError: the window holds no frame.
        """
        m = video.metadata
        n = int(m.num_frames)
        begin = float(m.begin_stream_seconds)
        stop = begin + float(m.duration_seconds)
        if not (math.isfinite(begin) and math.isfinite(stop)):
            raise SamplingError(
                f"{_url(video)}: the video's timeline is not finite (first frame at {begin} s, "
                f"ends at {stop} s); cannot place a sampling window"
            )
        start = begin
        end = stop
        for s in (getattr(self, "start_seconds", None), start_seconds):
            if s is not None and not math.isnan(s):
                start = max(start, float(s))
        for e in (getattr(self, "end_seconds", None), end_seconds):
            if e is not None and not math.isnan(e):
                end = min(end, float(e))
        offset_max = getattr(self, "offset_max_seconds", None)
        if offset_max is not None:
            end = min(end, start + float(offset_max))
        if n == 0 or end <= start or start >= stop:
            raise SamplingError(
                f"{_url(video)}: the sampling window [{start}, {end}) s holds no frame of the video "
                f"([{begin}, {stop}) s, {n} frames); widen the window or drop this record"
            )
        lo = 0 if start <= begin else _played_at(video, [start])[0]
        # The last frame on screen strictly before `end` (a frame starting at `end` is outside).
        hi = n if end >= stop else _played_at(video, [np.nextafter(end, -np.inf)])[0] + 1
        lo, hi = int(lo), int(max(hi, lo + 1))
        if not 0 <= lo < hi <= n:
            raise SamplingError(
                f"{_url(video)}: the window [{start}, {end}) s maps to frames [{lo}, {hi}), "
                f"outside the video's {n} frames; its frame times and metadata disagree"
            )
        return FrameWindow(lo=lo, hi=hi, start_seconds=start, end_seconds=end)

    def __call__(
        self,
        video: _Video,
        rng: np.random.Generator,
        *,
        start_seconds: float | None = None,
        end_seconds: float | None = None,
    ) -> np.ndarray:
        """Frame indices (``int64``, in clip order) for one item.

        Args:
            video: the reader (metadata and frame times; nothing is decoded).
            rng: the item's random generator.
            start_seconds, end_seconds: the record's window (None: unbounded).

        Raises:
            SamplingError: the window is empty, or too short with ``policy="error"``.
        """
        win = self.window(video, start_seconds=start_seconds, end_seconds=end_seconds)
        return np.asarray(self.choose(video, win, rng), dtype=np.int64)

    @abc.abstractmethod
    def choose(self, video: _Video, window: FrameWindow, rng: np.random.Generator) -> np.ndarray:
        """Frame indices inside ``window``."""


def _url(video: Any) -> str:
    """The video's URL for messages, redacted (a reader's ``url`` already is; a stand-in's may not be)."""
    url = getattr(video, "url", None)
    return redact_url(url) if url else "video"


def _played_at(video: _Video, seconds: Any) -> list[int]:
    """``video.frame_indices_played_at``, with a time the frame table does not cover as a SamplingError.

    The metadata's duration can run past the last frame's end (or a window
    start fall in a gap of the frame table): the reader answers IndexError,
    which for a sampler means "this window cannot be sampled from this video".
    """
    error = None
    try:
        return list(video.frame_indices_played_at(seconds))
    except IndexError as e:
        times = np.asarray(seconds).tolist()
        error = SamplingError(f"{_url(video)}: no frame is on screen at {times} s ({redact_text(str(e))})")
    raise error


def _too_short(video: _Video, what: str, window: FrameWindow) -> SamplingError:
    return SamplingError(
        f"{_url(video)}: {what} does not fit the window [{window.start_seconds}, {window.end_seconds}) s "
        f"({window.num_frames} frames) and policy='error'; use policy='repeat_last' or a longer window"
    )


@dataclass(frozen=True)
class RandomFrames(FrameSampler):
    """``num_frames`` distinct frames drawn uniformly from the window, in time order.

    Args:
        num_frames: frames per item.
        policy: when the window has fewer frames: ``"repeat_last"`` (all of
            them, then the last repeated) or ``"error"``.
        start_seconds, end_seconds: sample only from this time range.
        offset_max_seconds: sample only from the first N seconds of the window.
    """

    num_frames: int
    _: KW_ONLY
    policy: ShortPolicy = "repeat_last"
    start_seconds: float | None = None
    end_seconds: float | None = None
    offset_max_seconds: float | None = None

    def __post_init__(self) -> None:
        _check_count("num_frames", self.num_frames)
        if self.policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, got {self.policy!r}")
        self._check_window()

    def choose(self, video: _Video, window: FrameWindow, rng: np.random.Generator) -> np.ndarray:
        k, n = int(self.num_frames), window.num_frames
        if n >= k:
            return window.lo + np.sort(rng.choice(n, size=k, replace=False))
        if self.policy == "error":
            raise _too_short(video, f"{k} distinct frames", window)
        # [lo .. hi-1] then the last repeated: 3 frames, k=5 -> [0, 1, 2, 2, 2]
        return np.minimum(window.lo + np.arange(k), window.hi - 1)


@dataclass(frozen=True)
class RandomClip(FrameSampler):
    """A clip of ``num_frames`` consecutive frames at a random start.

    Frames are ``stride`` frames apart, or, with ``fps``, the frames on screen
    at ``t0 + j / fps`` (resampled in time: works for variable frame rate).

    Args:
        num_frames: frames per clip.
        stride: frame step between clip frames (frame-index mode).
        fps: clip frame rate (time mode); give ``stride`` or ``fps``, not both.
        policy: when the clip is longer than the window: ``"repeat_last"``
            (start at the window start and repeat the last frame) or ``"error"``.
        start_seconds, end_seconds: sample only from this time range.
        offset_max_seconds: sample only from the first N seconds of the window.
    """

    num_frames: int
    _: KW_ONLY
    stride: int = 1
    fps: float | None = None
    policy: ShortPolicy = "repeat_last"
    start_seconds: float | None = None
    end_seconds: float | None = None
    offset_max_seconds: float | None = None

    def __post_init__(self) -> None:
        _check_count("num_frames", self.num_frames)
        _check_count("stride", self.stride)
        if self.fps is not None:
            _check_optional_seconds("fps", self.fps, positive=True)
            if self.stride != 1:
                raise ValueError(f"give stride or fps, not both (stride={self.stride}, fps={self.fps})")
        if self.policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, got {self.policy!r}")
        self._check_window()

    def choose(self, video: _Video, window: FrameWindow, rng: np.random.Generator) -> np.ndarray:
        k = int(self.num_frames)
        if self.fps is None:
            span = (k - 1) * self.stride + 1  # frames covered, first to last
            if window.num_frames >= span:
                first = int(rng.integers(window.lo, window.hi - span + 1))
                return first + self.stride * np.arange(k)
            if self.policy == "error":
                raise _too_short(video, f"a clip of {k} frames at stride {self.stride}", window)
            return np.minimum(window.lo + self.stride * np.arange(k), window.hi - 1)
        span_seconds = (k - 1) / float(self.fps)
        last_time = np.nextafter(window.end_seconds, -np.inf)  # inside [start, end)
        room = last_time - span_seconds - window.start_seconds
        if room >= 0:
            t0 = window.start_seconds + float(rng.random()) * room
            times = t0 + np.arange(k) / float(self.fps)
        elif self.policy == "error":
            raise _too_short(video, f"a clip of {k} frames at {self.fps} fps", window)
        else:
            times = np.minimum(window.start_seconds + np.arange(k) / float(self.fps), last_time)
        times = np.clip(times, window.start_seconds, last_time)
        return np.asarray(_played_at(video, times), dtype=np.int64)


@dataclass(frozen=True)
class UniformClip(FrameSampler):
    """``num_frames`` frames spread evenly over the window (segment centres).

    The window is cut into ``num_frames`` equal segments and the middle frame
    of each is taken; with ``jitter=True`` a random frame of each segment
    (TSN-style training). A window shorter than ``num_frames`` repeats frames.

    Args:
        num_frames: frames per item.
        jitter: draw a random frame in each segment instead of its centre.
        start_seconds, end_seconds: sample only from this time range.
        offset_max_seconds: sample only from the first N seconds of the window.
    """

    num_frames: int
    _: KW_ONLY
    jitter: bool = False
    start_seconds: float | None = None
    end_seconds: float | None = None
    offset_max_seconds: float | None = None

    def __post_init__(self) -> None:
        _check_count("num_frames", self.num_frames)
        self._check_window()

    def choose(self, video: _Video, window: FrameWindow, rng: np.random.Generator) -> np.ndarray:
        k, n = int(self.num_frames), window.num_frames
        # Position in segment j: (j + u) * n / k with u = 0.5 (centre) or uniform [0, 1).
        # n=10, k=4 -> floor([1.25, 3.75, 6.25, 8.75]) = [1, 3, 6, 8]
        u = rng.random(k) if self.jitter else np.full(k, 0.5)
        pos = np.floor((np.arange(k) + u) * n / k).astype(np.int64)
        return window.lo + np.minimum(pos, n - 1)


@dataclass(frozen=True)
class AllFrames(FrameSampler):
    """Every ``step``-th frame of the window (evaluation, feature extraction).

    Items then have different lengths: use ``batch_size=None`` or a collate
    function that pads.

    Args:
        step: take every step-th frame.
        start_seconds, end_seconds: only this time range.
        offset_max_seconds: only the first N seconds of the window.
    """

    step: int = 1
    _: KW_ONLY
    start_seconds: float | None = None
    end_seconds: float | None = None
    offset_max_seconds: float | None = None

    def __post_init__(self) -> None:
        _check_count("step", self.step)
        self._check_window()

    def choose(self, video: _Video, window: FrameWindow, rng: np.random.Generator) -> np.ndarray:
        return np.arange(window.lo, window.hi, self.step)
