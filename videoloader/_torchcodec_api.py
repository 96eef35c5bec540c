"""VideoDecoder: torchcodec 0.17's ``VideoDecoder`` interface on our exact reader.

A torchcodec script runs after changing its import to
``from videoloader import VideoDecoder``: same constructor, indexing,
slicing, iteration and methods, a :class:`Frame` from ``get_frame_at`` and
the same metadata names. Frames are exact either way (``seek_mode`` changes
nothing), read with only the bytes they need; ``docs/migrating.md`` lists
what still differs.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ._errors import BackendUnavailableError, NotAVideoError, UnsupportedFormatError
from ._indices import as_index, as_indices
from ._reader import DimensionOrder, VideoReader
from ._types import Frame, FrameBatch

if TYPE_CHECKING:  # pragma: no cover
    from ._demux import DemuxPackets
    from ._index_packets import IndexPackets
    from ._matroska_packets import MatroskaPackets
    from .mp4._read import CacheOption

__all__ = ["VideoDecoder"]

# Frames decoded per step while iterating (one decode group usually covers them).
ITER_CHUNK = 32


class VideoDecoder(VideoReader):
    """torchcodec's ``VideoDecoder``, exact and reading only the bytes it needs.

    ``dec[i]`` (negative ``i`` counts from the end) is a ``C x H x W`` tensor,
    ``dec[a:b:c]`` an ``N x C x H x W`` tensor, ``for frame in dec`` yields every
    frame in order, ``get_frame_at`` / ``get_frame_played_at`` return a
    :class:`Frame`, the plural methods a :class:`FrameBatch`. Out-of-range
    indices and times raise ``IndexError`` (``get_frames_played_in_range``:
    ``ValueError``, as torchcodec). Everything :class:`VideoReader` offers
    (``plan``, ``transfer_stats``, ``backend``...) works too.

    Args:
        source: a URL (``https://``, ``s3://``...), a local path, an open binary
            file, the encoded file as ``bytes`` or as a 1-D uint8 tensor.
        stream_index: FFmpeg's stream index (for MP4, the position of the track
            in the file); default the first video stream.
        dimension_order: ``"NCHW"`` (default) or ``"NHWC"``.
        num_ffmpeg_threads: CPU decoder threads (default 1, as torchcodec;
            0 lets FFmpeg pick).
        device: ``"cpu"`` (default) or a CUDA device. With ``"cuda"`` the
            hardware decoder is used where it can run; where it cannot, frames
            are decoded on the CPU and copied to the device, so every returned
            tensor is on ``device``. With no CUDA device at all the constructor
            raises ``BackendUnavailableError`` instead of returning CPU tensors.
        seek_mode: ``"exact"`` or ``"approximate"``: both accepted, both exact
            (our index is always exact and costs no scan of the file).
        transforms: decode-time transforms (see ``videoloader.transforms``;
            torchcodec's and torchvision v2's ``Resize``, ``CenterCrop``,
            ``RandomCrop`` accepted), in the displayed frame's coordinates.
        output_dtype: ``torch.uint8`` only (the default).
        custom_frame_mappings: not supported (refused): the container's own
            index gives exact frames already.
        backend: a decoder backend name, or ``"auto"``; with ``device="cuda"``
            ``"auto"`` prefers the GPU decoder.
        **reader_options: any other :class:`VideoReader` keyword
            (``storage_options``, ``index_cache``, ``stats``, ``source_options``,
            ``apply_rotation``...).

    Raises:
        ValueError: an argument torchcodec would also refuse, or
            ``custom_frame_mappings``.
        BackendUnavailableError: ``device`` names CUDA but none is available.
        SourceError, ContainerError: as :class:`VideoReader`.
    """

    def __init__(
        self,
        source: Any,
        *,
        stream_index: int | None = None,
        dimension_order: DimensionOrder = "NCHW",
        num_ffmpeg_threads: int = 1,
        device: str | torch.device | None = None,
        seek_mode: Literal["exact", "approximate"] = "exact",
        transforms: Sequence[Any] | None = None,
        output_dtype: torch.dtype | str = torch.uint8,
        custom_frame_mappings: Any = None,
        backend: str = "auto",
        **reader_options: Any,
    ) -> None:
        if seek_mode not in ("exact", "approximate"):
            raise ValueError(f"seek_mode must be 'exact' or 'approximate', got {seek_mode!r}")
        if custom_frame_mappings is not None:
            raise ValueError(
                "custom_frame_mappings is not supported: videoloader reads the container's own index, "
                "which gives exact frames without a scan; drop the argument"
            )
        if output_dtype not in (torch.uint8, "auto"):
            raise ValueError(f"output_dtype must be torch.uint8, got {output_dtype!r}")
        if num_ffmpeg_threads < 0:
            raise ValueError(f"num_ffmpeg_threads must be >= 0, got {num_ffmpeg_threads}")
        if "track" in reader_options:
            raise ValueError("give stream_index (FFmpeg's index), not track")
        self.seek_mode = seek_mode
        self.stream_index = None if stream_index is None else as_index(stream_index, "stream index")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailableError(
                    f"device={str(dev)!r} was asked but CUDA is not available here; use device='cpu'"
                )
        elif dev.type == "cpu":
            backend = "cpu" if backend == "auto" else backend  # CPU frames, as torchcodec gives
        else:
            raise ValueError(f"device must be 'cpu' or a CUDA device, got {str(dev)!r}")
        # Where the backend's frames land elsewhere (a CPU decode for a CUDA
        # device, or a GPU backend named with device="cpu"), they are moved here.
        self._target_device = dev
        super().__init__(
            source,
            backend=backend,
            dimension_order=dimension_order,
            device=str(dev) if dev.type == "cuda" else None,
            num_threads=num_ffmpeg_threads,
            transforms=transforms,
            **reader_options,
        )

    def _open_packets(
        self, track: int | None, index_cache: CacheOption
    ) -> IndexPackets | MatroskaPackets | DemuxPackets:
        if self.stream_index is not None:
            track = self._track_of_stream(self.stream_index)
        return super()._open_packets(track, index_cache)

    def _track_of_stream(self, stream_index: int) -> int:
        """FFmpeg's stream index to our ``track``: the MP4 ``track_ID`` of the
        ``stream_index``-th ``trak`` (FFmpeg numbers streams in ``trak`` order); on
        other containers the stream index itself (the demuxer's stream number)."""
        from .mp4._locate import locate
        from .mp4._moov import parse_moov

        try:
            layout = locate(self._source)
        except (NotAVideoError, UnsupportedFormatError):
            return stream_index
        tracks = parse_moov(layout.moov_buf, layout.moov).tracks
        if not 0 <= stream_index < len(tracks):
            raise ValueError(f"{self.url}: stream_index {stream_index} is out of range ({len(tracks)} streams)")
        return tracks[stream_index].track_ID

    # -- device ----------------------------------------------------------------

    def _stack(self, tensors: list[torch.Tensor], pts: torch.Tensor, dur: torch.Tensor) -> FrameBatch:
        batch = super()._stack(tensors, pts, dur)
        want, have = self._target_device, batch.data.device
        if have.type != want.type or (want.index is not None and have.index != want.index):
            batch.data = batch.data.to(want)
        return batch

    # -- indexing ----------------------------------------------------------------

    def _normalise(self, index: Any) -> int:
        i = as_index(index)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.url}: frame index {i} is out of range for {n} frames")
        return i + n if i < 0 else i

    def __getitem__(self, key: numbers.Integral | slice) -> torch.Tensor:
        """``dec[i]``: one frame (``C x H x W``); ``dec[a:b:c]``: ``N x C x H x W``."""
        if isinstance(key, slice):
            return self.get_frames_at(list(range(*key.indices(len(self))))).data
        if isinstance(key, (str, bytes, float)) or not hasattr(key, "__index__"):
            raise TypeError(f"a decoder is indexed by an int or a slice, got {type(key).__name__}")
        return self.get_frame_at(self._normalise(key)).data

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Every frame in presentation order, decoded ``ITER_CHUNK`` at a time."""
        n = len(self)
        for start in range(0, n, ITER_CHUNK):
            yield from self.get_frames_in_range(start, min(start + ITER_CHUNK, n)).data

    # -- torchcodec's methods ----------------------------------------------------

    # torchcodec's get_frame_at returns a Frame where VideoReader's returns a batch of one.
    def get_frame_at(self, index: int) -> Frame:  # type: ignore[override]
        """The frame at ``index`` (negative counts from the end) as a :class:`Frame`."""
        return self._first(super().get_frames_at([self._normalise(index)]))

    def get_frames_at(self, indices: Sequence[int]) -> FrameBatch:
        """Frames by index (negative counts from the end), in the order asked."""
        return super().get_frames_at([self._normalise(i) for i in as_indices(indices)])

    def get_frames_in_range(self, start: int = 0, stop: int | None = None, step: int = 1) -> FrameBatch:
        """Frames ``start:stop:step`` with Python's slice rules (negative, clipped)."""
        start, stop, step = slice(start, stop, step).indices(len(self))
        return super().get_frames_at(list(range(start, stop, step)))

    def get_frame_played_at(self, seconds: float) -> Frame:
        """The frame on screen at ``seconds``.

        Raises:
            IndexError: ``seconds`` is outside ``[begin_stream_seconds, end_stream_seconds)``.
        """
        return self._first(self.get_frames_played_at([float(seconds)]))

    def get_frames_played_in_range(
        self, start_seconds: float, stop_seconds: float, fps: float | None = None
    ) -> FrameBatch:
        """Frames whose pts lies in ``[start_seconds, stop_seconds)``.

        With ``fps``, the frames on screen at ``start_seconds + k / fps`` (below
        ``stop_seconds``) instead: frames repeated or dropped to that rate.

        Raises:
            ValueError: ``start_seconds > stop_seconds``, or a bound outside the stream.
        """
        m = self.metadata
        begin, end = m.begin_stream_seconds, m.end_stream_seconds
        if not start_seconds <= stop_seconds:
            raise ValueError(f"start_seconds {start_seconds} must be <= stop_seconds {stop_seconds}")
        if not begin <= start_seconds < end:
            raise ValueError(f"start_seconds {start_seconds} must be in [{begin}, {end})")
        if not stop_seconds <= end:
            raise ValueError(f"stop_seconds {stop_seconds} must be <= {end}")
        if fps is not None:
            if not fps > 0:
                raise ValueError(f"fps must be positive, got {fps}")
            times = np.arange(start_seconds, stop_seconds, 1.0 / fps)
            return super().get_frames_at(self.frame_indices_played_at(times.tolist()))
        starts = self._starts
        wanted = np.flatnonzero((starts >= start_seconds) & (starts < stop_seconds))
        return super().get_frames_at([int(i) for i in wanted])

    def get_all_frames(self, fps: float | None = None) -> FrameBatch:
        """Every frame (or, with ``fps``, the stream resampled to that rate)."""
        m = self.metadata
        return self.get_frames_played_in_range(m.begin_stream_seconds, m.end_stream_seconds, fps=fps)

    @staticmethod
    def _first(batch: FrameBatch) -> Frame:
        frame = batch[0]
        assert isinstance(frame, Frame)
        return frame

    def __repr__(self) -> str:
        return "VideoDecoder" + super().__repr__().removeprefix("VideoReader")
