"""The Matroska/WebM index: packet tables equal FFmpeg's demux, frames equal a sequential decode."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from videoloader import MatroskaParseError, NotAVideoError, TrackNotFoundError, VideoReader
from videoloader.io import RangeSource
from videoloader.job._inspect import inspect_video
from videoloader.mkv import load_index

import media

CORPUS_MKV = ["mkv_h264", "webm_vp9"]
VARIANTS = sorted(media.MKV_KINDS)


@pytest.fixture(scope="module")
def mkv_files(tmp_path_factory, corpus):
    """Every Matroska/WebM file: the two corpus kinds plus ``media.MKV_KINDS``."""
    folder = tmp_path_factory.mktemp("mkv")
    files = {name: corpus[name] for name in CORPUS_MKV}
    files.update({name: media.make_kind(name, folder) for name in VARIANTS})
    return files


def _packets(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        extradata = s.codec_context.extradata
        return [(p.pts, p.size, bool(p.is_keyframe), bytes(p)) for p in c.demux(s) if p.size], extradata


@pytest.mark.parametrize("name", CORPUS_MKV + VARIANTS)
def test_index_equals_ffmpeg_demux(name, mkv_files):
    path = mkv_files[name]
    packets, extradata = _packets(path)
    with RangeSource(str(path)) as s:
        idx = load_index(s, cache=False)
    assert idx.has_byte_ranges and idx.num_samples == len(packets)
    assert idx.pts.tolist() == [p[0] for p in packets]
    assert idx.sizes.tolist() == [p[1] for p in packets]
    assert idx.is_sync.tolist() == [p[2] for p in packets]
    data = path.read_bytes()
    for (_, _, _, payload), off, n in zip(packets, idx.offsets.tolist(), idx.sizes.tolist(), strict=True):
        assert data[off : off + n] == payload
    assert bool(np.all(idx.dts <= idx.pts)) and bool(np.all(np.diff(idx.dts) > 0))
    if idx.codec == "vp9":
        assert idx.extradata is None and not extradata
    else:
        assert idx.extradata == extradata
    kind = media.KINDS.get(name) or media.MKV_KINDS[name]
    assert (idx.codec, idx.width, idx.height) == (kind.codec, kind.width, kind.height)
    want_depth = 10 if kind.pix_fmt == "yuv420p10le" else 8
    # VP9 in Matroska states its depth only in optional CodecPrivate / Colour elements.
    assert idx.bit_depth == want_depth or (idx.codec == "vp9" and idx.bit_depth is None)


@pytest.mark.parametrize("name", CORPUS_MKV + VARIANTS)
def test_frames_equal_sequential_decode(name, mkv_files):
    path = mkv_files[name]
    ref = media.decode_all_frames(path)
    n = len(ref)
    targets = [n - 1, 0, n // 2, 7, n - 2, 3]
    with VideoReader(str(path), backend="cpu") as r:
        assert r.access_path == "index"
        assert r.metadata.container == ("webm" if path.suffix == ".webm" else "matroska")
        assert r.metadata.num_frames == n
        b = r.get_frames_at(targets)
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    for row, i in enumerate(targets):
        assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1]), (name, i)
        assert b.pts_seconds[row].item() == pytest.approx(float(ref[i][0] * tb))


def test_late_frame_of_10bit_hevc(mkv_files):
    """The last frames of a 10-bit HEVC stream with B-frames decode exactly."""
    ref = media.decode_all_frames(mkv_files["mkv_hevc_10bit"])
    with VideoReader(str(mkv_files["mkv_hevc_10bit"]), backend="cpu") as r:
        for i in range(len(ref) - 4, len(ref)):
            got = r.get_frames_at([i]).data[0].permute(1, 2, 0).numpy()
            assert np.array_equal(got, ref[i][1]), i


@pytest.mark.parametrize("name", ["mkv_h264", "mkv_no_cues", "mkv_live"])
def test_http_reads_headers_not_payloads(name, mkv_files, http_server):
    # Round trips priced at 0: the complete walk steps block headers however many rounds it takes.
    path = mkv_files[name]
    url = http_server.add(path.name, path)
    ref = media.decode_all_frames(path)
    with VideoReader(url, backend="cpu", source_options={"round_trip_cost_bytes": 0}) as r:
        idx = r.index
        assert idx is not None and idx.file_size == path.stat().st_size
        before = r.transfer_stats.snapshot()
        plan = r.plan([len(ref) - 1])
        got = r.get_frames_at([len(ref) - 1]).data[0].permute(1, 2, 0).numpy()
        assert np.array_equal(got, ref[-1][1])
        # The samples' ranges, coalesced over the few block-header bytes between them.
        assert plan.nbytes <= r.transfer_stats.since(before).bytes_received <= 1.01 * plan.nbytes
        assert r.transfer_stats.bytes_received == http_server.bytes_sent
        # The index costs a fraction of the file: the head and element headers.
        assert idx.index_nbytes < 0.3 * path.stat().st_size


def test_inspect_shows_the_size_and_reads_only_the_index(mkv_files, http_server):
    path = mkv_files["webm_vp9"]
    url = http_server.add("clip.webm", path)
    info = inspect_video(url)
    assert info["access_path"] == "index" and info["metadata"]["container"] == "webm"
    assert info["file_size_bytes"] == path.stat().st_size
    # Only the index is read (this short file's one cluster is read through: see
    # test_the_complete_walk_reads_a_short_segment_through).
    assert info["transfer"]["bytes_received"] == info["index"]["index_nbytes"]


def test_track_numbers(mkv_files):
    path = mkv_files["webm_audio_first"]
    with RangeSource(str(path)) as s:
        assert load_index(s, cache=False).track_id == 2
        with pytest.raises(TrackNotFoundError, match="not video"):
            load_index(s, track=1, cache=False)
        with pytest.raises(TrackNotFoundError, match="no track"):
            load_index(s, track=5, cache=False)


def test_truncated_file_raises(mkv_files, tmp_path):
    data = mkv_files["mkv_h264"].read_bytes()
    for cut in (len(data) // 2, len(data) - 700, 40):
        bad = tmp_path / f"cut{cut}.mkv"
        bad.write_bytes(data[:cut])
        with RangeSource(str(bad)) as s:
            with pytest.raises(MatroskaParseError):
                load_index(s, cache=False)


def test_damaged_cues_cost_only_speed(mkv_files, tmp_path):
    """Cue positions that point into the middle of a cluster never change the table."""
    data = bytearray(mkv_files["mkv_h264"].read_bytes())
    with RangeSource(str(mkv_files["mkv_h264"])) as s:
        want = load_index(s, cache=False)
    at = bytes(data).rfind(b"\xf1")  # the last CueClusterPosition
    data[at + 2] ^= 0x10
    bad = tmp_path / "cues.mkv"
    bad.write_bytes(bytes(data))
    with RangeSource(str(bad)) as s:
        got = load_index(s, cache=False)
    assert got.offsets.tolist() == want.offsets.tolist() and got.pts.tolist() == want.pts.tolist()


def test_not_ebml_and_other_doctypes(tmp_path):
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(200))
    with RangeSource(str(junk)) as s:
        with pytest.raises(MatroskaParseError):
            load_index(s, cache=False)
    html = tmp_path / "page.mkv"
    html.write_bytes(b"<html>" + bytes(100))
    with RangeSource(str(html)) as s:
        with pytest.raises(NotAVideoError):
            load_index(s, cache=False)


def test_cache_keeps_containers_apart(mkv_files, corpus):
    from videoloader.mp4 import IndexCache

    cache = IndexCache()
    with VideoReader(str(mkv_files["mkv_h264"]), index_cache=cache) as r:
        first = r.index
    with VideoReader(str(mkv_files["mkv_h264"]), index_cache=cache) as r:
        assert r.index is not None and first is not None
        assert r.index.index_nbytes == 0 and r.index.offsets.tolist() == first.offsets.tolist()
        assert r.metadata.container == "matroska"


def _element(eid: bytes, payload: bytes, size_len: int = 1) -> bytes:
    return eid + ((1 << (7 * size_len)) | len(payload)).to_bytes(size_len, "big") + payload


def test_walk_reads_long_block_headers_in_a_second_step():
    """Block headers longer than the walk's first read (8-byte sizes, 8-byte track
    numbers) are read whole on a second, larger read, and every block is found."""
    from videoloader.mkv._walk import STEP_BYTES, walk_clusters

    track = 300  # written as an 8-byte vint: a 20-byte SimpleBlock header
    payloads = [bytes([i]) * (100 + i) for i in range(5)]
    blocks = b"".join(
        _element(b"\xa3", (1 << 56 | track).to_bytes(8, "big") + i.to_bytes(2, "big") + b"\x80" + p, 8)
        for i, p in enumerate(payloads)
    )
    cluster = _element(b"\x1f\x43\xb6\x75", _element(b"\xe7", b"\x07") + blocks, 8)
    data = cluster + _element(b"\xec", bytes(64))
    sizes = []

    def read(ranges):
        sizes.extend(r.stop - r.start for r in ranges)
        return [data[r.start : r.stop] for r in ranges]

    got = walk_clusters(
        url="mem", file_size=len(data), seg_start=0, seg_end=len(data), track=track, windows=[], read=read
    )
    assert [data[b.offset : b.offset + b.size] for b in got.blocks] == payloads
    assert [b.timestamp for b in got.blocks] == [7 + i for i in range(5)]
    assert min(sizes) == STEP_BYTES and max(sizes) > STEP_BYTES


# -- frames by time, from the clusters around each time ---------------------------------------------------------


def _times(ref, tb):
    """Times inside, at the start of and at the end of frames across the video, GOP boundaries included."""
    starts = [float(p * tb) for p, _ in ref]
    ends = starts[1:] + [starts[-1] + (starts[-1] - starts[-2])]
    picks = sorted({0, 1, len(ref) // 2, len(ref) - 2, len(ref) - 1, *range(11, len(ref), 13)})
    out = []
    for i in picks:
        out.append((starts[i], i))
        out.append((starts[i] + 0.4 * (ends[i] - starts[i]), i))
    return out


@pytest.fixture
def regions_only(monkeypatch):
    """Walk near every time: the complete walk never looks cheaper."""
    import math

    import videoloader._matroska_packets as mp

    monkeypatch.setattr(mp.MatroskaPackets, "_full_walk_rounds", lambda self: math.inf)


@pytest.mark.parametrize("name", CORPUS_MKV + VARIANTS)
def test_frames_by_time_equal_sequential_decode(name, mkv_files, regions_only):
    """Frames by time come from the clusters around each time: exact, with the complete table's times."""
    path = mkv_files[name]
    ref = media.decode_all_frames(path)
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    times = _times(ref, tb)
    with VideoReader(str(path), backend="cpu", index_cache=False) as r:
        b = r.get_frames_played_at([t for t, _ in times])
        lazy = not r._packets.has_table
    assert lazy  # no walk over every cluster: Cues, or a bisection without them, found each keyframe
    for row, (t, i) in enumerate(times):
        assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1]), (name, t, i)
        assert b.pts_seconds[row].item() == pytest.approx(float(ref[i][0] * tb))
    with VideoReader(str(path), backend="cpu", index_cache=False) as full:
        full.get_frames_at([0])  # the complete table, times served through frame indices
        want = full.get_frames_played_at([t for t, _ in times])
    assert b.pts_seconds.tolist() == want.pts_seconds.tolist()
    assert b.duration_seconds.tolist() == want.duration_seconds.tolist()


def test_frames_by_time_outside_the_video_raise(mkv_files):
    path = mkv_files["mkv_h264"]
    with VideoReader(str(path), backend="cpu", index_cache=False) as r:
        r.get_frames_played_at([0.0])  # a first call, before any table
        for t in (-0.5, 1e6, float("nan"), float("inf")):
            with pytest.raises(IndexError):
                r.get_frames_played_at([t])
        n = r.metadata.num_frames  # the complete table, when asked
        assert n == len(media.decode_all_frames(path))


def test_frames_by_time_over_http_walk_only_nearby_clusters(tmp_path, http_server):
    """At a time, the lazy reader reads the head, the Cues and a few clusters' headers; frame
    indices later still get the complete table."""
    path = media.make_video(tmp_path / "long.mkv", container="mkv", num_frames=300, gop=15, bframes=2)
    ref = media.decode_all_frames(path)
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    url = http_server.add("long.mkv", path)
    i = 200
    t = float(ref[i][0] * tb)
    # The header walk (round trips priced at 0; at the default price this file is read through).
    with VideoReader(url, backend="cpu", index_cache=False, source_options={"round_trip_cost_bytes": 0}) as full:
        len(full)
        walk_requests = full.transfer_stats.num_requests
    with VideoReader(url, backend="cpu", index_cache=False) as r:
        b = r.get_frames_played_at([t])
        by_time = r.transfer_stats.num_requests
        assert np.array_equal(b.data[0].permute(1, 2, 0).numpy(), ref[i][1])
        assert by_time * 10 < walk_requests, (by_time, walk_requests)
        assert len(r) == len(ref)
        assert np.array_equal(r.get_frames_at([i]).data[0].permute(1, 2, 0).numpy(), ref[i][1])


@pytest.mark.parametrize("name", ["mkv_h264", "webm_vp9", "mkv_no_cues"])
def test_the_complete_walk_reads_a_short_segment_through(name, mkv_files, http_server):
    """Where reading the Segment through costs less than its header walk's round trips (a short
    file), the complete table comes from one read of it, and equals the header walk's table."""
    path = mkv_files[name]
    ref = media.decode_all_frames(path)
    tables, requests, nbytes = [], [], []
    for price in (0, 256 * 1024):
        url = http_server.add(f"{price}-{path.name}", path)
        with VideoReader(url, backend="cpu", index_cache=False, source_options={"round_trip_cost_bytes": price}) as r:
            t = r.index
            assert t is not None and t.num_frames == len(ref)
            before = r.transfer_stats.num_requests
            got = r.get_frames_at([len(ref) // 2, len(ref) - 1])
            if price:  # the Segment read through is kept (under retain_bytes): no request for frames
                assert r.transfer_stats.num_requests == before
            for k, i in enumerate([len(ref) // 2, len(ref) - 1]):
                assert np.array_equal(got.data[k].permute(1, 2, 0).numpy(), ref[i][1])
            tables.append(t)
            requests.append(t.index_requests)
            nbytes.append(t.index_nbytes)
    walked, through = tables
    for field in ("offsets", "sizes", "pts", "dts", "durations", "is_sync"):
        assert np.array_equal(getattr(walked, field), getattr(through, field)), field
    size = path.stat().st_size
    assert nbytes[0] < 0.3 * size and nbytes[1] >= 0.9 * size  # headers only / the whole Segment
    assert requests[1] <= 4 < requests[0]


def test_the_walk_or_read_through_choice_follows_the_round_trip_price(tmp_path, http_server):
    """The same file walked header by header when a round trip is cheap, read through when dear."""
    path = media.make_video(tmp_path / "clusters.mkv", container="mkv", num_frames=300, gop=15, bframes=2)
    size = path.stat().st_size
    got = {}
    for price in (64, 64 << 20):
        url = http_server.add(f"{price}.mkv", path)
        with VideoReader(url, backend="cpu", index_cache=False, source_options={"round_trip_cost_bytes": price}) as r:
            got[price] = (r.index.index_nbytes, r.index.index_requests)
    assert got[64][0] < 0.3 * size and got[64 << 20][0] >= 0.9 * size
    assert got[64 << 20][1] < got[64][1]


def test_frames_by_time_build_the_complete_table_once_walks_cost_as_much(mkv_files):
    """Walks near each time are made until their rounds would have paid for the complete walk;
    then the complete table serves every later time. Every frame stays exact either way."""
    path = mkv_files["mkv_h264"]
    ref = media.decode_all_frames(path)
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    built_after = None
    with VideoReader(str(path), backend="cpu", index_cache=False) as r:
        for call, i in enumerate(range(0, len(ref), 3)):
            b = r.get_frames_played_at([float(ref[i][0] * tb)])
            assert np.array_equal(b.data[0].permute(1, 2, 0).numpy(), ref[i][1]), i
            if built_after is None and r._packets.has_table:
                built_after = call
    assert built_after is not None and built_after >= 1  # the first time was served by a walk near it


def _bump_cue_time(data: bytes, which: int) -> bytes:
    """The file with the CueTime of cue point ``which`` one tick later (same length)."""
    from videoloader.mkv._ebml import ID, Window, children, read_element

    at = data.rfind(b"\x1c\x53\xbb\x6b")
    w = Window(data, 0, "test")
    cues = read_element(w, at)
    points = [p for p in children(w, cues) if p.id == ID.CUE_POINT]
    time = next(e for e in children(w, points[which]) if e.id == ID.CUE_TIME)
    value = int.from_bytes(data[time.data_start : time.end], "big") + 1
    return data[: time.data_start] + value.to_bytes(time.size, "big") + data[time.end :]


def test_forged_cue_never_gives_a_wrong_frame(mkv_files, tmp_path, caplog, regions_only):
    """A cue whose time is not its keyframe's: that time is served from the complete table."""
    path = mkv_files["mkv_h264"]
    bad = tmp_path / "forged.mkv"
    bad.write_bytes(_bump_cue_time(path.read_bytes(), 1))
    ref = media.decode_all_frames(path)
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    times = _times(ref, tb)
    with caplog.at_level("WARNING", logger="videoloader"):
        with VideoReader(str(bad), backend="cpu", index_cache=False) as r:
            b = r.get_frames_played_at([t for t, _ in times])
    for row, (_t, i) in enumerate(times):
        assert np.array_equal(b.data[row].permute(1, 2, 0).numpy(), ref[i][1])
    assert any("does not point at a keyframe" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("degrees", [90, -90, -180])
def test_rotation_from_the_projection_pose_roll(corpus, tmp_path, degrees):
    """A rotated MP4 stream-copied to Matroska carries its rotation as the Projection's pose roll
    (FFmpeg writes and reads it so): the same metadata and displayed frames as the MP4, by index and by time."""
    mp4 = media.rotated_copy(corpus["h264_faststart"], tmp_path / "r.mp4", degrees)
    mkv = media.remux(mp4, tmp_path / "r.mkv")
    with VideoReader(str(mp4), backend="cpu") as a, VideoReader(str(mkv), backend="cpu", index_cache=False) as b:
        t = float(a.get_frames_at([7]).pts_seconds[0])
        by_time = b.get_frames_played_at([t])
        assert b.metadata.rotation == a.metadata.rotation == degrees
        assert (b.metadata.width, b.metadata.height) == (a.metadata.width, a.metadata.height)
        assert torch.equal(b.get_frames_at([7, 30]).data, a.get_frames_at([7, 30]).data)
        assert torch.equal(by_time.data, a.get_frames_at([7]).data)


@pytest.mark.parametrize("name", ["mkv_h264", "mkv_no_cues"])
def test_a_time_near_an_earlier_one_walks_no_more(name, mkv_files, regions_only):
    """Times the blocks already walked answer (same GOP, before where the walk stopped) cost only
    the decode's reads: no second walk, and without Cues no second bisection."""
    path = mkv_files[name]
    ref = media.decode_all_frames(path)
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    with VideoReader(str(path), backend="cpu", index_cache=False) as r:
        first = r.transfer_stats.snapshot()
        r.get_frames_played_at([float(ref[20][0] * tb)])
        walked = r.transfer_stats.since(first).num_requests
        again = r.transfer_stats.snapshot()
        b = r.get_frames_played_at([float(ref[18][0] * tb)])
        assert r.transfer_stats.since(again).num_requests < walked
        assert not r._packets.has_table
    assert np.array_equal(b.data[0].permute(1, 2, 0).numpy(), ref[18][1])
