"""VideoReader: frame-exact random access against a sequential PyAV decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoloader import (
    ContainerError,
    CorruptVideoError,
    FrameBatch,
    NotAVideoError,
    RangeRequestError,
    SourceNotFoundError,
    VideoReader,
)

import media

ALL_KINDS = sorted(media.KINDS)
# Matroska and WebM go through our own index too; FFmpeg demuxes the rest (MPEG-TS).
DEMUX_KINDS = {name for name, k in media.KINDS.items() if k.container not in ("mp4", "mkv", "webm")}


@pytest.fixture(scope="session")
def reference(corpus):
    """Sequential PyAV decode of each corpus file, computed once per session."""
    cache: dict[str, list[tuple[int, np.ndarray]]] = {}

    def get(name: str) -> list[tuple[int, np.ndarray]]:
        if name not in cache:
            cache[name] = media.decode_all_frames(corpus[name])
        return cache[name]

    return get


def _targets(n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [0, n - 1] + rng.integers(0, n, size=16).tolist()


def _check_exact(reader: VideoReader, ref: list[tuple[int, np.ndarray]], targets: list[int]) -> None:
    assert reader.metadata.num_frames == len(ref)
    batch = reader.get_frames_at(targets)
    assert isinstance(batch, FrameBatch)
    assert batch.data.dtype == torch.uint8 and batch.data.shape[0] == len(targets)
    for row, i in enumerate(targets):
        got = batch.data[row].permute(1, 2, 0).numpy()
        want = ref[i][1]
        assert got.shape == want.shape, (i, got.shape, want.shape)
        assert np.array_equal(got, want), f"frame {i} differs (max abs diff {np.abs(got.astype(int) - want).max()})"


@pytest.mark.parametrize("name", ALL_KINDS)
def test_frames_equal_sequential_decode_local(name, corpus, reference):
    ref = reference(name)
    with VideoReader(str(corpus[name]), backend="cpu") as r:
        assert r.access_path == ("demux" if name in DEMUX_KINDS else "index")
        _check_exact(r, ref, _targets(len(ref), seed=len(name)))


@pytest.mark.parametrize("name", ALL_KINDS)
def test_frames_equal_sequential_decode_http(name, corpus, reference, http_server):
    ref = reference(name)
    url = http_server.add(corpus[name].name, corpus[name])
    http_server.reset_counts()
    with VideoReader(url, backend="cpu") as r:
        _check_exact(r, ref, _targets(len(ref), seed=7))
        # Every byte the server sent is in the reader's records, and no more.
        assert r.transfer_stats.bytes_received == http_server.bytes_sent


@pytest.mark.parametrize("name", ["h264_bframes", "vfr", "h264_editlist", "mkv_h264"])
def test_played_at_agrees_with_pts_intervals(name, corpus):
    with VideoReader(str(corpus[name])) as r:
        n = r.metadata.num_frames
        targets = _targets(n, seed=3)
        b = r.get_frames_at(targets)
        starts = b.pts_seconds.numpy()
        ends = starts + b.duration_seconds.numpy()
        assert np.all(b.duration_seconds.numpy() > 0)
        for t in (starts, (starts + ends) / 2, ends - 1e-6):
            idx = r.frame_indices_played_at(t.tolist())
            assert idx == targets
        played = r.get_frames_played_at(((starts + ends) / 2).tolist())
        assert torch.equal(played.data, b.data)
        with pytest.raises(IndexError):
            r.get_frames_played_at([float(ends.max()) + 10.0])
        with pytest.raises(IndexError):
            r.get_frames_played_at([r.metadata.begin_stream_seconds - 1.0])


def test_pts_seconds_match_reference(corpus, reference):
    ref = reference("vfr")
    with VideoReader(str(corpus["vfr"])) as r:
        b = r.get_frames_in_range(0, r.metadata.num_frames)
    import av

    with av.open(str(corpus["vfr"])) as c:
        tb = c.streams.video[0].time_base
    assert np.allclose(b.pts_seconds.numpy(), [float(p * tb) for p, _ in ref])
    # Irregular durations: the muxer's 20..70 ms cycle survives.
    assert len(np.unique(np.round(b.duration_seconds.numpy(), 3))) > 3


def test_order_duplicates_layout_and_bounds(corpus, reference):
    ref = reference("h264_bframes")
    with VideoReader(str(corpus["h264_bframes"]), dimension_order="NHWC") as r:
        b = r.get_frames_at([3, 50, 17, 3])
        assert b.data.shape[1:] == (120, 160, 3)
        for row, i in enumerate([3, 50, 17, 3]):
            assert np.array_equal(b.data[row].numpy(), ref[i][1])
        assert r.get_frames_at([]).data.shape == (0, 120, 160, 3)
        with pytest.raises(IndexError):
            r.get_frames_at([r.metadata.num_frames])
        with pytest.raises(IndexError):
            r.get_frames_at([-1])
        r_range = r.get_frames_in_range(start=0, stop=40, step=10)
        assert torch.equal(r_range.data, r.get_frames_at([0, 10, 20, 30]).data)


def test_scaling_happens_in_ffmpeg_scaler(corpus):
    import av

    with av.open(str(corpus["h264_faststart"])) as c:
        frames = list(c.decode(video=0))
    want = frames[20].to_ndarray(format="rgb24", width=80, height=64, interpolation="BILINEAR")
    with VideoReader(str(corpus["h264_faststart"]), size=(64, 80)) as r:
        got = r.get_frames_at([20]).data[0].permute(1, 2, 0).numpy()
    assert np.array_equal(got, want)


def test_metadata(corpus):
    with VideoReader(str(corpus["hevc_10bit"])) as r:
        m = r.metadata
        assert (m.codec, m.width, m.height, m.num_frames) == ("hevc", 160, 120, 36)
        assert m.fps == pytest.approx(30.0, rel=1e-3)
        assert m.duration_seconds == pytest.approx(36 / 30, rel=1e-3)
        r.get_frames_at([5])
        assert r.metadata.pixel_format == "yuv420p10le"
    with VideoReader(str(corpus["webm_vp9"])) as r:
        assert r.metadata.access_path == "index" and r.metadata.container == "webm"


def test_plan_reads_only_the_gop_prefix(corpus, http_server):
    url = http_server.add("gop.mp4", corpus["h264_faststart"])
    with VideoReader(url) as r:
        index = r.index
        before = r.transfer_stats.snapshot()
        # frame 20 is in the GOP starting at frame 15 (I/P only): samples 15..20.
        plan = r.plan([20])
        assert [(g.first_sample, g.last_sample) for g in plan.groups] == [(15, 20)]
        assert plan.nbytes == int(index.sizes[15:21].sum())
        r.get_frames_at([20])
        delta = r.transfer_stats.since(before)
        assert delta.bytes_received == plan.nbytes


def test_bad_inputs_surface_as_clear_errors(tmp_path, http_server):
    with pytest.raises(SourceNotFoundError) as e:
        VideoReader(http_server.url("missing.mp4") + "?token=SECRET")
    assert "missing.mp4" in str(e.value) and "SECRET" not in str(e.value)
    page = tmp_path / "page.mp4"
    page.write_bytes(b"<!doctype html><html><body>" + b"x" * 5000 + b"</body></html>")
    with pytest.raises(NotAVideoError):
        VideoReader(str(page))
    with pytest.raises(ContainerError):
        VideoReader(http_server.add("page.mp4", page))


def test_truncated_file(corpus, tmp_path):
    data = corpus["h264_moov_end"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 200])  # the moov at the end is cut
    with pytest.raises(ContainerError):
        VideoReader(str(cut))


@pytest.mark.parametrize("name", ["h264_faststart", "hevc_8bit", "vp9_mp4", "av1"])
@pytest.mark.parametrize("damage", ["zeros", "noise", "bad_nal_length"])
def test_corrupt_packet_mid_gop_raises(name, damage, corpus, tmp_path):
    """A damaged sample in the middle of a GOP gives CorruptVideoError for the
    frames that depend on it, never a concealed wrong frame, and never a hang."""
    path = corpus[name]
    with VideoReader(str(path)) as r:
        s = int(r.index.frame_to_sample[5])
        off, size = int(r.index.offsets[s]), int(r.index.sizes[s])
        assert not r.index.is_sync[s]
    data = bytearray(path.read_bytes())
    if damage == "zeros":
        data[off + 4 : off + size] = bytes(size - 4)
    elif damage == "noise":
        data[off + 8 : off + size] = np.random.default_rng(0).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    else:
        data[off : off + 4] = (10**6).to_bytes(4, "big")
    bad = tmp_path / f"bad_{name}.mp4"
    bad.write_bytes(bytes(data))
    with VideoReader(str(bad)) as r:
        with pytest.raises(CorruptVideoError) as e:
            r.get_frames_at([5, 8])
        assert bad.name in str(e.value)
        # Frames of an undamaged GOP still decode exactly.
        good = r.get_frames_at([r.metadata.num_frames - 1])
        assert good.data.shape[0] == 1


def test_open_close_many_readers_leaks_nothing(corpus, http_server):
    import gc
    import threading

    import psutil

    proc = psutil.Process()
    url = http_server.add("leak.mp4", corpus["h264_faststart"])

    def cycle(n: int) -> None:
        for i in range(n):
            with VideoReader(url if i % 2 else str(corpus["h264_faststart"])) as r:
                r.get_frames_at([i % 60])

    cycle(50)  # warm up: lazily created pools, loops, caches
    gc.collect()
    fds, threads, rss = proc.num_fds(), threading.active_count(), proc.memory_info().rss
    cycle(1000)
    gc.collect()
    assert proc.num_fds() <= fds + 2
    assert threading.active_count() <= threads
    assert len([c for c in proc.net_connections() if c.status == psutil.CONN_ESTABLISHED]) <= 2
    assert proc.memory_info().rss - rss < 60 * 2**20


@pytest.mark.parametrize("name", sorted(DEMUX_KINDS))
def test_demux_played_at_seeks_without_the_packet_table(name, corpus, reference):
    import av

    ref = reference(name)
    with av.open(str(corpus[name])) as c:
        tb = float(c.streams.video[0].time_base)
    pts = [p * tb for p, _ in ref]
    picks = [0, len(ref) // 3, len(ref) - 1, 7]
    times = [(pts[i] + pts[i + 1]) / 2 if i + 1 < len(ref) else pts[i] + 1e-4 for i in picks]
    with VideoReader(str(corpus[name])) as r:
        b = r.get_frames_played_at(times)
        assert r._metadata is None  # served by seeking: the packet table was not read
        for row, i in enumerate(picks):
            assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1]), (name, i)
            assert b.pts_seconds[row].item() == pytest.approx(pts[i])
        with pytest.raises(IndexError):
            r.get_frames_played_at([pts[0] - 1.0])
        with pytest.raises(IndexError):
            r.get_frames_played_at([pts[-1] + 10.0])
        # Once the table is read, both paths agree.
        assert torch.equal(r.get_frames_at(picks).data, b.data)


def test_time_access_reads_a_fraction_of_a_long_mkv(tmp_path, http_server):
    path = media.make_video(
        tmp_path / "long.mkv",
        codec="h264",
        width=320,
        height=240,
        num_frames=600,
        gop=30,
        container="mkv",
    )
    url = http_server.add("long.mkv", path)
    with VideoReader(url) as r:
        r.get_frames_played_at([12.5])
        assert r.access_path == "index"  # our Matroska index: element headers, then one GOP
        assert r.transfer_stats.bytes_received < 0.3 * path.stat().st_size


def test_accepts_open_fsspec_files_and_other_protocols(corpus, reference):
    import fsspec

    ref = reference("h264_bframes")
    data = corpus["h264_bframes"].read_bytes()
    fs = fsspec.filesystem("memory")
    fs.pipe("/vl/clip.mp4", data)
    with VideoReader("memory://vl/clip.mp4") as r:
        assert np.array_equal(r.get_frames_at([33]).data[0].permute(1, 2, 0).numpy(), ref[33][1])
    with fsspec.open(f"file://{corpus['h264_bframes']}", "rb") as f:
        with VideoReader(f) as r:
            assert r.access_path == "index"
            assert np.array_equal(r.get_frames_at([47]).data[0].permute(1, 2, 0).numpy(), ref[47][1])


def test_storage_options_reach_the_filesystem(corpus, http_server):
    url = http_server.add("opts.mp4", corpus["h264_faststart"])
    with VideoReader(url, storage_options={"headers": {"X-Test": "token-1"}}) as r:
        r.get_frames_at([1])
    sent = [h for _, path, h in http_server.request_headers if path == "/opts.mp4"]
    assert sent and all(h.get("x-test") == "token-1" for h in sent)


def test_unwanted_non_reference_pictures_are_skipped_not_guessed(corpus, reference):
    """H.264 pictures with nal_ref_idc == 0 that nobody asked for are left out
    of the decoder; the frames asked for stay exact."""
    from videoloader.codecs import h264_is_disposable, parse_avcc

    ref = reference("h264_bframes")
    with VideoReader(str(corpus["h264_bframes"])) as r:
        index = r.index
        data = corpus["h264_bframes"].read_bytes()
        nal_len = parse_avcc(index.extradata).nal_length_size
        disposable = [
            h264_is_disposable(data[o : o + n], nal_len)
            for o, n in zip(index.offsets.tolist(), index.sizes.tolist(), strict=False)
        ]
        assert any(disposable) and not any(d and k for d, k in zip(disposable, index.is_sync, strict=False))
        targets = [19, 38, 57]
        b = r.get_frames_at(targets)
        assert r.last_decode_nbytes < r.plan(targets).nbytes
        for row, i in enumerate(targets):
            assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1])
        # A wanted non-reference picture is decoded, of course.
        wanted_nonref = [int(index.sample_to_frame[s]) for s, d in enumerate(disposable) if d][:3]
        b = r.get_frames_at(wanted_nonref)
        for row, i in enumerate(wanted_nonref):
            assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1])


def test_hevc_non_reference_pictures_are_skipped_too(corpus, reference):
    ref = reference("hevc_8bit")
    with VideoReader(str(corpus["hevc_8bit"])) as r:
        targets = [10, 20, 30, 47]
        b = r.get_frames_at(targets)
        assert r.last_decode_nbytes < r.plan(targets).nbytes
        for row, i in enumerate(targets):
            assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1])


def test_reader_inherited_across_fork_is_dropped_without_hanging(corpus):
    """Freeing an FFmpeg frame-threaded decoder in a forked child waits forever
    on threads that only exist in the parent; the reader must not do that."""
    import gc
    import os
    import signal
    import time

    r = VideoReader(str(corpus["h264_bframes"]))
    r.get_frames_at([5, 40])  # the decoder now has FFmpeg worker threads
    pid = os.fork()
    if pid == 0:  # child: drop the inherited reader, then leave at once
        try:
            del r
            gc.collect()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung while freeing the inherited reader")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    r.close()


def test_open_over_http_is_one_request_without_head(corpus, http_server):
    url = http_server.add("one.mp4", corpus["h264_faststart"])
    http_server.reset_counts()
    with VideoReader(url, index_cache=False) as r:
        assert r.transfer_stats.num_requests == 1  # the first read also gave size and ETag
        r.get_frames_at([3])
    methods = [m for m, path, *_ in http_server.requests if path == "/one.mp4"]
    assert "HEAD" not in methods and methods[0] == "GET"


def test_open_retries_a_transient_fault_and_refuses_ignored_range(corpus, http_server, tmp_path):
    url = http_server.add("retry.mp4", corpus["h264_faststart"])
    http_server.faults.append("503")
    with VideoReader(url, index_cache=False) as r:
        assert [rec.status for rec in r.transfer_stats.records[:2]] == [503, 206]
        r.get_frames_at([0])
    big = tmp_path / "big.mp4"
    big.write_bytes(corpus["h264_faststart"].read_bytes() * 40)  # > the loopback socket buffers
    url = http_server.add("norange.mp4", big, honour_range=False)
    http_server.reset_counts()
    with pytest.raises(RangeRequestError):
        VideoReader(url, index_cache=False)
    assert http_server.bytes_sent_for("norange.mp4") < big.stat().st_size
