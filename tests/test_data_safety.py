"""videoloader.data under hostile input: errors in the one tree, never a secret, epochs in persistent workers.

URLs carry a signed-URL token (``X-Amz-Signature=SECRET``) and user-info
(``user:pass-7f3@``); neither may reach a message, a cause/context chain, a
log record or a sample. DataLoader runs fork (spawn is covered in test_data).
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videoloader import SourceNotFoundError, VideoLoaderError
from videoloader._errors import ManifestError, SampleError, SamplingError
from videoloader.data import RandomClip, RandomFrames, VideoFrameDataset, VideoFrameIterableDataset, read_manifest
from videoloader.data._epoch import SharedEpoch

SECRETS = ("SECRET", "pass-7f3")
SIZE = (24, 32)


def _signed(url: str) -> str:
    """``url`` with user-info and a signed-URL query string."""
    return url.replace("://", "://user:pass-7f3@", 1) + "?X-Amz-Signature=SECRET&X-Amz-Credential=k"


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def _assert_chain_clean(e: BaseException) -> None:
    """No message anywhere on the exception's cause/context chain holds a secret."""
    seen = set()
    node: BaseException | None = e
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        _assert_clean(f"{type(node).__name__}: {node}")
        _assert_clean(repr(node))
        node = node.__cause__ or node.__context__


# --------------------------------------------------------------------------- manifests


def test_manifest_errors_name_the_redacted_url(http_server, tmp_path):
    no_url_column = http_server.add("m.csv", b"path,label\nx.mp4,1\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(_signed(no_url_column))
    assert "'url' column" in str(info.value) and "127.0.0.1" in str(info.value) and "m.csv" in str(info.value)
    _assert_chain_clean(info.value)

    # A missing manifest over HTTP: our 404 type, the URL redacted, no raw error on the chain.
    with pytest.raises(SourceNotFoundError) as info:
        read_manifest(_signed(http_server.url("gone.jsonl")))
    assert "gone.jsonl" in str(info.value)
    _assert_chain_clean(info.value)
    with pytest.raises(SourceNotFoundError):
        read_manifest(tmp_path / "missing.csv")

    # Bad rows: the row's own (signed) URL and the manifest are named, redacted.
    video = _signed(http_server.url("v.mp4"))
    rows = [{"url": video, "start": 2.0, "end": 1.0}]
    bad_window = http_server.add("w.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    with pytest.raises(ManifestError) as info:
        read_manifest(_signed(bad_window))
    assert "v.mp4" in str(info.value) and "w.jsonl" in str(info.value) and "record 0" in str(info.value)
    _assert_chain_clean(info.value)

    # A line that is not JSON (and quotes a secret) is reported without quoting it.
    not_json = http_server.add("n.jsonl", f'{{"url": "{video}"}}\n{{"url": "{video}", oops}}\n'.encode())
    with pytest.raises(ManifestError, match="line 2 is not JSON") as info:
        read_manifest(_signed(not_json))
    _assert_chain_clean(info.value)

    # Bytes that are not text / not Parquet: ManifestError, not a codec or pyarrow error.
    garbage = http_server.add("g.csv", b"url\n\xff\xfe\x00garbage\n")
    with pytest.raises(ManifestError, match="not a readable manifest") as info:
        read_manifest(_signed(garbage))
    _assert_chain_clean(info.value)
    pytest.importorskip("pyarrow")
    fake_parquet = http_server.add("p.parquet", b"PAR1 this is not parquet PAR1")
    with pytest.raises(ManifestError) as info:
        read_manifest(_signed(fake_parquet))
    _assert_chain_clean(info.value)


def test_record_errors_never_quote_secrets():
    with pytest.raises(ManifestError) as info:
        VideoFrameDataset([{"url": _signed("https://cdn.example.com/a.mp4"), "start": 3, "end": 1}])
    assert "cdn.example.com/a.mp4" in str(info.value)
    _assert_chain_clean(info.value)
    with pytest.raises(ManifestError, match="record 1") as info:
        VideoFrameDataset([{"url": "a.mp4"}, {"url": _signed("https://h/b.mp4"), "start": "soon"}])
    _assert_chain_clean(info.value)


# --------------------------------------------------------------------------- samplers


@dataclass
class _Meta:
    num_frames: int
    begin_stream_seconds: float
    duration_seconds: float


class _Video:
    """A stand-in reader whose ``url`` is raw (samplers must redact it) and whose frames may stop early."""

    def __init__(self, num_frames: int, *, fps: float = 10.0, duration: float | None = None) -> None:
        self.url = _signed("https://cdn.example.com/clip.mp4")
        self.fps = fps
        self.metadata = _Meta(num_frames, 0.0, num_frames / fps if duration is None else duration)

    def frame_indices_played_at(self, seconds):
        out = []
        for t in np.asarray(seconds, dtype=np.float64).reshape(-1).tolist():
            i = int(np.floor(t * self.fps))
            if not 0 <= i < self.metadata.num_frames:  # as the reader: a time no frame covers
                raise IndexError(f"{self.url}: time {t} s is outside the video")
            out.append(i)
        return out


@pytest.mark.parametrize(
    "sampler, video, match",
    [
        (RandomFrames(2), _Video(0), "holds no frame"),  # a video with zero frames
        (RandomClip(8, policy="error"), _Video(5), "does not fit"),  # shorter than a clip
        (RandomFrames(3, policy="error"), _Video(2), "does not fit"),
        (RandomClip(2, fps=5.0), _Video(10, duration=5.0), "no frame is on screen"),  # metadata past the frames
        (RandomFrames(1), _Video(10, duration=float("nan")), "not finite"),
    ],
)
def test_sampler_failures_are_sampling_errors_naming_the_redacted_url(sampler, video, match):
    rng = np.random.default_rng(0)
    with pytest.raises(SamplingError, match=match) as info:
        sampler(video, rng, start_seconds=3.0 if "on screen" in match else None)
    assert isinstance(info.value, VideoLoaderError)
    assert "cdn.example.com/clip.mp4" in str(info.value)
    _assert_chain_clean(info.value)


# --------------------------------------------------------------------------- the dataset


@pytest.fixture
def videos(corpus, http_server):
    """Four signed URLs over two files (index path and demux fallback)."""
    urls = [_signed(http_server.add(corpus[n].name, corpus[n])) for n in ("h264_faststart", "mkv_h264")]
    return [{"url": urls[i % 2], "label": i} for i in range(4)]


def test_sample_failures_hold_no_secret(http_server, videos, caplog):
    missing = {"url": _signed(http_server.url("missing.mp4")), "label": 9}
    short = {"url": videos[0]["url"], "label": 8, "start": 1000.0}  # window past the end
    ds = VideoFrameDataset([missing, short], RandomFrames(2), output_size=SIZE)
    with pytest.raises(SourceNotFoundError) as info:
        ds[0]
    assert "sample 0" in str(info.value) and "missing.mp4" in str(info.value)
    _assert_chain_clean(info.value)
    with pytest.raises(SamplingError, match="sample 1") as info:
        ds[1]
    _assert_chain_clean(info.value)

    caplog.set_level(logging.DEBUG)
    recorded = VideoFrameDataset([missing, short], RandomFrames(2), output_size=SIZE, on_error="record")
    out = [recorded[0], recorded[1]]
    assert all(s["error"] for s in out)
    _assert_clean(json.dumps([{k: v for k, v in s.items() if k in ("url", "error")} for s in out]))
    _assert_clean(caplog.text)


def test_a_foreign_exception_becomes_a_sample_error(videos):
    # An argument the reader rejects surfaces as a TypeError inside the item: it is re-raised
    # in the one tree, as SampleError, with the original as its cause.
    ds = VideoFrameDataset(videos[:1], RandomFrames(1), reader_options={"no_such_option": 1})
    with pytest.raises(SampleError, match="sample 0 .*TypeError") as info:
        ds[0]
    assert isinstance(info.value.__cause__, TypeError)
    _assert_chain_clean(info.value)


# --------------------------------------------------------------------------- epochs


def _by_index(batches) -> dict[int, tuple[list[int], torch.Tensor]]:
    out = {}
    for b in batches:
        for j, i in enumerate(b["index"].tolist()):
            out[i] = (b["frame_indices"][j].tolist(), b["frames"][j])
    return out


def _same(a, b) -> None:
    assert sorted(a) == sorted(b)
    for i in a:
        assert a[i][0] == b[i][0], i
        assert torch.equal(a[i][1], b[i][1]), i


def test_set_epoch_reaches_persistent_workers(videos):
    sampler = RandomFrames(3)
    reference = VideoFrameDataset(videos, sampler, seed=5, output_size=SIZE)
    expected = []
    for epoch in range(2):
        reference.set_epoch(epoch)
        expected.append(_by_index(DataLoader(reference, batch_size=2, num_workers=0)))
    assert any(expected[0][i][0] != expected[1][i][0] for i in expected[0])  # epochs draw different frames

    ds = VideoFrameDataset(videos, sampler, seed=5, output_size=SIZE)
    loader = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True, multiprocessing_context="fork")
    try:
        got = []
        workers = None
        for epoch in range(2):
            ds.set_epoch(epoch)
            got.append(_by_index(loader))
            pids = [w.pid for w in loader._iterator._workers]
            assert workers in (None, pids)  # the same worker processes served both epochs
            workers = pids
    finally:
        loader._iterator._shutdown_workers()
    for epoch in range(2):
        _same(expected[epoch], got[epoch])


def test_set_epoch_reaches_persistent_workers_of_an_iterable_dataset(videos):
    def make():
        return VideoFrameIterableDataset(videos, RandomFrames(3), seed=2, output_size=SIZE)

    expected = []
    reference = make()
    for epoch in range(2):
        reference.set_epoch(epoch)
        expected.append({s["index"]: s["frame_indices"].tolist() for s in reference})
    ds = make()
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True, multiprocessing_context="fork")
    try:
        for epoch in range(2):
            ds.set_epoch(epoch)
            assert {s["index"]: s["frame_indices"].tolist() for s in loader} == expected[epoch]
    finally:
        loader._iterator._shutdown_workers()
    assert expected[0] != expected[1]


def test_shared_epoch_copies_are_independent():
    epoch = SharedEpoch(3)
    assert epoch.is_shared and epoch.get() == 3
    clone = pickle.loads(pickle.dumps(epoch))  # not starting a process: a number, then own memory
    deep = copy.deepcopy(epoch)
    epoch.set(7)
    assert (clone.get(), deep.get(), epoch.get()) == (3, 3, 7)
    clone.set(1)
    assert epoch.get() == 7 and clone.is_shared
    ds = VideoFrameDataset(["a.mp4"], RandomFrames(1))
    ds.set_epoch(4)
    copied = pickle.loads(pickle.dumps(ds))
    assert copied.epoch == 4 and copied.state_dict()["epoch"] == 4
    copied.set_epoch(5)
    assert ds.epoch == 4
