"""videoloader.data: samplers, datasets, DataLoader / StatefulDataLoader / torchdata.nodes runs.

Every loader run goes over the loopback HTTP server (``http_server``) with
small corpus files and a little injected latency; spawn runs are slow (each
worker imports torch), so only one test spawns.
"""

from __future__ import annotations

import csv
import json
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from videoloader import SourceNotFoundError, VideoReader
from videoloader.data import (
    AllFrames,
    ManifestError,
    RandomClip,
    RandomFrames,
    SamplingError,
    SourceTable,
    UniformClip,
    VideoFrameDataset,
    VideoFrameIterableDataset,
    VideoRecord,
    collate_skip_none,
    make_node_loader,
    read_manifest,
)

SIZE = (32, 48)  # output_size (h, w): small, and different from every source size
FILES = ["h264_faststart", "h264_bframes", "vfr", "h264_moov_end", "mkv_h264"]


@pytest.fixture
def sources(corpus, http_server):
    """Eight records over five files (one via the demux fallback), labels, one window."""
    http_server.latency_seconds = 0.005
    urls = {name: http_server.add(corpus[name].name, corpus[name]) + "?token=secret" for name in FILES}
    records = [{"url": urls[name], "label": i} for i, name in enumerate(FILES)]
    records += [
        {"url": urls["h264_faststart"], "label": 5, "start": 0.5, "end": 1.5},
        {"url": urls["h264_bframes"], "label": 6},
        {"url": urls["vfr"], "label": 7, "end": 1.0},
    ]
    return records


def _dataset(sources, **kw) -> VideoFrameDataset:
    kw.setdefault("output_size", SIZE)
    return VideoFrameDataset(sources, kw.pop("sampler", RandomClip(4, stride=2)), **kw)


def _samples(batches) -> dict[int, dict]:
    """Un-batch DataLoader output into {index: sample} (frames, indices, pts, label)."""
    out = {}
    for b in batches:
        for j, index in enumerate(b["index"].tolist()):
            out[index] = {
                "frames": b["frames"][j],
                "frame_indices": b["frame_indices"][j].tolist(),
                "pts_seconds": b["pts_seconds"][j].tolist(),
                "label": int(b["label"][j]),
            }
    return out


def _same(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert sorted(a) == sorted(b)
    for i in a:
        assert a[i]["frame_indices"] == b[i]["frame_indices"], i
        assert a[i]["pts_seconds"] == b[i]["pts_seconds"], i
        assert a[i]["label"] == b[i]["label"], i
        assert torch.equal(a[i]["frames"], b[i]["frames"]), i


def _batches_equal(xs, ys) -> None:
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys, strict=False):
        assert x["index"].tolist() == y["index"].tolist()
        assert torch.equal(x["frame_indices"], y["frame_indices"])
        assert torch.equal(x["frames"], y["frames"])


# --------------------------------------------------------------------------- samplers


@dataclass
class _Meta:
    num_frames: int
    begin_stream_seconds: float
    duration_seconds: float


class _FakeVideo:
    """Constant frame rate timeline: frame i on screen in [begin + i/fps, begin + (i+1)/fps)."""

    url = "fake://video"

    def __init__(self, num_frames: int = 100, fps: float = 10.0, begin: float = 0.0) -> None:
        self.fps, self.begin = fps, begin
        self.metadata = _Meta(num_frames, begin, num_frames / fps)

    def frame_indices_played_at(self, seconds):
        starts = self.begin + np.arange(self.metadata.num_frames) / self.fps  # as the reader: searchsorted
        idx = np.searchsorted(starts, np.asarray(seconds, dtype=np.float64), side="right") - 1
        assert ((idx >= 0) & (idx < self.metadata.num_frames)).all(), seconds
        return idx.tolist()


def _rng(*key):
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def test_samplers_choose_inside_their_window():
    video = _FakeVideo(100, fps=10.0)
    for trial in range(20):
        f = RandomFrames(5)(video, _rng(0, 0, trial))
        assert len(set(f.tolist())) == 5 and (np.diff(f) > 0).all() and f.min() >= 0 and f.max() < 100
        c = RandomClip(4, stride=3)(video, _rng(0, 0, trial))
        assert (np.diff(c) == 3).all() and 0 <= c[0] and c[-1] < 100
        # offset_max_seconds: only the first 2 s = frames 0..19
        w = RandomFrames(3, offset_max_seconds=2.0)(video, _rng(1, 0, trial))
        assert w.max() < 20
        # record window [3, 5) s = frames 30..49, clip at 5 fps (every other frame)
        t = RandomClip(3, fps=5.0)(video, _rng(2, 0, trial), start_seconds=3.0, end_seconds=5.0)
        assert 30 <= t[0] and t[-1] < 50 and (np.diff(t) == 2).all(), t
    assert UniformClip(4)(video, _rng(0)).tolist() == [12, 37, 62, 87]
    assert AllFrames(step=10, start_seconds=2.0)(video, _rng(0)).tolist() == [20, 30, 40, 50, 60, 70, 80, 90]
    # end is exclusive: frame 10 starts exactly at 1.0 s
    assert AllFrames(end_seconds=1.0)(video, _rng(0)).tolist() == list(range(10))
    jittered = UniformClip(4, jitter=True)(video, _rng(3))
    assert [j // 25 for j in jittered.tolist()] == [0, 1, 2, 3]


def test_samplers_are_reproducible_and_validate():
    video = _FakeVideo(300, fps=30.0, begin=1.0)
    s = RandomClip(8, stride=2)
    assert s(video, _rng(7, 1, 3)).tolist() == s(video, _rng(7, 1, 3)).tolist()
    assert pickle.loads(pickle.dumps(s)) == s
    # short windows: repeat_last pads with the last frame, error raises
    short = _FakeVideo(3, fps=10.0)
    assert RandomFrames(5)(short, _rng(0)).tolist() == [0, 1, 2, 2, 2]
    assert RandomClip(3, stride=2)(short, _rng(0)).tolist() == [0, 2, 2]
    with pytest.raises(SamplingError, match="policy='error'"):
        RandomClip(4, policy="error")(short, _rng(0))
    with pytest.raises(SamplingError, match="holds no frame"):
        RandomFrames(1)(video, _rng(0), start_seconds=50.0)
    with pytest.raises(ValueError):
        RandomClip(0)
    with pytest.raises(ValueError, match="stride or fps"):
        RandomClip(4, stride=2, fps=5.0)
    with pytest.raises(ValueError):
        RandomFrames(2, start_seconds=3.0, end_seconds=2.0)
    with pytest.raises(TypeError):
        RandomClip(4, 2)  # arguments after the first are keyword-only


# --------------------------------------------------------------------------- the dataset


def test_sample_matches_video_reader(sources, http_server):
    ds = _dataset(sources)
    assert len(ds) == len(sources)
    http_server.reset_counts()
    transfer = 0
    for i in range(len(ds)):
        s = ds[i]
        assert s["index"] == i and s["label"] == sources[i]["label"]
        assert "token" not in s["url"] and "secret" not in repr(ds.record(i))
        assert s["frames"].dtype == torch.uint8 and tuple(s["frames"].shape) == (4, 3, *SIZE)
        assert s["transfer"]["bytes_received"] > 0 and s["transfer"]["num_requests"] >= 1
        transfer += s["transfer"]["bytes_received"]
        with VideoReader(sources[i]["url"], size=SIZE) as r:
            ref = r.get_frames_at(s["frame_indices"].tolist())
        assert torch.equal(s["frames"], ref.data)
        assert torch.equal(s["pts_seconds"], ref.pts_seconds)
    # per-sample accounting adds up to the dataset total (the reference readers are not counted)
    assert transfer == ds.transfer_stats.bytes_received
    # record windows are respected
    assert all(0.5 <= t < 1.5 for t in ds[5]["pts_seconds"].tolist())
    assert all(t < 1.0 for t in ds[7]["pts_seconds"].tolist())


def test_reader_reuse_and_lru(sources, http_server):
    ds = _dataset(sources, max_open_readers=1, index_cache=None)
    first = ds[0]
    again = ds[0]
    assert ds._state().readers.num_opened == 1  # the second sample reused the open reader
    assert again["transfer"]["bytes_received"] < first["transfer"]["bytes_received"]  # no index reads
    ds[1]  # evicts (and closes) the reader of source 0
    ds[0]
    assert ds._state().readers.num_opened == 3
    assert len(ds._state().readers) == 1
    # pickling carries configuration only, never open readers
    clone = pickle.loads(pickle.dumps(ds))
    assert "_proc" not in clone.__dict__
    assert torch.equal(clone[2]["frames"], ds[2]["frames"])
    ds.close()


def test_index_cache_dir_is_used(sources, tmp_path):
    ds = _dataset(sources[:2], index_cache=tmp_path / "index", num_threads=1)
    ds[0], ds[1]
    assert any((tmp_path / "index").rglob("*")), "VideoReader(index_cache=...) wrote nothing"


def test_epochs_and_seeds_change_samples(sources):
    ds = _dataset(sources, sampler=RandomFrames(3))
    e0 = [ds[i]["frame_indices"].tolist() for i in range(len(ds))]
    assert e0 == [ds[i]["frame_indices"].tolist() for i in range(len(ds))]
    ds.set_epoch(1)
    e1 = [ds[i]["frame_indices"].tolist() for i in range(len(ds))]
    other = _dataset(sources, sampler=RandomFrames(3), seed=1)
    s1 = [other[i]["frame_indices"].tolist() for i in range(len(ds))]
    assert e0 != e1 and e0 != s1
    with pytest.raises(ValueError):
        ds.set_epoch(-1)


def test_dataloader_workers_0_vs_2_fork(sources, http_server):
    http_server.latency_seconds = 0.02
    ds = _dataset(sources)
    ds[0]  # live readers (and their HTTP session) in the parent before forking
    g = torch.Generator().manual_seed(3)
    batches0 = list(DataLoader(ds, batch_size=3, sampler=RandomSampler(ds, generator=g), num_workers=0))
    g = torch.Generator().manual_seed(3)
    loader = DataLoader(
        ds, batch_size=3, sampler=RandomSampler(ds, generator=g), num_workers=2, multiprocessing_context="fork"
    )
    batches2 = list(loader)
    _batches_equal(batches0, batches2)
    # and the parent's own readers still work after the children used theirs
    assert torch.equal(ds[0]["frames"], _samples(batches0)[0]["frames"])
    # a new epoch draws new frames
    ds.set_epoch(1)
    epoch1 = _samples(DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork"))
    assert any(epoch1[i]["frame_indices"] != _samples(batches0)[i]["frame_indices"] for i in epoch1)


def test_dataloader_spawn_matches_in_process(sources):
    ds = _dataset(sources[:4])
    expected = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        expected.append(_samples(DataLoader(ds, batch_size=2, num_workers=0)))
    # Spawned persistent workers get the epoch in shared memory: set_epoch reaches them.
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn", persistent_workers=True)
    try:
        for epoch in range(2):
            ds.set_epoch(epoch)
            _same(expected[epoch], _samples(loader))
    finally:
        loader._iterator._shutdown_workers()


def test_stateful_dataloader_resumes_exactly(sources):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make(ds):
        g = torch.Generator().manual_seed(11)
        return StatefulDataLoader(
            ds, batch_size=2, sampler=RandomSampler(ds, generator=g), num_workers=2, multiprocessing_context="fork"
        )

    ds = _dataset(sources)
    ds.set_epoch(2)
    full = list(make(ds))
    interrupted = make(_dataset(sources))
    interrupted.dataset.set_epoch(2)
    it = iter(interrupted)
    head = [next(it), next(it)]
    state = pickle.loads(pickle.dumps(interrupted.state_dict()))  # as if saved to disk
    del it, interrupted
    fresh = make(_dataset(sources))  # epoch 0 until the state says otherwise
    fresh.load_state_dict(state)
    tail = list(fresh)
    _batches_equal(full, head + tail)


def test_distributed_sampler_ranks_are_disjoint_and_deterministic(sources):
    ds = _dataset(sources, sampler=RandomFrames(2))
    world = 4  # divides the 8 items: DistributedSampler pads (repeats items) otherwise
    shards = [list(DistributedSampler(ds, num_replicas=world, rank=r, shuffle=True, seed=5)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(len(ds)))  # disjoint and covering
    runs = [
        _samples(DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, num_replicas=world, rank=1, seed=5)))
        for _ in range(2)
    ]
    _same(runs[0], runs[1])


def test_iterable_dataset_shards_by_rank_and_worker(sources, http_server):
    reference = _dataset(sources)
    expected = {i: reference[i]["frame_indices"].tolist() for i in range(len(sources))}
    seen: dict[int, list[int]] = {}
    for rank in range(2):
        ds = VideoFrameIterableDataset(sources, RandomClip(4, stride=2), rank=rank, world_size=2, output_size=SIZE)
        got = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"))
        indices = [s["index"] for s in got]
        assert len(indices) == len(set(indices))
        assert not set(indices) & set(seen)
        seen.update({s["index"]: s["frame_indices"].tolist() for s in got})
    assert seen == expected  # covering, and the same frames as the map-style dataset


def test_iterable_dataset_streams_a_manifest_and_resumes(sources, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sources))
    ds = VideoFrameIterableDataset(str(path), UniformClip(2), output_size=SIZE)
    assert isinstance(ds.sources, str)  # streamed, not loaded
    full = [s["index"] for s in ds]
    assert full == list(range(len(sources)))
    it = iter(ds)
    next(it), next(it), next(it)
    state = ds.state_dict()
    resumed = VideoFrameIterableDataset(str(path), UniformClip(2), output_size=SIZE)
    resumed.load_state_dict(state)
    assert [s["index"] for s in resumed] == full[3:]
    assert [s["index"] for s in resumed] == full  # the next epoch starts over


def test_stateful_dataloader_resumes_an_iterable_dataset(sources):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make():
        ds = VideoFrameIterableDataset(sources, RandomClip(4, stride=2), output_size=SIZE)
        return StatefulDataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context="fork")

    full = [b["index"].item() for b in make()]
    assert sorted(full) == list(range(len(sources)))
    it = iter(interrupted := make())
    head = [next(it)["index"].item() for _ in range(3)]
    state = interrupted.state_dict()
    del it
    fresh = make()
    fresh.load_state_dict(state)
    assert head + [b["index"].item() for b in fresh] == full


def test_node_loader_threads_match_dataloader(sources, http_server):
    http_server.latency_seconds = 0.02
    ds = _dataset(sources)
    expected = list(DataLoader(ds, batch_size=3, num_workers=0))
    loader = make_node_loader(ds, batch_size=3, num_threads=4)
    _batches_equal(expected, list(loader))
    # iterable form through the same pipeline, rank 1 of 2
    its = VideoFrameIterableDataset(sources, RandomClip(4, stride=2), rank=1, world_size=2, output_size=SIZE)
    got = [s for b in make_node_loader(its, batch_size=2, num_threads=3) for s in b["index"].tolist()]
    assert got == list(range(1, len(sources), 2))


# --------------------------------------------------------------------------- errors


@pytest.fixture
def broken_sources(sources, http_server):
    missing = http_server.url("missing.mp4") + "?sig=hush"
    html = http_server.add_html("login.mp4")
    return [sources[0], {"url": missing, "label": 1}, sources[1], {"url": html, "label": 3}]


def test_on_error_raise_names_item_and_redacted_url(broken_sources):
    ds = _dataset(broken_sources)
    with pytest.raises(SourceNotFoundError) as info:  # the type survives (a 404 is a FileNotFoundError)
        ds[1]
    msg = str(info.value)
    assert "sample 1" in msg and "missing.mp4" in msg and "hush" not in msg
    assert info.value.__cause__ is not None
    # Re-raised from a worker process with the same type and message.
    it = iter(DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork"))
    try:
        with pytest.raises(FileNotFoundError, match="sample 1 .*missing.mp4"):
            list(it)
    finally:
        # Shut the workers down now: left to the garbage collector (the exception's traceback
        # holds the iterator) DataLoader waits 5 s per worker to join them.
        it._shutdown_workers()


def test_on_error_skip_drops_and_counts(broken_sources):
    ds = _dataset(broken_sources, on_error="skip")
    assert ds[1] is None
    batches = list(DataLoader(ds, batch_size=2, num_workers=0, collate_fn=collate_skip_none))
    assert [b["index"].tolist() for b in batches] == [[0], [2]]
    assert [b["num_skipped"] for b in batches] == [1, 1]
    assert ds.num_skipped == 3 and ds.num_errors == 3
    assert collate_skip_none([None, None]) is None


def test_on_error_record_keeps_the_message(broken_sources):
    ds = _dataset(broken_sources, on_error="record")
    out = list(DataLoader(ds, batch_size=None, num_workers=0))
    assert [s["error"] is None for s in out] == [True, False, True, False]
    assert "SourceNotFoundError" in out[1]["error"] and "hush" not in out[1]["error"]
    assert tuple(out[1]["frames"].shape) == (0, 3, *SIZE) and out[1]["label"] == 1
    assert out[3]["error"]  # the HTML page is not a video


def test_one_off_faults_are_retried_not_substituted(sources, http_server):
    ds = _dataset(sources[:3], num_threads=1)
    clean = [ds[i] for i in range(3)]
    ds.close()
    for fault in ("503", "drop_mid_body", "503"):
        http_server.faults.append(fault)
    again = _dataset(sources[:3], num_threads=1)
    faulty = [again[i] for i in range(3)]
    assert sum(s["transfer"]["num_retries"] for s in faulty) >= 3
    for a, b in zip(clean, faulty, strict=False):
        assert torch.equal(a["frames"], b["frames"])


def test_sampling_error_is_a_sample_error(sources):
    ds = _dataset([{"url": sources[0]["url"], "start": 100.0}], on_error="record")
    assert "SamplingError" in ds[0]["error"]
    with pytest.raises(SamplingError, match="sample 0"):
        _dataset([{"url": sources[0]["url"], "start": 100.0}])[0]


# --------------------------------------------------------------------------- manifests


def test_manifests_csv_jsonl_parquet(sources, tmp_path):
    expected = [
        VideoRecord(r["url"], label=r["label"], start_seconds=r.get("start"), end_seconds=r.get("end")) for r in sources
    ]
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["url", "label", "start", "end", "extra"])
        w.writeheader()
        for r in sources:
            w.writerow({**r, "extra": "ignored"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sources))
    paths = [tmp_path / "m.csv", tmp_path / "m.jsonl"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {k: [r.get(k) for r in sources] for k in ("url", "label", "start", "end")}
        pq.write_table(pa.table(cols), tmp_path / "m.parquet")
        paths.append(tmp_path / "m.parquet")
    except ImportError:
        pass
    for path in paths:
        table = read_manifest(path)
        assert list(table) == expected, path
        ds = _dataset(str(path))
        assert len(ds) == len(sources) and ds[5]["label"] == 5
    assert list(SourceTable.from_sources(sources)) == expected
    (tmp_path / "bad.csv").write_text("path,label\nx.mp4,1\n")
    with pytest.raises(ManifestError, match="'url'"):
        read_manifest(tmp_path / "bad.csv")
    with pytest.raises(ManifestError, match="record 1"):
        SourceTable.from_sources([{"url": "a.mp4"}, {"label": 3}])


def test_dataset_validates_its_arguments(sources):
    with pytest.raises(ValueError, match="on_error"):
        _dataset(sources, on_error="ignore")
    with pytest.raises(ValueError, match="output_size"):
        _dataset(sources, output_size=(32,))
    with pytest.raises(TypeError, match="sampler"):
        VideoFrameDataset(sources, sampler=lambda v, r: [0])
    with pytest.raises(IndexError):
        _dataset(sources)[len(sources)]


def test_public_names_and_missing_torchdata(monkeypatch, sources):
    import videoloader
    import videoloader.data as data

    assert data.__all__ == sorted(data.__all__)
    assert set(data.__all__) == {
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
    }
    for name in ("VideoFrameDataset", "RandomFrames", "RandomClip", "UniformClip", "AllFrames"):
        assert getattr(videoloader, name) is getattr(data, name)
    monkeypatch.setitem(__import__("sys").modules, "torchdata.nodes", None)
    with pytest.raises(videoloader.MissingDependencyError, match=r"pip install 'videoloader\[data\]'"):
        make_node_loader(_dataset(sources))
