"""VideoReader: frame-exact random access over any fsspec URL.

MP4/MOV/fMP4 go through our own index and exact byte ranges (``access_path
== "index"``); anything else through PyAV demuxing over the same tracked file
(``"demux"``). Both return frame ``i`` of a plain sequential FFmpeg decode, or
raise: never a neighbour.

A reader is safe to hold: calls from several threads are serialised, a
reader inherited by a forked process rebuilds its decoder and connections
there (never touching the parent's FFmpeg state), and a pickled reader
carries its parsed index to a spawned process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import operator
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from ._errors import CorruptVideoError, NotAVideoError, UnsupportedFormatError, VideoLoaderError
from ._plan import DecodeGroup, Plan, plan_frames
from ._types import FrameBatch, VideoMetadata
from .decoders._annexb import (
    h264_is_disposable,
    hevc_is_disposable,
    hvcc_num_temporal_layers,
    parse_avcc,
    parse_hvcc,
)
from .decoders._base import DecoderBackend, OutputSpec, Packet, StreamConfig
from .io import RangeSource, TransferStats
from .mp4 import SampleIndex, load_index

__all__ = ["VideoReader"]

log = logging.getLogger(__name__)

# Codecs the packet path feeds from our index; others use the demux fallback.
INDEX_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
# Fetch at most this many bytes ahead of the decoder: bounds memory on long
# clips while the next batch downloads during the current batch's decode.
PIPELINE_BATCH_BYTES = 16 * 1024 * 1024

# Decoders of readers created before a fork and collected in the child: never
# freed there (see VideoReader.close).
_INHERITED_ACROSS_FORK: list[Any] = []

# Per-request records a reader keeps (totals are never capped).
MAX_RECORDS = 4096

DimensionOrder = Literal["NCHW", "NHWC"]

# Serialises the "first call in a new process" step of every reader; a fresh
# lock in each forked child, since a copy may have been held at fork time.
_PROCESS_LOCK = threading.Lock()


def _new_process_lock() -> None:
    global _PROCESS_LOCK
    _PROCESS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_process_lock)

_F = TypeVar("_F", bound=Callable[..., Any])


def _serialised(method: _F) -> _F:
    """Run a public method under the reader's lock, in the right process, with
    every error of ours naming the reader's (redacted) URL."""

    @functools.wraps(method)
    def wrapper(self: "VideoReader", *args: Any, **kwargs: Any) -> Any:
        with self._entered():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _with_url(error: VideoLoaderError, url: str) -> VideoLoaderError:
    """The same error naming ``url`` (redacted) if its message does not yet."""
    if url in str(error):
        return error
    try:
        named = type(error)(f"{url}: {error}")
    except Exception:  # a subclass with another constructor: keep it as it is
        return error
    named.__cause__ = error
    return named


def _as_index(value: Any, what: str = "frame index") -> int:
    """An integer index (int, numpy integer, integer 0-d tensor), never a float or bool."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"a {what} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"a {what} must be an integer (int, numpy integer or integer tensor), got {type(value).__name__} {value!r}; "
            "frame indices are never rounded: use get_frames_played_at for times in seconds"
        ) from None


def _as_indices(indices: Any) -> list[int]:
    """Frame indices from a sequence, an integer numpy array or an integer tensor."""
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__") or getattr(indices, "ndim", 1) == 0:
        raise TypeError(
            f"get_frames_at takes a sequence of frame indices, got {type(indices).__name__} {indices!r}; "
            f"use get_frame_at(i) for one frame, or get_frames_at([i])"
        )
    if isinstance(indices, torch.Tensor):
        if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise TypeError(f"frame indices must be integers, got a tensor of {indices.dtype}")
        return [int(i) for i in indices.reshape(-1).tolist()]
    if isinstance(indices, np.ndarray):
        if indices.dtype.kind not in "iu":
            raise TypeError(f"frame indices must be integers, got an array of {indices.dtype}")
        return [int(i) for i in indices.reshape(-1).tolist()]
    return [_as_index(i) for i in indices]


class VideoReader:
    """Random access to the frames of one video.

    Safe to hold: one reader may be shared by threads (its calls are
    serialised; use one reader per thread for parallel decoding), used in a
    forked process (it rebuilds its decoder and connections there, keeping
    the parsed index), and pickled (``pickle.loads(pickle.dumps(r))`` is a
    working reader of the same source and options that carries the index
    instead of reading it again; its ``transfer_stats`` start empty).

    What is detected: container damage (boxes, tables, sizes, times), bytes
    that differ from what was asked (HTTP status, exact lengths, ETag /
    Last-Modified / size validators), packets the decoder rejects and frames
    FFmpeg flags as corrupt all raise. What is not: a bit flipped inside a
    compressed sample that the decoder accepts without complaint decodes to a
    damaged picture, as in every FFmpeg-based reader; transport integrity
    comes from TLS and the validators, not from the codec.

    Args:
        source: a URL (``https://``, ``s3://``, ``file://``...), a local path, or
            an open fsspec file.
        backend: ``"auto"``, ``"cpu"``, ``"nvdec"`` or ``"videotoolbox"``.
        storage_options: passed to fsspec for the URL's filesystem.
        width, height: output size; one alone keeps the aspect ratio.
        size: ``(height, width)``, an alternative to ``width``/``height``.
        dimension_order: ``"NCHW"`` (default) or ``"NHWC"``.
        device: where NVDEC output lives (``"cuda:0"``); CPU backends ignore it.
        track: the track id to read (MP4 ``tkhd`` track id, or the container's
            stream id on the demux path); default the first video track. A
            track that does not exist or is not video raises.
        stats: a parent TransferStats that also receives this reader's records.
        index_cache: an on-disk cache directory for MP4 indexes (None: memory only).
        num_threads: FFmpeg decoder threads (0: one per core).
        source_options: extra keyword arguments for ``RangeSource``
            (``coalesce_gap_bytes``, ``retry``, timeouts...).

    Raises:
        SourceError: the bytes could not be read (404, 403, faults).
        ContainerError: the bytes are not a usable video (``NotAVideoError``
            for a file with no video frame, a still image included).
        BackendUnavailableError: the requested backend cannot run here.
    """

    def __init__(
        self,
        source: Any,
        *,
        backend: str = "auto",
        storage_options: dict | None = None,
        width: int | None = None,
        height: int | None = None,
        size: tuple[int, int] | None = None,
        dimension_order: DimensionOrder = "NCHW",
        device: str | None = None,
        track: int | None = None,
        stats: TransferStats | None = None,
        index_cache: Any = None,
        num_threads: int = 0,
        source_options: dict | None = None,
    ) -> None:
        if dimension_order not in ("NCHW", "NHWC"):
            raise ValueError(f"dimension_order must be 'NCHW' or 'NHWC', got {dimension_order!r}")
        if size is not None:
            if width is not None or height is not None:
                raise ValueError("give either size=(h, w) or width/height, not both")
            height, width = size
        if track is not None:
            track = _as_index(track, "track id")
        self.dimension_order = dimension_order
        self._init_runtime()
        self._num_threads = num_threads
        self._closed = False
        self._index: SampleIndex | None = None
        self._demux = None
        self._demux_table = None
        self._demux_track: int | None = None
        self._decoder: DecoderBackend | None = None
        self._decoder_factory: Callable[[], DecoderBackend] | None = None
        self._nal_length_size = 0
        self._disposable = None
        self._metadata: VideoMetadata | None = None
        self.decoded_nbytes = 0
        """Compressed bytes fed to the decoder by all calls so far (index path:
        exact sample bytes; demux path: the demuxed packets' sizes)."""
        self.last_decode_nbytes = 0
        """Compressed bytes fed to the decoder by the last ``get_frames_*`` call."""
        # Totals stay exact; only the per-request records are capped, so a
        # reader kept open for a long epoch does not grow without bound.
        own_stats = TransferStats(parent=stats, max_records=MAX_RECORDS)
        self._source = RangeSource(source, storage_options=storage_options, stats=own_stats, **(source_options or {}))
        try:
            with self._errors_named():
                self._open(backend, track, index_cache, OutputSpec(height=height, width=width, device=device or "cpu"))
        except BaseException:
            self.close()
            raise

    def _init_runtime(self) -> None:
        """What belongs to one process: the lock, and the pid it was made in."""
        self._pid = os.getpid()
        self._lock = threading.RLock()

    # -- opening ------------------------------------------------------------

    def _open(self, backend: str, track: int | None, index_cache: Any, output: OutputSpec) -> None:
        try:
            index = load_index(self._source, track=track, cache=index_cache)
        except (NotAVideoError, UnsupportedFormatError) as e:
            log.info("%s: not indexable (%s); using the PyAV demux fallback", self._source.url, e)
            index = None
        if index is not None and index.codec not in INDEX_CODECS:
            log.info("%s: codec %s is not on the packet path; using the PyAV demux fallback", self._source.url, index.codec)
            index = None
        if index is None:
            self._open_demux(backend, output, track)
            return
        if index.num_frames == 0:
            raise NotAVideoError(f"{self._source.url}: the video track has no frames to decode")
        self._index = index
        from .decoders._registry import get_backend_class, resolve_backend

        name = resolve_backend(backend, index.codec)
        cls = get_backend_class(name)
        config = StreamConfig(
            codec=index.codec,
            extradata=index.extradata,
            width=index.width,
            height=index.height,
            timescale=index.timescale,
            bit_depth=index.bit_depth,
            sample_entry=index.sample_entry,
        )
        if name == "nvdec" and not output.device.startswith("cuda"):
            output = dataclasses.replace(output, device="cuda")
        self._disposable = None
        if index.extradata and index.extradata[:1] == b"\x01":
            if index.codec == "h264":
                self._nal_length_size = parse_avcc(index.extradata).nal_length_size
                self._disposable = h264_is_disposable
            elif index.codec == "hevc" and hvcc_num_temporal_layers(index.extradata) == 1:
                self._nal_length_size = parse_hvcc(index.extradata).nal_length_size
                self._disposable = hevc_is_disposable
        self._backend_name = name
        self._output = output
        extra = {"thread_count": self._num_threads} if name == "cpu" else {}
        self._decoder_factory = functools.partial(cls, config, output=output, **extra)
        self._decoder = self._decoder_factory()
        pts, durs = index.frame_pts(), index.frame_durations()
        self._set_timeline(pts, durs, index.timescale)
        self._metadata = self._make_metadata(
            codec=index.codec,
            width=index.width,
            height=index.height,
            pixel_format=None,
            bit_depth=index.bit_depth,
            rotation=index.rotation,
            container="mp4",
            access_path="index",
        )

    def _open_demux(self, backend: str, output: OutputSpec, track: int | None) -> None:
        if backend not in ("auto", "cpu"):
            log.info("%s: the demux fallback decodes on the CPU (asked for %s)", self._source.url, backend)
        self._demux_output = output
        self._demux_track = track
        demux = self._get_demux()
        self._backend_name = "cpu"
        tb = demux.time_base
        self._timebase = (tb.numerator, tb.denominator)
        # The frame timeline (hence metadata and access by index) needs the
        # packet table, one pass over the file: built on first need only, so
        # get_frames_played_at can seek instead.
        self._metadata = None

    def _get_demux(self) -> Any:
        """The demuxer of this process (opened again after a fork or unpickling)."""
        if self._demux is None:
            from ._fallback import DemuxVideo

            self._demux = DemuxVideo(
                self._source,
                output=self._demux_output,
                thread_count=self._num_threads,
                track=self._demux_track,
                table=self._demux_table,
            )
        return self._demux

    def _get_decoder(self) -> DecoderBackend:
        """The decoder of this process (built again after a fork or unpickling)."""
        if self._decoder is None:
            assert self._decoder_factory is not None
            self._decoder = self._decoder_factory()
        return self._decoder

    def _load_demux_timeline(self) -> None:
        demux = self._get_demux()
        t = demux.table
        self._demux_table = t
        self._frame_pts = t.frame_pts()
        self._frame_durations = t.frame_durations()
        self._metadata = self._make_metadata(
            codec=demux.codec,
            width=demux.width,
            height=demux.height,
            pixel_format=demux.pixel_format,
            bit_depth=None,
            rotation=0,
            container=demux.format_name,
            access_path="demux",
        )

    def _set_timeline(self, pts: np.ndarray, durations: np.ndarray, timescale: int) -> None:
        self._timebase = (1, timescale)
        self._frame_pts = pts
        self._frame_durations = durations

    def _seconds(self, ticks: np.ndarray) -> np.ndarray:
        num, den = self._timebase
        return ticks.astype(np.float64) * num / den

    def _make_metadata(self, **kw: Any) -> VideoMetadata:
        n = len(self._frame_pts)
        if n:
            begin = float(self._seconds(self._frame_pts[:1])[0])
            end = float(self._seconds(self._frame_pts[-1:] + self._frame_durations[-1:])[0])
        else:
            begin = end = 0.0
        duration = max(end - begin, 0.0)
        return VideoMetadata(
            num_frames=n,
            fps=(n / duration) if duration > 0 else 0.0,
            duration_seconds=duration,
            begin_stream_seconds=begin,
            extra={"backend": self._backend_name, "url": self._source.url},
            **kw,
        )

    # -- process, thread and error boundaries -------------------------------

    @contextlib.contextmanager
    def _entered(self) -> Iterator[None]:
        """Serialise a call, adopt a new process first, and name the URL in errors."""
        if self._pid != os.getpid():
            with _PROCESS_LOCK:
                if self._pid != os.getpid():
                    self._adopt_process()
        with self._lock, self._errors_named():
            yield

    @contextlib.contextmanager
    def _errors_named(self) -> Iterator[None]:
        try:
            yield
        except VideoLoaderError as e:
            named = _with_url(e, self._source.url)
            if named is e:
                raise
            raise named from e

    def _adopt_process(self) -> None:
        """First use in a forked child: leave the parent's decoder alone.

        An FFmpeg decoder inherited across fork refers to threads that do not
        exist here; using or freeing it can hang forever. It is kept alive,
        unused, and a new one is built on first need. The index, the demux
        packet table and the source's configuration are kept; the source
        opens its own connections in this process.
        """
        _INHERITED_ACROSS_FORK.append((self._decoder, self._demux))
        self._decoder, self._demux = None, None
        self._init_runtime()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # Process-bound state stays behind; the index and tables travel.
        for name in ("_lock", "_pid", "_decoder", "_demux"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._decoder, self._demux = None, None
        self._init_runtime()

    # -- public ---------------------------------------------------------------

    @property
    @_serialised
    def metadata(self) -> VideoMetadata:
        """Stream metadata (``access_path`` says index or demux).

        On the demux path the first access reads the container's packet table
        (about one pass over the file; the bytes show in ``transfer_stats``).
        """
        if self._metadata is None:
            self._check_open()
            self._load_demux_timeline()
        assert self._metadata is not None
        return self._metadata

    @property
    def access_path(self) -> str:
        """``"index"`` (our MP4 index, exact ranges) or ``"demux"`` (PyAV fallback)."""
        return "index" if self._index is not None else "demux"

    @property
    def backend(self) -> str:
        """The decoder backend in use: ``cpu``, ``nvdec`` or ``videotoolbox``."""
        return self._backend_name

    @property
    def index(self) -> SampleIndex | None:
        """The MP4 sample index (None on the demux path)."""
        return self._index

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

    def plan(self, indices: Sequence[int]) -> Plan:
        """The groups and byte ranges that ``get_frames_at(indices)`` would read."""
        if self._index is None:
            raise UnsupportedFormatError(f"{self.url}: the demux fallback has no byte-range plan")
        return plan_frames(self._index, _as_indices(indices))

    def get_frame_at(self, index: int) -> FrameBatch:
        """One frame, as a batch of one.

        Raises:
            TypeError: ``index`` is not an integer (floats are never rounded).
            IndexError: ``index`` is outside ``[0, num_frames)``.
        """
        return self.get_frames_at([_as_index(index)])

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
        frames = _as_indices(indices)
        n = self.metadata.num_frames
        for i in frames:
            if not 0 <= i < n:
                raise IndexError(f"{self.url}: frame index {i} is out of range for {n} frames")
        if not frames:
            return self._batch([], [])
        if self._index is not None:
            decoded, fed = self._decode_index_path(plan_frames(self._index, frames))
        else:
            demux = self._get_demux()
            before = demux.decoded_nbytes
            decoded = demux.decode_frames(frames)
            fed = demux.decoded_nbytes - before
        self._count_fed(fed)
        return self._batch(frames, [decoded[i] for i in frames])

    def _count_fed(self, nbytes: int) -> None:
        self.last_decode_nbytes = nbytes
        self.decoded_nbytes += nbytes

    def get_frames_in_range(self, start: int = 0, stop: int | None = None, step: int = 1) -> FrameBatch:
        """Frames ``start, start + step, ...`` below ``stop`` (default: the end)."""
        n = self.metadata.num_frames
        start = _as_index(start, "start")
        stop = n if stop is None else _as_index(stop, "stop")
        step = _as_index(step, "step")
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if not (0 <= start <= n and 0 <= stop <= n):
            raise IndexError(f"{self.url}: range [{start}, {stop}) is outside [0, {n}]")
        return self.get_frames_at(list(range(start, stop, step)))

    def frame_indices_played_at(self, seconds: Sequence[float]) -> list[int]:
        """The index of the frame on screen at each time (pts <= t < pts + duration)."""
        secs = np.asarray(seconds, dtype=np.float64).reshape(-1)
        m = self.metadata
        starts = self._seconds(self._frame_pts)
        ends = starts + self._seconds(self._frame_durations)
        idx = np.searchsorted(starts, secs, side="right") - 1
        out = []
        for t, i in zip(secs.tolist(), idx.tolist()):
            if i < 0 or t >= ends[-1] or not np.isfinite(t):
                end = m.begin_stream_seconds + m.duration_seconds
                raise IndexError(f"{self.url}: time {t} s is outside the video [{m.begin_stream_seconds}, {end})")
            out.append(int(i))
        return out

    @_serialised
    def get_frames_played_at(self, seconds: Sequence[float]) -> FrameBatch:
        """The frame on screen at each time, in the order asked.

        On the demux path, before anything needed the packet table, each time
        is served by a seek to the keyframe before it and a decode forward, so
        no whole-file pass is made.
        """
        self._check_open()
        if self._metadata is None:
            secs = [float(t) for t in np.asarray(seconds, dtype=np.float64).reshape(-1)]
            demux = self._get_demux()
            before = demux.decoded_nbytes
            tensors, pts, durs = demux.decode_at_seconds(secs)
            self._count_fed(demux.decoded_nbytes - before)
            return self._stack(
                tensors,
                torch.tensor(pts, dtype=torch.float64),
                torch.tensor(durs, dtype=torch.float64),
            )
        return self.get_frames_at(self.frame_indices_played_at(seconds))

    def close(self) -> None:
        """Release the decoder and network resources. Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if self._pid != os.getpid():
            # A reader inherited across fork and never used here: its FFmpeg
            # decoders' threads do not exist in this process, and freeing such
            # a decoder waits on them forever. Keep them alive, unused.
            _INHERITED_ACROSS_FORK.append((self._decoder, self._demux))
            self._decoder, self._demux = None, None
        for obj in (self._decoder, self._demux, getattr(self, "_source", None)):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing must not mask the error that led here
                    log.debug("error while closing %r", obj, exc_info=True)
        self._decoder = None
        self._demux = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        m = getattr(self, "_metadata", None)
        if m is None:
            return "VideoReader(<not open>)"
        return (
            f"VideoReader({self.url!r}, {m.codec} {m.width}x{m.height}, {m.num_frames} frames, "
            f"path={m.access_path}, backend={self.backend})"
        )

    # -- internals ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise VideoLoaderError(f"{self.url}: the reader is closed")

    def _batch(self, frames: list[int], tensors: list[torch.Tensor]) -> FrameBatch:
        sel = np.asarray(frames, dtype=np.int64)
        pts = self._seconds(self._frame_pts[sel]) if len(sel) else np.zeros(0)
        dur = self._seconds(self._frame_durations[sel]) if len(sel) else np.zeros(0)
        return self._stack(tensors, torch.from_numpy(pts), torch.from_numpy(dur))

    def _stack(self, tensors: list[torch.Tensor], pts: torch.Tensor, dur: torch.Tensor) -> FrameBatch:
        if not tensors:
            h, w = self._output_hw()
            nhwc = torch.empty((0, h, w, 3), dtype=torch.uint8)
        elif tensors[0].stride(0) == 1:
            # CHW views of channel-last memory (swscale's rgb24): stacking them
            # channel-last is a plain copy, where stacking as CHW would
            # transpose every pixel (a third of a call's time at 1080p).
            nhwc = torch.stack([t.permute(1, 2, 0) for t in tensors])
        else:
            nhwc = torch.stack(tensors).permute(0, 2, 3, 1)
        # NCHW is a view of channel-last memory, as torchcodec returns it;
        # .contiguous() gives a packed copy where a consumer needs one.
        data = nhwc.contiguous() if self.dimension_order == "NHWC" else nhwc.permute(0, 3, 1, 2)
        return FrameBatch(data=data, pts_seconds=pts, duration_seconds=dur)

    def _output_hw(self) -> tuple[int, int]:
        if self._index is not None:
            out, height, width = self._output, self._index.height, self._index.width
        else:
            demux = self._get_demux()
            out, height, width = demux.output, demux.height, demux.width
        if out.width is None and out.height is None:
            return height, width
        w = out.width or round(width * out.height / max(height, 1))
        h = out.height or round(height * out.width / max(width, 1))
        return h, w

    def _fetch(self, groups: Sequence[DecodeGroup]) -> list[list[bytes]]:
        """One batched, concurrent range call for several groups."""
        ranges = [r for g in groups for r in g.ranges]
        blobs = self._source.read_ranges(ranges)
        out, k = [], 0
        for g in groups:
            out.append(blobs[k : k + len(g.ranges)])
            k += len(g.ranges)
        return out

    def _decode_index_path(self, plan: Plan) -> tuple[dict[int, torch.Tensor], int]:
        """``({frame: tensor}, compressed bytes fed to the decoder)`` for a plan."""
        batches: list[list[DecodeGroup]] = [[]]
        nbytes = 0
        for g in plan.groups:
            if batches[-1] and nbytes + g.nbytes > PIPELINE_BATCH_BYTES:
                batches.append([])
                nbytes = 0
            batches[-1].append(g)
            nbytes += g.nbytes
        out: dict[int, torch.Tensor] = {}
        fed = 0

        def decode(batch: list[DecodeGroup], blobs_per_group: list[list[bytes]]) -> None:
            nonlocal fed
            for g, blobs in zip(batch, blobs_per_group):
                frames, nbytes = self._decode_group(g, blobs)
                out.update(frames)
                fed += nbytes

        if len(batches) == 1:
            decode(batches[0], self._fetch(batches[0]))
        else:
            # Overlap: the next batch downloads while this one decodes.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloader-fetch") as pool:
                pending = pool.submit(self._fetch, batches[0])
                for i, batch in enumerate(batches):
                    blobs_per_group = pending.result()
                    if i + 1 < len(batches):
                        pending = pool.submit(self._fetch, batches[i + 1])
                    decode(batch, blobs_per_group)
        if self._metadata.pixel_format is None:
            pix = getattr(self._get_decoder(), "pixel_format", lambda: None)()
            if pix:
                self._metadata = dataclasses.replace(self._metadata, pixel_format=pix)
        return out, fed

    def _decode_group(self, group: DecodeGroup, blobs: list[bytes]) -> tuple[dict[int, torch.Tensor], int]:
        """``({frame: tensor}, compressed bytes fed)`` for one group."""
        index = self._index
        starts = np.fromiter((r.start for r in group.ranges), dtype=np.int64, count=len(group.ranges))
        views = [memoryview(b) for b in blobs]
        wanted = {int(index.pts[index.frame_to_sample[f]]): f for f in group.frames}
        packets = []
        for s in range(group.first_sample, group.last_sample + 1):
            off, size = int(index.offsets[s]), int(index.sizes[s])
            k = int(np.searchsorted(starts, off, side="right")) - 1
            rel = off - int(starts[k])
            data = views[k][rel : rel + size]
            if len(data) != size:
                raise CorruptVideoError(f"{self.url}: sample {s} at [{off}, {off + size}) is not inside its fetched range")
            # Unwanted non-reference pictures cannot affect any other frame: skip
            # their decoding (a third of the pictures with a B-pyramid).
            if (
                self._disposable is not None
                and not index.is_sync[s]
                and int(index.pts[s]) not in wanted
                and self._disposable(data, self._nal_length_size)
            ):
                continue
            packets.append(
                Packet(
                    data=bytes(data),
                    pts=int(index.pts[s]),
                    dts=int(index.dts[s]),
                    duration=int(index.durations[s]),
                    is_sync=bool(index.is_sync[s]),
                )
            )
        try:
            got = self._get_decoder().decode_group(packets, wanted)
        except CorruptVideoError as e:
            raise CorruptVideoError(f"{self.url}: frames {list(group.frames)}: {e}") from e
        out = {}
        for pts, f in wanted.items():
            if pts not in got:
                raise CorruptVideoError(
                    f"{self.url}: the {self._backend_name} decoder produced no frame {f} (pts {pts}) "
                    f"from samples {group.first_sample}..{group.last_sample}; the stream may be corrupt"
                )
            out[f] = got[pts]
        return out, sum(len(p.data) for p in packets)
