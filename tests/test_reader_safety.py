"""A reader is safe to hold: threads, fork, pickling, and no silent wrong result."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import threading
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from videoloader import CorruptVideoError, NotAVideoError, TrackNotFoundError, VideoLoaderError, VideoReader

import media

INDEX_KIND, DEMUX_KIND = "h264_bframes", "ts_h264"


@pytest.fixture(scope="module")
def ref(corpus):
    cache: dict[str, list[np.ndarray]] = {}

    def get(name: str) -> list[np.ndarray]:
        if name not in cache:
            cache[name] = [rgb for _, rgb in media.decode_all_frames(corpus[name])]
        return cache[name]

    return get


def _hwc(batch_data: torch.Tensor, row: int = 0) -> np.ndarray:
    return batch_data[row].permute(1, 2, 0).numpy()


# -- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [INDEX_KIND, DEMUX_KIND])
def test_one_reader_shared_by_four_threads_returns_exact_frames(name, corpus, ref):
    frames = ref(name)
    errors: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    with VideoReader(str(corpus[name]), backend="cpu") as r:
        n = r.metadata.num_frames

        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(25):
                    i = int(rng.integers(0, n))
                    got = _hwc(r.get_frames_at([i]).data)
                    if not np.array_equal(got, frames[i]):
                        wrong.append((seed, i))
            except BaseException as e:  # collected, asserted below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[:3]
    assert not wrong, wrong[:5]


# -- fork and pickle -------------------------------------------------------------------------


class _ReaderDataset(torch.utils.data.Dataset):
    """The pattern many users write: a reader opened in ``__init__``."""

    def __init__(self, path: str) -> None:
        self.reader = VideoReader(path, backend="cpu")
        self.reader.get_frames_at([0, 5])  # the parent's decoder has run (and has threads)

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.reader.get_frames_at([i * 7]).data[0].contiguous()


@pytest.mark.parametrize("name", [INDEX_KIND, DEMUX_KIND])
def test_reader_opened_before_fork_works_in_dataloader_workers(name, corpus, ref):
    frames = ref(name)
    ds = _ReaderDataset(str(corpus[name]))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60)
    got = list(loader)
    assert len(got) == 6
    for i, t in enumerate(got):
        assert np.array_equal(t.permute(1, 2, 0).numpy(), frames[i * 7]), i
    # The parent's reader still works after its children used their copies.
    assert np.array_equal(_hwc(ds.reader.get_frames_at([3]).data), frames[3])
    ds.reader.close()


def test_pickle_round_trip_over_http_carries_the_index(corpus, ref, http_server):
    frames = ref(INDEX_KIND)
    url = http_server.add("v.mp4", corpus[INDEX_KIND]) + "?token=SECRET"
    with VideoReader(url, backend="cpu") as r:
        r.get_frames_at([1])
        blob = pickle.dumps(r)
        with pickle.loads(blob) as r2:
            assert r2.url == r.url and "SECRET" not in r2.url
            assert r2.metadata == r.metadata
            targets = [0, 17, 42]
            batch = r2.get_frames_at(targets)
            for row, i in enumerate(targets):
                assert np.array_equal(_hwc(batch.data, row), frames[i])
            # The index came with the reader: only sample bytes were fetched.
            planned = sum(rng.nbytes for g in r2.plan(targets).groups for rng in g.ranges)
            assert r2.transfer_stats.bytes_received == planned


def _decode_in_child(reader: VideoReader, indices: list[int], queue) -> None:
    try:
        batch = reader.get_frames_at(indices)
        queue.put([_hwc(batch.data, k).copy() for k in range(len(indices))])
    except BaseException as e:  # reported to the parent
        queue.put(repr(e))


def test_pickled_reader_works_in_a_spawned_process(corpus, ref):
    frames = ref(INDEX_KIND)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with VideoReader(str(corpus[INDEX_KIND]), backend="cpu") as r:
        proc = ctx.Process(target=_decode_in_child, args=(r, [2, 33], queue))
        proc.start()
        try:
            got = queue.get(timeout=120)
        finally:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert not isinstance(got, str), got
    assert np.array_equal(got[0], frames[2]) and np.array_equal(got[1], frames[33])


# -- no silent wrong result ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3.0, 2.7, np.float32(3), True])
def test_non_integer_indices_raise_type_error(corpus, bad):
    with VideoReader(str(corpus["h264_faststart"]), backend="cpu") as r:
        with pytest.raises(TypeError):
            r.get_frames_at([bad])
        with pytest.raises(TypeError):
            r.get_frame_at(bad)


def test_scalar_to_get_frames_at_raises_with_a_hint(corpus):
    with VideoReader(str(corpus["h264_faststart"]), backend="cpu") as r:
        with pytest.raises(TypeError, match="get_frame_at"):
            r.get_frames_at(3)
        with pytest.raises(TypeError):
            r.get_frames_at(np.int64(3))


def test_float_arrays_and_tensors_raise_integer_ones_work(corpus, ref):
    frames = ref("h264_faststart")
    with VideoReader(str(corpus["h264_faststart"]), backend="cpu") as r:
        with pytest.raises(TypeError):
            r.get_frames_at(np.array([1.0, 2.0]))
        with pytest.raises(TypeError):
            r.get_frames_at(torch.tensor([1.5]))
        for indices in (np.array([4, 9], dtype=np.int32), torch.tensor([4, 9]), [np.int64(4), torch.tensor(9)]):
            batch = r.get_frames_at(indices)
            assert np.array_equal(_hwc(batch.data, 0), frames[4]) and np.array_equal(_hwc(batch.data, 1), frames[9])
        assert np.array_equal(_hwc(r.get_frame_at(np.int64(9)).data), frames[9])


@pytest.mark.parametrize(
    "name, track",
    [
        ("h264_faststart", 7),  # no such track
        ("audio_first", 1),  # track 1 is AAC audio
        ("mkv_h264", 9),  # Matroska index: no such TrackNumber
        ("ts_h264", 9),  # demux path: no such stream
    ],
)
def test_missing_or_non_video_track_raises(corpus, name, track):
    with pytest.raises(TrackNotFoundError) as info:
        VideoReader(str(corpus[name]), backend="cpu", track=track)
    assert str(corpus[name]) in str(info.value)


def test_existing_video_track_is_honoured(corpus, ref):
    with VideoReader(str(corpus["audio_first"]), backend="cpu", track=2) as r:
        assert r.metadata.num_frames == len(ref("audio_first"))


def _still_image(path, codec: str, pix_fmt: str) -> None:
    frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24").reformat(format=pix_fmt)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 48, pix_fmt, Fraction(1, 25)
    path.write_bytes(b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None)))


@pytest.mark.parametrize("codec, pix_fmt, suffix", [("png", "rgb24", ".png"), ("mjpeg", "yuvj420p", ".jpg")])
def test_still_image_is_not_a_video(tmp_path, codec, pix_fmt, suffix):
    path = tmp_path / f"picture{suffix}"
    _still_image(path, codec, pix_fmt)
    with pytest.raises(NotAVideoError, match="still image"):
        VideoReader(str(path), backend="cpu")


def test_errors_after_open_name_the_url(corpus, tmp_path):
    # A sample the decoder cannot use, found only when decoding: the error names the file.
    data = bytearray(corpus["h264_faststart"].read_bytes())
    with VideoReader(str(corpus["h264_faststart"]), backend="cpu") as r:
        s = int(r.index.frame_to_sample[20])
        off, size = int(r.index.offsets[s]), int(r.index.sizes[s])
    data[off : off + size] = b"\xff" * size
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    with VideoReader(str(path), backend="cpu") as r:
        with pytest.raises(VideoLoaderError) as info:
            r.get_frames_at(list(range(15, 30)))
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def avi_h264(tmp_path_factory):
    """H.264 in AVI: a container only FFmpeg's demuxer reads (the demux path)."""
    path = tmp_path_factory.mktemp("avi") / "h264.avi"
    media.make_video(path, codec="h264", container="avi", num_frames=40, gop=15, width=64, height=48, threads=1)
    return path


@pytest.mark.parametrize(
    "name, damage",
    [
        # "tail": FFmpeg's H.264 decoder conceals the damage and flags the frame.
        # On the demux path such frames were returned before it shared the
        # backend's corrupt-frame rule; now both paths raise.
        ("avi_h264", "tail"),
        ("avi_h264", "zeros"),
        ("mkv_h264", "tail"),
        ("mkv_h264", "zeros"),
        ("webm_vp9", "noise"),
    ],
)
def test_damaged_packet_raises_on_the_demux_and_index_paths(name, damage, corpus, avi_h264, tmp_path):
    """One decode path, one corrupt-frame rule: a damaged packet mid-GOP raises
    CorruptVideoError on FFmpeg-demuxed (AVI) and indexed (MKV, WebM) input alike."""
    path = avi_h264 if name == "avi_h264" else corpus[name]
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as c:
        packets = [bytes(p) for p in c.demux(video=0) if p.size]
    payload = packets[5]  # a packet mid-GOP (keyframes at 0, 15, 30... / 0, 20, 40)
    off = bytes(data).find(payload)
    assert off > 0 and bytes(data).find(payload, off + 1) == -1
    size = len(payload)
    if damage == "zeros":
        data[off + 4 : off + size] = bytes(size - 4)
    elif damage == "noise":
        data[off + 8 : off + size] = np.random.default_rng(0).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    else:
        data[off + size - 8 : off + size] = bytes(8)
    bad = tmp_path / f"bad_{name}{path.suffix}"
    bad.write_bytes(bytes(data))
    with VideoReader(str(bad), backend="cpu") as r:
        assert r.access_path == ("demux" if name == "avi_h264" else "index")
        with pytest.raises(CorruptVideoError) as e:
            r.get_frames_at(list(range(4, 12)))
        assert bad.name in str(e.value)
        assert r.get_frames_at([r.metadata.num_frames - 1]).data.shape[0] == 1
