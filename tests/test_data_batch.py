"""The batch path: every item's bytes fetched first, then decoded on a pool.

``VideoFrameDataset.__getitems__`` (what DataLoader calls per batch) splits
loading into a download phase (``VideoReader._fetch_frames``) and a decode
phase (``VideoReader._decode_fetched``). These tests check that the split is
exact (the same frames as the per-item path and as ``get_frames_at``), that
decoding after the download makes no request, and that errors keep their policy.
"""

from __future__ import annotations

import platform
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from videoloader import SourceNotFoundError, VideoReader
from videoloader._index_packets import PIPELINE_BATCH_BYTES
from videoloader.data import RandomClip, VideoFrameDataset
from videoloader.data._heap import trim_heap

FILES = ["h264_faststart", "h264_bframes", "h264_open_gop", "vfr", "frag_sidx", "mkv_h264", "ts_h264"]


@pytest.fixture
def urls(corpus, http_server):
    http_server.latency_seconds = 0.002
    return {name: http_server.add(corpus[name].name, corpus[name]) + "?token=secret" for name in FILES}


def _equal(a: dict | None, b: dict | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif key != "transfer":  # a reader reused or not changes what one item's requests count
            assert a[key] == b[key], key


def test_batch_matches_items_frame_exactly(urls):
    """Index path, fragmented MP4 and the demux fallback (ts) alike; several items per video."""
    sources = [{"url": urls[n], "label": k} for k, n in enumerate(FILES)] * 2
    kw = {"output_size": (32, 48), "seed": 3, "max_concurrent_samples": 3}
    batched = VideoFrameDataset(sources, RandomClip(4, stride=2), **kw)
    single = VideoFrameDataset(sources, RandomClip(4, stride=2), **kw)
    indices = [5, 0, 13, 7, 2, 9, 11, 1, 6, 12, 3, 10, 4, 8]
    got = batched.__getitems__(indices)
    assert [s["index"] for s in got] == indices
    for i, sample in zip(indices, got, strict=True):
        _equal(sample, single[i])
    assert batched.transfer_stats.as_dict()["num_requests"] > 0
    batched.close()
    single.close()


def test_dataloader_num_workers_0_uses_the_batch_path(urls):
    sources = [urls["h264_faststart"], urls["h264_bframes"]] * 4
    ds = VideoFrameDataset(sources, RandomClip(3), output_size=(32, 48), seed=1)
    ref = VideoFrameDataset(sources, RandomClip(3), output_size=(32, 48), seed=1)
    for batch in DataLoader(ds, batch_size=4, num_workers=0):
        for j, i in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["frames"][j], ref[i]["frames"])
    ds.close()
    ref.close()


@pytest.mark.parametrize("kind", ["h264_bframes", "mkv_h264"])
def test_decoding_fetched_frames_makes_no_request(kind, urls):
    """All of a plan's bytes arrive in the fetch phase; the decode phase only decodes. A Matroska
    reader (lazy open, complete table on first use by index) takes the same split."""
    with VideoReader(urls[kind], size=(32, 48)) as reader, VideoReader(urls[kind]) as other:
        frames = [40, 3, 17, 17, 59]
        fetched = reader._fetch_frames(frames)
        assert fetched.blobs is not None
        before = reader.transfer_stats.snapshot()
        batch = reader._decode_fetched(fetched)
        assert reader.transfer_stats.since(before).as_dict()["num_requests"] == 0
        assert torch.equal(batch.data, reader.get_frames_at(frames).data)
        assert batch.pts_seconds.tolist() == reader.get_frames_at(frames).pts_seconds.tolist()
        with pytest.raises(ValueError, match="another reader"):
            other._decode_fetched(fetched)
        assert reader._decode_fetched(reader._fetch_frames([])).data.shape[0] == 0
        with pytest.raises(IndexError):
            reader._fetch_frames([10_000])


def test_demux_and_large_plans_fetch_while_decoding(urls, monkeypatch):
    """Where nothing is fetched beforehand (demux path, plans above the pipeline's
    batch size, which bounds memory) the decode fetches as get_frames_at does."""
    with VideoReader(urls["ts_h264"]) as reader:
        fetched = reader._fetch_frames([1, 20])
        assert fetched.blobs is None
        assert torch.equal(reader._decode_fetched(fetched).data, reader.get_frames_at([1, 20]).data)
    with VideoReader(urls["h264_faststart"]) as reader:
        plan_bytes = reader.plan([0, 40]).nbytes
        assert plan_bytes <= PIPELINE_BATCH_BYTES
        monkeypatch.setattr("videoloader._reader.PIPELINE_BATCH_BYTES", plan_bytes - 1)
        fetched = reader._fetch_frames([0, 40])
        assert fetched.blobs is None
        assert torch.equal(reader._decode_fetched(fetched).data, reader.get_frames_at([0, 40]).data)


@pytest.mark.parametrize("on_error", ["raise", "skip", "record"])
def test_batch_errors_keep_their_policy(urls, http_server, on_error):
    missing = http_server.url("missing.mp4") + "?token=secret"
    sources = [urls["h264_faststart"], missing, urls["h264_bframes"], missing]
    ds = VideoFrameDataset(sources, RandomClip(2), output_size=(32, 48), on_error=on_error)
    if on_error == "raise":
        with pytest.raises(SourceNotFoundError, match="sample 1") as info:
            ds.__getitems__([0, 1, 2, 3])
        assert "secret" not in str(info.value)
    else:
        got = ds.__getitems__([0, 1, 2, 3])
        if on_error == "skip":
            assert got[1] is None and got[3] is None
        else:
            assert got[1]["error"] is not None and "secret" not in got[1]["error"]
            assert got[1]["frames"].shape[0] == 0
        assert got[0]["frames"].shape[0] == 2 and got[2]["frames"].shape[0] == 2
        assert ds.num_errors == 2
    # The healthy readers went back to the pool, the failed ones were closed.
    assert ds.__getitems__([0, 2])[1]["frames"].shape[0] == 2
    ds.close()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's"
)
def test_trim_heap_calls_glibc():
    """On glibc the loaders' periodic trim is available (its RSS effect is measured by
    benchmarks/loader_throughput.py, not here: it depends on the allocator's state)."""
    assert trim_heap() is True
    assert trim_heap() is True  # repeatable, nothing else changes
