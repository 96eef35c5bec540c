"""VideoReader: frame-exact random access over any fsspec URL.

One decode path for every container: a packet source (our MP4 index with
exact byte ranges, ``access_path == "index"``, or PyAV demuxing over the same
tracked file, ``"demux"``) gives the container-neutral packet table and the
samples of each decode group; the planner groups target frames by keyframe;
one decoder backend decodes each group. Both sources return frame ``i`` of a
plain sequential FFmpeg decode, or raise: never a neighbour.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, cast

import numpy as np
import torch

from ._containers import open_container
from ._decode import PrefetchingSource, TimedSource, decode_plan
from ._errors import NotAVideoError, UnsupportedFormatError, VideoLoaderError
from ._fork import ProcessLocal
from ._index_packets import PIPELINE_BATCH_BYTES, IndexPackets
from ._indices import as_index, as_indices
from ._matroska_packets import MatroskaPackets
from ._output import OutputPlan, plan_output, rotation_degrees
from ._packets import SampleIndex
from ._plan import DecodeGroup, Plan, plan_frames
from ._types import FrameBatch, VideoMetadata
from .codecs import non_reference_test
from .decoders import DecoderBackend, OutputSpec, select_backend
from .io import RangeSource, TransferStats
from .io._memory import in_memory_source
from .mkv._read import MatroskaHead

if TYPE_CHECKING:  # pragma: no cover
    from ._demux import DemuxPackets
    from .io._source import SourceLike
    from .mp4._read import CacheOption

__all__ = ["VideoReader"]

log = logging.getLogger(__name__)

# Codecs the MP4 index feeds to decoders; other codecs in MP4 are demuxed by FFmpeg.
INDEX_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
# Per-request records a reader keeps (totals are never capped).
MAX_RECORDS = 4096

DimensionOrder = Literal["NCHW", "NHWC"]
_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclasses.dataclass(frozen=True, eq=False)
class FetchedFrames:
    """Frames of one reader planned and their bytes downloaded, not yet decoded.

    What ``VideoReader._fetch_frames`` returns and ``_decode_fetched`` takes:
    the datasets' batch path downloads every item's bytes at once (one network
    wait per batch instead of one per item), then decodes the items on a pool.
    """

    packets: object
    """The packet source that planned and fetched it (a reader decodes only its own)."""
    frames: list[int]
    """The frames asked for, in the order asked."""
    plan: Plan
    blobs: list[list[bytes]] | None
    """Each group's fetched ranges; None where the decode fetches as it goes
    (the demux path, or a plan too big to hold at once)."""


def _serialised(method: Callable[Concatenate[VideoReader, _P], _R]) -> Callable[Concatenate[VideoReader, _P], _R]:
    """Run a public method under the reader's lock, naming the reader's URL in our errors."""

    @functools.wraps(method)
    def wrapper(self: VideoReader, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock.get(), self._errors_named():
            return method(self, *args, **kwargs)

    return wrapper


class VideoReader:
    """Random access to the frames of one video.

    Safe to hold: one reader may be shared by threads (its calls are
    serialised; use one reader per thread for parallel decoding), used in a
    forked process (it builds its own decoder and connections there, keeping
    the parsed index), and pickled (``pickle.loads(pickle.dumps(r))`` is a
    working reader of the same source and options that carries the index
    instead of reading it again; its ``transfer_stats`` start empty).

    What is detected: container damage (boxes, tables, sizes, times), bytes
    that differ from what was asked (HTTP status, exact lengths, ETag /
    Last-Modified / size validators), packets the decoder rejects and frames
    FFmpeg flags as corrupt all raise. What is not: a bit flipped inside a
    compressed sample that the decoder accepts without complaint decodes to a
    damaged picture, as in every FFmpeg-based reader.

    Args:
        source: a URL (``https://``, ``s3://``, ``file://``...), a local path, an
            open fsspec or binary file, or the encoded file in memory (``bytes``
            or a 1-D uint8 tensor; its index is not cached across readers).
        backend: ``"auto"`` or a registered decoder backend's name (see
            ``videoloader.platform_info()``); the demux path decodes on the CPU.
        storage_options: passed to fsspec for the URL's filesystem.
        width, height: output size; one alone keeps the aspect ratio.
        size: ``(height, width)``, an alternative to ``width``/``height``.
        dimension_order: ``"NCHW"`` (default) or ``"NHWC"``.
        device: where frames are returned (``"cuda"``, ``"cuda:0"``): with ``backend="auto"``
            a CUDA device prefers NVDEC on that GPU; a CPU backend decodes on the CPU
            and moves frames there. Default: the CPU (``auto`` then never picks a
            backend whose frames live on a GPU).
        track: the track to read (MP4 ``tkhd`` track id, or the container's
            stream id on the demux path); default the first video track. A
            track that does not exist or is not video raises.
        stats: a parent TransferStats that also receives this reader's records.
        index_cache: an on-disk cache directory for MP4 indexes (None: memory only).
        num_threads: FFmpeg decoder threads (0: one per core).
        source_options: extra keyword arguments for ``RangeSource``
            (``coalesce_gap_bytes``, ``retry``, timeouts, ``allow_full_read``...).
        transforms: decode-time ``Resize`` / ``CenterCrop`` / ``RandomCrop``
            (``videoloader.transforms``; torchcodec's and torchvision v2's
            accepted), applied in order in the displayed frame's coordinates,
            inside the converter's single scaling pass; not with ``width``/``height``/``size``.
        apply_rotation: turn frames by the track's display rotation (as
            torchcodec 0.17 does; ``metadata.rotation`` says by how much).
            ``width``/``height``/``size`` then name the displayed frame's sides.

    Raises:
        SourceError: the bytes could not be read (404, 403, faults).
        ContainerError: the bytes are not a usable video (``NotAVideoError``
            for a file with no video frame, a still image included;
            ``TrackNotFoundError`` for a bad ``track``).
        BackendUnavailableError: the requested backend cannot run here.
    """

    def __init__(
        self,
        source: SourceLike,
        *,
        backend: str = "auto",
        storage_options: dict[str, Any] | None = None,
        width: int | None = None,
        height: int | None = None,
        size: tuple[int, int] | None = None,
        dimension_order: DimensionOrder = "NCHW",
        device: str | None = None,
        track: int | None = None,
        stats: TransferStats | None = None,
        index_cache: CacheOption = None,
        num_threads: int = 0,
        source_options: dict[str, Any] | None = None,
        transforms: Sequence[Any] | None = None,
        apply_rotation: bool = True,
    ) -> None:
        if dimension_order not in ("NCHW", "NHWC"):
            raise ValueError(f"dimension_order must be 'NCHW' or 'NHWC', got {dimension_order!r}")
        if size is not None:
            if width is not None or height is not None:
                raise ValueError("give either size=(h, w) or width/height, not both")
            height, width = size
        if transforms and (width is not None or height is not None):
            raise ValueError("give either transforms=[...] or an output size (width/height/size), not both")
        track = None if track is None else as_index(track, "track id")
        source = in_memory_source(source)
        if not isinstance(source, (str, os.PathLike)):
            # An open file or in-memory bytes has no URL or validator to key a
            # cached index by: two same-size objects would share one entry.
            index_cache = False
        self.dimension_order = dimension_order
        spec = OutputSpec(height=height, width=width, device=device or "cpu")
        self._out: OutputPlan = OutputPlan(spec=spec, coded_hw=(0, 0))  # planned once the stream is known
        self._lock: ProcessLocal[threading.RLock] = ProcessLocal(threading.RLock)
        self._closed = False
        self._metadata: VideoMetadata | None = None
        self.decoded_nbytes = 0
        """Compressed bytes fed to the decoder by all calls so far."""
        self.last_decode_nbytes = 0
        """Compressed bytes fed to the decoder by the last ``get_frames_*`` call."""
        # Totals stay exact; only the per-request records are capped, so a
        # reader kept open for a long epoch does not grow without bound.
        own_stats = TransferStats(parent=stats, max_records=MAX_RECORDS)
        self._source = RangeSource(source, storage_options=storage_options, stats=own_stats, **(source_options or {}))
        try:
            with self._errors_named():
                self._packets = self._open_packets(track, index_cache)
                self._plan_output(spec, transforms, apply_rotation)
                self._open_decoder(backend, num_threads)
                if (self._out.spec.crop or self._out.spec.post_crop) and not self._decoder.get().supports_crop:
                    # This backend cannot crop: decode full frames, crop and scale in torch.
                    old = self._decoder.reset()
                    if old is not None:
                        old.close()
                    self._out = self._out.without_backend_crop()
                    self._open_decoder(backend, num_threads)
                if self._packets.has_table:
                    self.metadata  # noqa: B018 - the index path knows it all at open
        except BaseException:
            self.close()
            raise

    def _open_packets(
        self, track: int | None, index_cache: CacheOption
    ) -> IndexPackets | MatroskaPackets | DemuxPackets:
        try:
            container, table = open_container(self._source, track=track, cache=index_cache, lazy=True)
        except (NotAVideoError, UnsupportedFormatError) as e:
            log.info("%s: not indexable (%s); demuxing with FFmpeg", self._source.url, e)
        else:
            if isinstance(table, MatroskaHead):
                if table.codec in INDEX_CODECS:
                    return MatroskaPackets(self._source, table, track=track, cache=index_cache)
                log.info("%s: codec %s is not on the index path; demuxing with FFmpeg", self._source.url, table.codec)
            elif table.codec in INDEX_CODECS:
                if table.num_frames == 0:
                    raise NotAVideoError(f"{self._source.url}: the video track has no frames to decode")
                return IndexPackets(self._source, table, container=container)
            log.info("%s: codec %s is not on the index path; demuxing with FFmpeg", self._source.url, table.codec)
        from ._demux import DemuxPackets  # PyAV only where FFmpeg demuxes

        return DemuxPackets(self._source, track=track)

    def _plan_output(self, spec: OutputSpec, transforms: Sequence[Any] | None, apply_rotation: bool) -> None:
        p = self._packets
        self._out = plan_output(
            spec,
            coded_hw=(p.config.height, p.config.width),
            rotation_cw=p.rotation,
            transforms=transforms,
            apply_rotation=apply_rotation,
        )

    def _open_decoder(self, backend: str, num_threads: int) -> None:
        self._config = self._packets.config
        if self._packets.cpu_only:
            if backend != "auto":
                log.info("%s: demuxed packets decode on the CPU (asked for %s)", self._source.url, backend)
            backend = "cpu"
        spec = select_backend(backend, self._config, self._out.spec)
        self._backend_name = spec.name
        self._decoder: ProcessLocal[DecoderBackend] = ProcessLocal(
            functools.partial(spec.create, self._config, self._out.spec, num_threads=num_threads)
        )
        self._decoder.get()  # a backend that cannot start fails at open, not at the first frame
        self._non_reference = non_reference_test(self._config.codec, self._config.extradata)

    @contextlib.contextmanager
    def _errors_named(self) -> Iterator[None]:
        url = self._source.url
        try:
            yield
        except VideoLoaderError as e:
            if url in str(e):
                raise
            try:
                named = type(e)(f"{url}: {e}")
            except Exception:  # a subclass with another constructor: keep it as it is
                named = None
            if named is None:
                raise
            raise named from e

    # -- metadata -------------------------------------------------------------

    @property
    @_serialised
    def metadata(self) -> VideoMetadata:
        """Stream metadata (``access_path`` says index or demux).

        On the demux path the first access reads the container's packet table
        (about one pass over the file; the bytes show in ``transfer_stats``).
        """
        if self._metadata is None:
            self._check_open()
            t, c = self._packets.table, self._config
            starts = t.frame_pts().astype(np.float64) / t.timescale
            ends = starts + t.frame_durations().astype(np.float64) / t.timescale
            self._starts, self._ends = starts, ends
            n = len(starts)
            begin, end = (float(starts[0]), float(ends[-1])) if n else (0.0, 0.0)
            duration = max(end - begin, 0.0)
            pix = getattr(self._packets, "pixel_format", None)
            # As FFmpeg's MP4 demuxer (and so torchcodec) reports it: every sample's
            # bytes over the media duration (edit lists not applied), in whole bits/s.
            media_ticks = int(t.durations.sum())
            known = t.has_byte_ranges and media_ticks > 0
            bit_rate = int(t.sizes.sum()) * 8 * t.timescale // media_ticks if known else None
            self._metadata = VideoMetadata(
                num_frames=n,
                fps=(n / duration) if duration > 0 else 0.0,
                duration_seconds=duration,
                width=self._out.displayed_hw[1],
                height=self._out.displayed_hw[0],
                codec=c.codec,
                pixel_format=self._decoder.get().pixel_format() or pix,
                bit_depth=c.bit_depth,
                rotation=rotation_degrees(self._packets.rotation),
                bit_rate=bit_rate,
                begin_stream_seconds=begin,
                container=self._packets.container,
                access_path=self._packets.access_path,
                extra={"backend": self._backend_name, "url": self._source.url},
            )
        return self._metadata

    @property
    def access_path(self) -> str:
        """``"index"`` (our container index, exact ranges) or ``"demux"`` (FFmpeg demuxing)."""
        return self._packets.access_path

    @property
    def backend(self) -> str:
        """The name of the decoder backend in use."""
        return self._backend_name

    @property
    def index(self) -> SampleIndex | None:
        """The container index's packet table (None on the demux path)."""
        return self._packets.table if self._packets.access_path == "index" else None

    @property
    def transfer_stats(self) -> TransferStats:
        """Every request this reader made (index and samples)."""
        return self._source.stats

    @property
    def url(self) -> str:
        """The source URL with query string and credentials removed."""
        return self._source.url

    def __len__(self) -> int:
        return self.metadata.num_frames

    # -- frames ---------------------------------------------------------------

    def plan(self, indices: Sequence[int]) -> Plan:
        """The groups (and, on the index path, byte ranges) that ``get_frames_at(indices)`` decodes."""
        return plan_frames(self._packets.table, as_indices(indices))

    def get_frame_at(self, index: int) -> FrameBatch:
        """One frame, as a batch of one.

        Raises:
            TypeError: ``index`` is not an integer (floats are never rounded).
            IndexError: ``index`` is outside ``[0, num_frames)``.
        """
        return self.get_frames_at([as_index(index)])

    @_serialised
    def get_frames_at(self, indices: Sequence[int]) -> FrameBatch:
        """Frames by index, in the order asked (duplicates allowed).

        Args:
            indices: a sequence of ints, or an integer numpy array or tensor.

        Raises:
            TypeError: a scalar instead of a sequence, or a non-integer index.
            IndexError: an index is outside ``[0, num_frames)``.
            CorruptVideoError: a frame could not be decoded.
        """
        self._check_open()
        frames = self._checked_indices(indices)
        plan = plan_frames(self._packets.table, frames) if frames else Plan(())
        return self._frames(frames, plan, None)

    @_serialised
    def _fetch_frames(self, indices: Sequence[int]) -> FetchedFrames:
        """Plan ``get_frames_at(indices)`` and download its bytes, without decoding.

        ``_decode_fetched`` of the result returns what ``get_frames_at(indices)``
        would. Splitting the two lets a caller overlap many items' network
        waits and decode afterwards. On the demux path, and for plans above
        ``PIPELINE_BATCH_BYTES`` (memory stays bounded), nothing is fetched
        here: the decode fetches as ``get_frames_at`` does.
        """
        self._check_open()
        frames = self._checked_indices(indices)
        plan = plan_frames(self._packets.table, frames) if frames else Plan(())
        blobs = None
        if frames and isinstance(self._packets, PrefetchingSource) and plan.nbytes <= PIPELINE_BATCH_BYTES:
            blobs = self._packets.fetch(plan.groups)
        return FetchedFrames(self._packets, frames, plan, blobs)

    @_serialised
    def _decode_fetched(self, fetched: FetchedFrames) -> FrameBatch:
        """Decode what this reader's ``_fetch_frames`` returned: the frames of ``get_frames_at``."""
        self._check_open()
        if fetched.packets is not self._packets:
            raise ValueError(f"{self.url}: these frames were fetched by another reader")
        return self._frames(fetched.frames, fetched.plan, fetched.blobs)

    def _checked_indices(self, indices: Sequence[int]) -> list[int]:
        frames = as_indices(indices)
        n = self.metadata.num_frames
        for i in frames:
            if not 0 <= i < n:
                raise IndexError(f"{self.url}: frame index {i} is out of range for {n} frames")
        return frames

    def _frames(self, frames: list[int], plan: Plan, blobs: list[list[bytes]] | None) -> FrameBatch:
        """Decode ``plan`` (from ``blobs`` when fetched beforehand) and stack ``frames`` in order."""
        samples = None
        if blobs is not None:
            samples = cast(PrefetchingSource, self._packets).fetched_samples(plan.groups, blobs)
        decoded, fed = self._decode(plan, samples) if frames else ({}, 0)
        self._count_fed(fed)
        sel = np.asarray(frames, dtype=np.int64)
        return self._stack(
            [decoded[i] for i in frames],
            torch.from_numpy(self._starts[sel]),
            torch.from_numpy(self._ends[sel] - self._starts[sel]),
        )

    def get_frames_in_range(self, start: int = 0, stop: int | None = None, step: int = 1) -> FrameBatch:
        """Frames ``start, start + step, ...`` below ``stop`` (default: the end)."""
        n = self.metadata.num_frames
        start, step = as_index(start, "start"), as_index(step, "step")
        stop = n if stop is None else as_index(stop, "stop")
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if not (0 <= start <= n and 0 <= stop <= n):
            raise IndexError(f"{self.url}: range [{start}, {stop}) is outside [0, {n}]")
        return self.get_frames_at(list(range(start, stop, step)))

    def frame_indices_played_at(self, seconds: Sequence[float]) -> list[int]:
        """The index of the frame on screen at each time (pts <= t < pts + duration)."""
        secs = np.asarray(seconds, dtype=np.float64).reshape(-1)
        m = self.metadata
        idx = np.searchsorted(self._starts, secs, side="right") - 1
        for t, i in zip(secs.tolist(), idx.tolist(), strict=False):
            if i < 0 or not np.isfinite(t) or t >= self._ends[-1]:
                end = m.begin_stream_seconds + m.duration_seconds
                raise IndexError(f"{self.url}: time {t} s is outside the video [{m.begin_stream_seconds}, {end})")
        return [int(i) for i in idx]

    @_serialised
    def get_frames_played_at(self, seconds: Sequence[float]) -> FrameBatch:
        """The frame on screen at each time, in the order asked.

        Before anything needed the packet table, no whole-file pass is made: on
        the demux path each time is served by a seek to the keyframe before it
        and a decode forward; a Matroska file with Cues walks and decodes only
        the clusters from the keyframe before the time.
        """
        self._check_open()
        if not self._packets.has_table:  # the demux and Matroska sources build their table when asked
            timed = cast(TimedSource, self._packets)
            secs = [float(t) for t in np.asarray(seconds, dtype=np.float64).reshape(-1)]
            tensors, pts, durs, fed = timed.frames_at_seconds(secs, self._decoder.get())
            self._count_fed(fed)
            return self._stack(tensors, torch.tensor(pts, dtype=torch.float64), torch.tensor(durs, dtype=torch.float64))
        return self.get_frames_at(self.frame_indices_played_at(seconds))

    def _count_fed(self, nbytes: int) -> None:
        self.last_decode_nbytes = nbytes
        self.decoded_nbytes += nbytes

    def _decode(
        self, plan: Plan, samples: Iterator[tuple[DecodeGroup, Iterator[tuple[int, memoryview]]]] | None = None
    ) -> tuple[dict[int, torch.Tensor], int]:
        decoder = self._decoder.get()
        out, fed = decode_plan(
            plan,
            self._packets,
            decoder,
            skip=self._non_reference,
            what=f"{self.url}: the {self.backend} decoder",
            samples=samples,
        )
        if self._metadata is not None and self._metadata.pixel_format is None:
            self._metadata = dataclasses.replace(self._metadata, pixel_format=decoder.pixel_format())
        return out, fed

    def _stack(self, tensors: list[torch.Tensor], pts: torch.Tensor, dur: torch.Tensor) -> FrameBatch:
        return self._out.batch(tensors, pts, dur, self.dimension_order)

    # -- lifetime -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise VideoLoaderError(f"{self.url}: the reader is closed")

    def close(self) -> None:
        """Release the decoder and network resources. Idempotent.

        In a forked child, what the parent built (its decoder, demuxer and
        connections) is left alone: freeing it here could hang.
        """
        if getattr(self, "_closed", True):
            return
        self._closed = True
        decoder = self._decoder.reset() if hasattr(self, "_decoder") else None
        for obj in (decoder, getattr(self, "_packets", None), getattr(self, "_source", None)):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing must not mask the error that led here
                    log.debug("error while closing %r", obj, exc_info=True)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        m = getattr(self, "_metadata", None)
        if m is None:
            return f"VideoReader({getattr(self, 'url', '?')!r}, not yet indexed)"
        return (
            f"VideoReader({self.url!r}, {m.codec} {m.width}x{m.height}, {m.num_frames} frames, "
            f"path={m.access_path}, backend={self.backend})"
        )
