"""VideoFrameDataset (map-style) and VideoFrameIterableDataset (streaming).

Both hold configuration only and are picklable: readers are opened lazily in
the process (and thread) that loads a sample, so one dataset object serves
``num_workers=0``, forked and spawned DataLoader workers, and the thread
pipeline of :func:`~videoloader.data.make_node_loader`.

Reproducibility: the frames of item ``i`` in epoch ``e`` are drawn from
``numpy.random.default_rng(SeedSequence([seed, e, i]))`` and nothing else, so
they do not depend on worker count, worker id, prefetch order or start method.
The epoch lives in shared memory (:class:`~videoloader.data._epoch.SharedEpoch`):
``set_epoch`` reaches DataLoader workers kept alive by ``persistent_workers=True``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .._errors import SampleError, VideoLoaderError
from ..io import redact_text
from ._epoch import SharedEpoch
from ._readers import ProcessState, close_process_state, process_state
from ._samplers import FrameSampler, RandomClip
from ._sources import Columns, SourceTable, VideoRecord, is_manifest_path, iter_sources

__all__ = ["SampleError", "VideoFrameDataset", "VideoFrameIterableDataset"]

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip", "record"]
_ON_ERROR = ("raise", "skip", "record")
_TRANSFER_KEYS = ("bytes_received", "bytes_requested", "num_requests", "num_retries")


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _size_option(name: str, value: Any) -> int | tuple[int, int] | None:
    """None, a positive int, or a ``(height, width)`` pair of positive ints."""
    if value is None:
        return None

    def ok(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and bool(v > 0)

    if ok(value):
        return int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(ok(v) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be a positive int or (height, width) with positive ints, got {value!r}")


def _chain_is_clean(e: BaseException) -> bool:
    """Whether no message along ``e``'s cause/context chain holds a URL secret."""
    seen: set[int] = set()
    node: BaseException | None = e
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if redact_text(str(node)) != str(node):
            return False
        node = node.__cause__ if node.__cause__ is not None else node.__context__
    return True


def _sample_exception(e: Exception, index: int, url: str) -> Exception:
    """``e`` re-made with the item and redacted URL in front: our type, or SampleError.

    A :class:`~videoloader.VideoLoaderError` keeps its type, so ``except
    FileNotFoundError`` (a 404) keeps working, also after DataLoader re-raises
    a worker's exception in the main process. Anything else (a library error
    that escaped its wrapper) becomes a :class:`SampleError`: every failure of
    an item is in the one error tree. The original is ``__cause__`` unless a
    message along its chain holds a URL secret.
    """
    msg = f"sample {index} ({url}): {type(e).__name__}: {redact_text(str(e))}"
    new: Exception | None = None
    if isinstance(e, VideoLoaderError):
        try:
            new = type(e)(msg)
        except Exception:  # noqa: BLE001 - a constructor with other arguments
            new = None
    if new is None or type(new) is not type(e):
        new = SampleError(msg)
    new.__cause__ = e if _chain_is_clean(e) else None
    new.__suppress_context__ = True
    return new


@dataclasses.dataclass(eq=False)
class _Pending:
    """An item between :meth:`_SampleLoader._fetch_item` and :meth:`_SampleLoader._finish_item`."""

    index: int
    record: VideoRecord
    url: str
    """The record's URL, redacted."""
    has_labels: bool
    reader: Any = None
    """The reader checked out for this item (None if opening it failed)."""
    before: Any = None
    """The reader's transfer snapshot before this item (None: a new reader, all of its requests count)."""
    indices: list[int] = dataclasses.field(default_factory=list)
    fetched: Any = None
    """What ``reader._fetch_frames`` returned."""
    error: Exception | None = None


class _SampleLoader:
    """Configuration and per-item loading shared by both dataset forms."""

    def __init__(
        self,
        *,
        sampler: FrameSampler | None,
        seed: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None,
        output_size: int | tuple[int, int] | None,
        backend: str,
        on_error: OnError,
        storage_options: dict | None,
        index_cache: str | os.PathLike | None,
        num_threads: int | None,
        max_open_readers: int,
        max_concurrent_samples: int,
        reader_options: dict | None,
        crop: int | tuple[int, int] | None,
        clips_per_video: int,
        url_column: str,
        label_column: str,
        start_column: str | None,
        end_column: str | None,
        extra_columns: bool | Sequence[str],
    ) -> None:
        sampler = RandomClip(8) if sampler is None else sampler
        if not isinstance(sampler, FrameSampler):
            raise TypeError(
                f"sampler must be a FrameSampler (RandomFrames, RandomClip, UniformClip, AllFrames), got {sampler!r}"
            )
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        output_size = _size_option("output_size", output_size)
        crop = _size_option("crop", crop)
        if isinstance(crop, int):
            crop = (crop, crop)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {transform!r}")
        if num_threads is not None:
            _check_int("num_threads", num_threads, minimum=0)
        reader_options = dict(reader_options or {})
        clash = set(reader_options) & {
            "backend",
            "storage_options",
            "size",
            "width",
            "height",
            "index_cache",
            "stats",
            "num_threads",
        }
        if clash:
            raise ValueError(f"reader_options must not set {sorted(clash)}: they are dataset arguments")
        self.sampler = sampler
        self.seed = _check_int("seed", seed, minimum=0)
        self._epoch = SharedEpoch(0)
        self.transform = transform
        self.output_size = output_size
        self.backend = backend
        self.on_error = on_error
        self.storage_options = dict(storage_options) if storage_options else None
        self.index_cache = os.fspath(index_cache) if index_cache is not None else None
        self.num_threads = num_threads
        self.max_open_readers = _check_int("max_open_readers", max_open_readers, minimum=0)
        self.max_concurrent_samples = _check_int("max_concurrent_samples", max_concurrent_samples, minimum=1)
        self.reader_options = reader_options
        self.crop = crop
        self.clips_per_video = _check_int("clips_per_video", clips_per_video, minimum=1)
        self.columns = Columns(
            url=url_column,
            label=label_column,
            start=start_column,
            end=end_column,
            extra=extra_columns if isinstance(extra_columns, bool) else tuple(extra_columns),
        )

    # -- epochs and process-local state ---------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch whose frames items draw (see :meth:`set_epoch`)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s frames from now on, here and in DataLoader workers.

        Call it before iterating the epoch. The epoch is kept in shared memory,
        so workers started earlier (``persistent_workers=True``) read it when
        they load each item: epoch ``e`` gives the same frames as with
        ``num_workers=0``. A copy made by pickling (not by starting a worker)
        has its own epoch.
        """
        self._epoch.set(_check_int("epoch", epoch, minimum=0))

    def _state(self) -> ProcessState:
        return process_state(
            self, "_proc", functools.partial(ProcessState, self.max_open_readers, self.max_concurrent_samples)
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_proc", None)  # live readers and threads never travel
        return state

    @property
    def transfer_stats(self) -> Any:
        """Totals (``as_dict()``) of every request this process made for this dataset."""
        return self._state().stats

    @property
    def num_skipped(self) -> int:
        """Samples dropped by ``on_error="skip"`` in this process."""
        return self._state().num_skipped

    @property
    def num_errors(self) -> int:
        """Samples that failed in this process (any policy but ``raise``)."""
        return self._state().num_errors

    def close(self) -> None:
        """Close this process's open readers and threads (they reopen lazily)."""
        close_process_state(self, "_proc")

    # -- loading --------------------------------------------------------------

    def _open_reader(self, url: str, state: ProcessState) -> Any:
        from .._reader import VideoReader

        threads = self.num_threads
        if threads is None:
            # Inside DataLoader workers or a thread pool the parallelism comes
            # from the pool: one FFmpeg thread each. Alone: FFmpeg picks.
            pooled = get_worker_info() is not None or threading.current_thread() is not threading.main_thread()
            threads = 1 if pooled else 0
        size: dict[str, Any] = {}
        if isinstance(self.output_size, tuple) and self.crop is None:
            size["size"] = self.output_size  # the plain scaler, as before crops existed
        elif self.output_size is not None or self.crop is not None:
            from ..transforms import CenterCrop, Resize

            size["transforms"] = [Resize(self.output_size)] if self.output_size is not None else []
            if self.crop is not None:
                size["transforms"].append(CenterCrop(self.crop))
        return VideoReader(
            url,
            backend=self.backend,
            storage_options=self.storage_options,
            **size,
            stats=state.stats,
            index_cache=self.index_cache,
            num_threads=threads,
            **self.reader_options,
        )

    def load(self, index: int, record: VideoRecord, *, has_labels: bool | None) -> dict[str, Any] | None:
        """The sample for item ``index`` (see :class:`VideoFrameDataset`), or None if skipped.

        ``has_labels``: whether the sample gets a ``label`` key; None: when the record has a label.
        """
        return self._finish_item(self._fetch_item(index, record, has_labels=has_labels))

    def _fetch_item(self, index: int, record: VideoRecord, *, has_labels: bool | None) -> _Pending:
        """The first half of :meth:`load`: open a reader, choose the frames, download their bytes.

        Nothing is decoded and nothing raises: a failure travels in the result
        to :meth:`_finish_item`, which applies the error policy. The reader stays
        checked out until :meth:`_finish_item`.
        """
        from ..io import redact_url

        if has_labels is None:
            has_labels = record.label is not None
        state = self._state()
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))
        pending = _Pending(index=int(index), record=record, url=redact_url(record.url), has_labels=has_labels)
        try:
            pending.reader, is_new = state.readers.acquire(record.url, lambda: self._open_reader(record.url, state))
            pending.before = None if is_new else pending.reader.transfer_stats.snapshot()
            clips = [
                list(
                    self.sampler(
                        pending.reader, rng, start_seconds=record.start_seconds, end_seconds=record.end_seconds
                    )
                )
                for _ in range(self.clips_per_video)
            ]
            if len({len(c) for c in clips}) > 1:
                raise ValueError(
                    f"clips_per_video needs clips of one length, the sampler gave {[len(c) for c in clips]}"
                )
            pending.indices = [i for clip in clips for i in clip]
            # One call: every GOP this sample needs goes out as one concurrent range batch.
            pending.fetched = pending.reader._fetch_frames(pending.indices)
        except Exception as e:  # noqa: BLE001 - _finish_item() applies the error policy
            pending.error = e
        return pending

    def _finish_item(self, pending: _Pending) -> dict[str, Any] | None:
        """The second half of :meth:`load`: decode what :meth:`_fetch_item` downloaded, give the reader back."""
        state = self._state()
        reader, error = pending.reader, pending.error
        batch = None
        if error is None:
            try:
                batch = reader._decode_fetched(pending.fetched)
            except Exception as e:  # noqa: BLE001 - handled below, outside this block
                error = e
        pending.error = None  # the sample dict or the raised error carries it from here
        transfer = dict.fromkeys(_TRANSFER_KEYS, 0)
        if reader is not None:
            stats = reader.transfer_stats
            transfer = (stats if pending.before is None else stats.since(pending.before)).as_dict()
        if error is not None:
            # Outside any except block: what _failed raises does not get the raw error as __context__.
            if reader is not None:
                state.readers.discard(reader)
            return self._failed(error, pending.index, pending.url, pending.record, transfer, pending.has_labels, state)
        assert reader is not None and batch is not None, "_fetch_item() acquired a reader or set error"
        state.readers.release(pending.record.url, reader)
        state.count()
        index, record = pending.index, pending.record
        frames, frame_indices = batch.data, torch.from_numpy(np.asarray(pending.indices, dtype=np.int64))
        pts = batch.pts_seconds
        if self.clips_per_video > 1:
            k = self.clips_per_video
            frames = frames.reshape(k, -1, *frames.shape[1:])
            frame_indices, pts = frame_indices.reshape(k, -1), pts.reshape(k, -1)
        if self.transform is not None:
            frames = self.transform(frames)  # outside the error policy: a transform bug always raises
        sample: dict[str, Any] = {
            "frames": frames,
            "frame_indices": frame_indices,
            "pts_seconds": pts,
            "index": int(index),
            "url": pending.url,
        }
        if pending.has_labels:
            sample["label"] = record.label
        sample.update(record.extra)
        sample["transfer"] = transfer
        if self.on_error == "record":
            sample["error"] = None
        return sample

    def _failed(
        self,
        e: Exception,
        index: int,
        url: str,
        record: VideoRecord,
        transfer: dict[str, int],
        has_labels: bool | None,
        state: ProcessState,
    ) -> dict[str, Any] | None:
        if self.on_error == "raise":
            raise _sample_exception(e, index, url)
        state.count(skipped=self.on_error == "skip", error=True)
        message = f"{type(e).__name__}: {redact_text(str(e))}"
        log.warning("sample %d (%s) failed (%s): %s", index, url, self.on_error, message)
        if self.on_error == "skip":
            return None
        if self.crop is not None:
            h, w = self.crop
        else:
            h, w = self.output_size if isinstance(self.output_size, tuple) else (0, 0)
        lead = (self.clips_per_video, 0) if self.clips_per_video > 1 else (0,)
        sample: dict[str, Any] = {
            "frames": torch.empty((*lead, 3, h, w), dtype=torch.uint8),
            "frame_indices": torch.empty(lead, dtype=torch.int64),
            "pts_seconds": torch.empty(lead, dtype=torch.float64),
            "index": int(index),
            "url": url,
        }
        if has_labels:
            sample["label"] = record.label
        sample.update(record.extra)
        sample["transfer"] = transfer
        sample["error"] = message
        return sample

    def _config_repr(self) -> str:
        return (
            f"sampler={self.sampler!r}, seed={self.seed}, epoch={self.epoch}, output_size={self.output_size}, "
            f"backend={self.backend!r}, on_error={self.on_error!r}"
        )


class VideoFrameDataset(_SampleLoader, Dataset):
    """Frames sampled from a list of videos, one item per video (map-style).

    ``dataset[i]`` opens (or reuses) a reader for record ``i``, lets the
    sampler choose frame indices from the metadata, and decodes them in one
    ``get_frames_at`` call. It returns a dict:

    - ``frames``: uint8 tensor ``T x C x H x W`` (after ``transform``)
    - ``frame_indices``: int64 ``T``, the frames decoded
    - ``pts_seconds``: float64 ``T``, their presentation times
    - ``index``: ``i``; ``url``: the redacted URL
    - ``label``: the record's label (only when the sources have labels)
    - ``transfer``: this sample's ``{"bytes_received", "bytes_requested",
      "num_requests", "num_retries"}`` (a newly opened reader includes its index reads)
    - ``error``: only with ``on_error="record"``: None, or the error message

    Args:
        sources: a list of URLs, of dicts (``url``, optional ``label``,
            ``start``, ``end`` in seconds) or :class:`VideoRecord`, or the path
            or URL of a manifest (``.csv``, ``.jsonl``, ``.parquet``).
        sampler: which frames each item gets (default ``RandomClip(8)``).
        seed: base seed; item ``i`` in epoch ``e`` uses ``SeedSequence([seed, e, i])``.
        transform: called on the ``frames`` tensor; its own randomness is its own.
        output_size: ``(height, width)``: every frame is scaled to exactly this
            size by the decoder's scaler (aspect ratio not kept); or an int: the
            short side's length, the aspect ratio kept. Done while converting,
            so full-size frames are never made.
        crop: ``(height, width)`` or an int (square): a centre crop after
            ``output_size``, inside the same scaler pass. Random crops belong
            in ``transform`` (on the already small frames): a reader, and so its
            decoder's crop window, is shared by the items of one video.
        clips_per_video: clips per item (torchcodec's ``num_clips``): the
            sampler runs this many times on the item's random stream, all
            frames are decoded in one call, and ``frames`` becomes
            ``clips x T x C x H x W`` (``frame_indices`` and ``pts_seconds``
            ``clips x T``). 1: one clip, shapes as described above.
        backend: decoder backend: ``"auto"`` or a registered backend's name.
        on_error: ``"raise"`` (default): the exception names the item and the
            redacted URL and keeps its type where possible, chained from the
            cause. ``"skip"``: the item is None (use :func:`collate_skip_none`)
            and counted. ``"record"``: the item has no frames and ``error`` set.
        storage_options: fsspec options for the URLs (credentials...).
        index_cache: a directory for the on-disk index cache, shared by workers.
        num_threads: FFmpeg threads per reader; None: 1 in DataLoader workers, else 0 (FFmpeg picks).
        max_open_readers: idle readers kept open per process (LRU, closed on
            eviction) so items of the same video reuse its index and decoder;
            keep it >= the loading threads of a process. 0: close after each item.
        max_concurrent_samples: items of one batch in flight per process
            when DataLoader fetches a batch (``__getitems__``): each downloads
            its bytes, then is decoded on a pool of one thread per core (at
            most this many), while the next items download; so the batch
            waits for the network about once. Each item in flight holds a
            reader. 1: one by one, nothing overlapped.
        reader_options: more ``VideoReader`` arguments (``track``, ``device``,
            ``source_options``...).
        url_column, label_column: the manifest columns (or dict keys) holding
            the URL and the label.
        start_column, end_column: the window's columns in seconds (default
            ``start``/``start_seconds`` and ``end``/``end_seconds``).
        extra_columns: every other column is passed through to the sample
            under its own name (True, default), only the named ones (a list), or
            none (False). A column named like a sample key (``frames``,
            ``url``...) raises ``ManifestError``: map or leave it out. Values
            are passed as they are (a column holding signed URLs returns them).
    """

    def __init__(
        self,
        sources: Any,
        sampler: FrameSampler | None = None,
        *,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        output_size: int | tuple[int, int] | None = None,
        crop: int | tuple[int, int] | None = None,
        clips_per_video: int = 1,
        backend: str = "auto",
        on_error: OnError = "raise",
        storage_options: dict | None = None,
        index_cache: str | os.PathLike | None = None,
        num_threads: int | None = None,
        max_open_readers: int = 8,
        max_concurrent_samples: int = 4,
        reader_options: dict | None = None,
        url_column: str = "url",
        label_column: str = "label",
        start_column: str | None = None,
        end_column: str | None = None,
        extra_columns: bool | Sequence[str] = True,
    ) -> None:
        super().__init__(
            sampler=sampler,
            seed=seed,
            transform=transform,
            output_size=output_size,
            backend=backend,
            on_error=on_error,
            storage_options=storage_options,
            index_cache=index_cache,
            num_threads=num_threads,
            max_open_readers=max_open_readers,
            max_concurrent_samples=max_concurrent_samples,
            reader_options=reader_options,
            crop=crop,
            clips_per_video=clips_per_video,
            url_column=url_column,
            label_column=label_column,
            start_column=start_column,
            end_column=end_column,
            extra_columns=extra_columns,
        )
        self.sources = SourceTable.from_sources(sources, storage_options=storage_options, columns=self.columns)

    def __len__(self) -> int:
        return len(self.sources)

    def record(self, index: int) -> VideoRecord:
        """The source record of item ``index``."""
        return self.sources[index]

    def _item_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"VideoFrameDataset indices are ints, got {index!r}")
        n = len(self.sources)
        if not 0 <= index < n:
            raise IndexError(f"item {index} is out of range for {n} sources")
        return int(index)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        index = self._item_index(index)
        return self.load(index, self.sources[index], has_labels=self.sources.has_labels)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any] | None]:
        """A batch's items: downloads overlapped with decoding on a pool, one thread per core.

        DataLoader calls this when batching. Up to ``max_concurrent_samples``
        items are in flight at once; each downloads all of its bytes
        (``VideoReader._fetch_frames``), then waits for a decoding thread
        (one per core, at most ``max_concurrent_samples``). Because decoding
        never runs on more threads than cores, items finish one after another
        and the next items' downloads run while others decode: a batch waits
        for the network about once, not once per item. The result is in
        ``indices`` order and identical to ``[self[i] for i in indices]``.
        """
        indices = [self._item_index(i) for i in indices]
        if self.max_concurrent_samples == 1 or len(indices) <= 1:
            return [self[i] for i in indices]
        state = self._state()
        decoders = state.decode_executor()

        def load(i: int) -> dict[str, Any] | None:
            pending = self._fetch_item(i, self.sources[i], has_labels=self.sources.has_labels)
            # Waiting here keeps at most max_concurrent_samples items (and readers) in flight.
            return decoders.submit(self._finish_item, pending).result()

        futures = [state.executor().submit(load, i) for i in indices]
        return [f.result() for f in futures]  # the first failure (in index order) raises

    def state_dict(self) -> dict[str, Any]:
        """The epoch (StatefulDataLoader saves it; the item order is the sampler's)."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"state_dict was saved with seed {state['seed']}, this dataset has seed {self.seed}")
        self.set_epoch(state["epoch"])

    def __repr__(self) -> str:
        return f"VideoFrameDataset({len(self)} sources, {self._config_repr()})"


def _shard() -> tuple[int, int]:
    """``(rank, world_size)`` from torch.distributed when it is initialised, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class VideoFrameIterableDataset(_SampleLoader, IterableDataset):
    """Frames sampled from a stream of videos: for very large or unbounded source lists.

    Items are numbered by their position ``i`` in the source stream. The
    stream is split into ``world_size * num_workers`` shards, item ``i``
    going to shard ``i % num_shards``: ranks and workers never overlap and
    together cover every item. Each item's frames depend only on
    ``(seed, epoch, i)``, as in :class:`VideoFrameDataset`, whose arguments
    and sample dicts this class shares. Skipped items are not yielded.

    Args:
        sources: a manifest path or URL (streamed, never loaded whole), a
            list of URLs/dicts/records, or any re-iterable of them (a one-shot
            generator only works with ``num_workers=0`` or fork, for one epoch).
        sampler: which frames each item gets (default ``RandomClip(8)``).
        rank, world_size: this process's shard of the stream; default from
            ``torch.distributed`` when initialised, else ``0, 1``.
        **kwargs: as for :class:`VideoFrameDataset`.
    """

    def __init__(
        self,
        sources: Any,
        sampler: FrameSampler | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        output_size: int | tuple[int, int] | None = None,
        crop: int | tuple[int, int] | None = None,
        clips_per_video: int = 1,
        backend: str = "auto",
        on_error: OnError = "raise",
        storage_options: dict | None = None,
        index_cache: str | os.PathLike | None = None,
        num_threads: int | None = None,
        max_open_readers: int = 8,
        max_concurrent_samples: int = 4,
        reader_options: dict | None = None,
        url_column: str = "url",
        label_column: str = "label",
        start_column: str | None = None,
        end_column: str | None = None,
        extra_columns: bool | Sequence[str] = True,
    ) -> None:
        super().__init__(
            sampler=sampler,
            seed=seed,
            transform=transform,
            output_size=output_size,
            backend=backend,
            on_error=on_error,
            storage_options=storage_options,
            index_cache=index_cache,
            num_threads=num_threads,
            max_open_readers=max_open_readers,
            max_concurrent_samples=max_concurrent_samples,
            reader_options=reader_options,
            crop=crop,
            clips_per_video=clips_per_video,
            url_column=url_column,
            label_column=label_column,
            start_column=start_column,
            end_column=end_column,
            extra_columns=extra_columns,
        )
        if (rank is None) != (world_size is None):
            raise ValueError(f"give both rank and world_size or neither, got rank={rank}, world_size={world_size}")
        if world_size is not None:
            _check_int("world_size", world_size, minimum=1)
            if not 0 <= _check_int("rank", rank, minimum=0) < world_size:
                raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank = rank
        self.world_size = world_size
        if is_manifest_path(sources) or isinstance(sources, (str, os.PathLike)):
            self.sources = sources  # streamed lazily
        elif isinstance(sources, Sequence):
            self.sources = SourceTable.from_sources(sources, columns=self.columns)
        else:
            self.sources = sources
        # Where to resume this shard (StatefulDataLoader): the next stream position to consider.
        self._next_position = 0

    def shard(self) -> tuple[int, int]:
        """``(shard, num_shards)`` of the calling process/worker."""
        if self.world_size is not None:
            assert self.rank is not None, "__init__ takes rank and world_size together"
            rank, world = self.rank, self.world_size
        else:
            rank, world = _shard()
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def has_labels(self) -> bool | None:
        """Whether samples carry ``label``: known for lists; None for streams (then: when the record has one)."""
        if isinstance(self.sources, SourceTable):
            return self.sources.has_labels
        return None

    def items(self) -> Iterator[tuple[int, VideoRecord]]:
        """This shard's ``(position, record)`` pairs, from the resume point on."""
        shard, num_shards = self.shard()
        start = self._next_position
        if isinstance(self.sources, SourceTable):
            first = start + (shard - start) % num_shards
            for i in range(first, len(self.sources), num_shards):
                yield i, self.sources[i]
            return
        records = iter_sources(self.sources, storage_options=self.storage_options, columns=self.columns)
        for i, record in enumerate(records):
            if i >= start and i % num_shards == shard:
                yield i, record

    def load_item(self, item: tuple[int, VideoRecord]) -> dict[str, Any] | None:
        """Load one ``(position, record)`` from :meth:`items` (the thread pipeline's map function)."""
        index, record = item
        return self.load(index, record, has_labels=self.has_labels())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        has_labels = self.has_labels()
        for index, record in self.items():
            sample = self.load(index, record, has_labels=has_labels)
            self._next_position = index + 1
            if sample is not None:
                yield sample
        self._next_position = 0  # the next epoch starts from the beginning

    def state_dict(self) -> dict[str, Any]:
        """Epoch and resume position of this shard (StatefulDataLoader keeps one per worker)."""
        return {"epoch": self.epoch, "seed": self.seed, "next_position": self._next_position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"state_dict was saved with seed {state['seed']}, this dataset has seed {self.seed}")
        self.set_epoch(state["epoch"])
        self._next_position = _check_int("next_position", state["next_position"], minimum=0)

    def __repr__(self) -> str:
        return f"VideoFrameIterableDataset({type(self.sources).__name__} sources, {self._config_repr()})"
