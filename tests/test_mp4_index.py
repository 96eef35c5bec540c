"""mp4/ index: packet-for-packet equality with PyAV's demuxer, read counts,
broken input built byte by byte, and the index cache."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest

from videoloader._errors import (
    ContainerError,
    MP4ParseError,
    NotAVideoError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from videoloader._packets import first_shared_time
from videoloader.io import RangeSource
from videoloader.mp4 import IndexCache, SampleIndex, load_index

import media

MP4_KINDS = sorted(n for n, k in media.KINDS.items() if k.container == "mp4")
OTHER_KINDS = sorted(n for n, k in media.KINDS.items() if k.container != "mp4")


# --------------------------------------------------------------------------- helpers


def _source(path, **kw) -> RangeSource:
    # No coalescing: each range is one request, so read counts are exact.
    return RangeSource(str(path), coalesce_gap_bytes=0, **kw)


def _load(path, **kw) -> tuple[SampleIndex, RangeSource]:
    src = _source(path)
    return load_index(src, cache=False, **kw), src


def pyav_packets(path) -> list[tuple]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(p.pos, p.size, p.pts, p.dts, p.is_keyframe, p.is_discard) for p in c.demux(s) if p.size]


def pyav_frame_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def our_packets(index: SampleIndex) -> list[tuple]:
    return list(
        zip(
            index.offsets.tolist(),
            index.sizes.tolist(),
            index.pts.tolist(),
            index.dts.tolist(),
            index.is_sync.tolist(),
            index.is_discard.tolist(),
            strict=False,
        )
    )


def assert_matches_pyav(path, index: SampleIndex) -> None:
    ref = pyav_packets(path)
    ours = our_packets(index)
    if ref != ours:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(ref, ours, strict=False)) if a != b][:5]
        pytest.fail(
            f"{path}: {len(ref)} PyAV packets vs {len(ours)} indexed; first differences "
            f"(i, pyav (pos,size,pts,dts,key,discard), ours): {diff}"
        )
    assert index.frame_pts().tolist() == pyav_frame_pts(path)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert index.extradata == s.codec_context.extradata
        assert index.timescale == s.time_base.denominator and s.time_base.numerator == 1
        assert index.track_id == s.id


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("name", MP4_KINDS)
def test_index_equals_pyav_demux(name, corpus):
    path = corpus[name]
    index, src = _load(path)
    assert_matches_pyav(path, index)
    assert index.codec == media.KINDS[name].codec
    assert index.num_frames == media.KINDS[name].decoded_frames or media.KINDS[name].decoded_frames is None
    assert index.fragmented == media.KINDS[name].fragmented
    # index cost recorded from the source's stats and far below the file size
    assert index.index_nbytes == src.stats.bytes_received > 0
    assert index.index_requests == src.stats.num_requests <= 8
    assert index.index_nbytes <= max(64 * 1024 + 8 * 1024 * 4, 0)


def test_codec_details(corpus):
    assert load_index(_source(corpus["hevc_10bit"]), cache=False).bit_depth == 10
    assert load_index(_source(corpus["hevc_8bit"]), cache=False).bit_depth == 8
    av1 = load_index(_source(corpus["av1"]), cache=False)
    assert (av1.codec, av1.sample_entry, av1.bit_depth) == ("av1", "av01", 8)
    vp9 = load_index(_source(corpus["vp9_mp4"]), cache=False)
    assert (vp9.codec, vp9.extradata) == ("vp9", None)
    h264 = load_index(_source(corpus["h264_faststart"]), cache=False)
    assert (h264.width, h264.height, h264.sample_entry) == (160, 120, "avc1")


def test_audio_first_picks_video_track(corpus):
    path = corpus["audio_first"]
    with av.open(str(path)) as c:
        assert c.streams[0].type == "audio"
        video_id = c.streams.video[0].id
        audio_id = c.streams.audio[0].id
    index, _ = _load(path)
    assert index.track_id == video_id
    index2, _ = _load(path, track=video_id)
    assert np.array_equal(index2.offsets, index.offsets)
    # A wrong track raises (never UnsupportedFormatError, which would send the
    # reader to the demux fallback and its first video stream) and lists the video tracks.
    for bad, match in ((audio_id, "not video"), (999, "no track")):
        with pytest.raises(ContainerError, match=match) as info:
            _load(path, track=bad)
        assert not isinstance(info.value, UnsupportedFormatError)
        assert f"video tracks are [{video_id}]" in str(info.value)


@pytest.mark.parametrize("name", OTHER_KINDS)
def test_other_containers_are_not_mp4(name, corpus):
    with pytest.raises(NotAVideoError, match=r"not an ISO-BMFF"):
        _load(corpus[name])


def test_http_source(corpus, request):
    try:
        server = request.getfixturevalue("http_server")
    except pytest.FixtureLookupError:
        pytest.skip("http_server fixture not available yet")
    for name in ("h264_moov_end", "frag_sidx", "frag_mfra", "h264_editlist"):
        url = server.add(f"{name}.mp4", corpus[name])
        src = RangeSource(url)
        index = load_index(src, cache=False)
        assert_matches_pyav(corpus[name], index)
        assert index.index_nbytes == src.stats.bytes_received
        assert index.index_nbytes < corpus[name].stat().st_size


# --------------------------------------------------------------------------- edit lists


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _children(data: bytes, start: int, stop: int) -> list[tuple[bytes, int, int]]:
    out, pos = [], start
    while pos + 8 <= stop:
        size, kind = struct.unpack_from(">I4s", data, pos)
        size = size or stop - pos
        out.append((kind, pos, pos + size))
        pos += size
    return out


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _rebuild(data: bytes, start: int, stop: int, edit) -> bytes:
    """Serialise boxes in [start, stop), letting ``edit(kind, path, body) -> bytes | None`` rewrite."""
    out = b""
    for kind, a, b in _children(data, start, stop):
        if kind in _CONTAINERS:
            body = _rebuild(data, a + 8, b, edit)
        else:
            body = data[a + 8 : b]
        new = edit(kind, body)
        if new is not None:
            kind, body = new
        if kind is not None:
            out += _box(kind, body)
    return out


def with_edit_list(src: Path, dst: Path, edits: list[tuple[int, int]] | None, *, version: int = 0) -> Path:
    """Copy a moov-at-end MP4, replacing the video track's edit list.

    ``edits`` are (segment_duration in movie ticks, media_time in media ticks);
    None removes the edit list. The moov is last, so no chunk offset moves.
    """
    data = src.read_bytes()
    top = _children(data, 0, len(data))
    assert top[-1][0] == b"moov", "needs a moov-at-end file"
    _, m0, m1 = top[-1]

    def elst_body() -> bytes:
        body = struct.pack(">BxxxI", version, len(edits))
        for duration, media_time in edits:
            if version == 1:
                body += struct.pack(">Qqhh", duration, media_time, 1, 0)
            else:
                body += struct.pack(">Iihh", duration, media_time, 1, 0)
        return body

    def edit(kind, body):
        if kind == b"trak" and b"vide" in body:
            parts = _children(body, 0, len(body))
            out = b""
            for k, a, b in parts:
                if k == b"edts":
                    continue
                out += body[a:b]
                if k == b"tkhd" and edits is not None:
                    out += _box(b"edts", _box(b"elst", elst_body()))
            return kind, out
        return None

    moov = _box(b"moov", _rebuild(data, m0 + 8, m1, edit))
    dst.write_bytes(data[:m0] + moov)
    return dst


@pytest.fixture(scope="module")
def bframe_moov_end(tmp_path_factory) -> Path:
    """H.264 with B-frames, GOP 12, moov at the end; 1/15360 media timescale."""
    path = tmp_path_factory.mktemp("edits") / "bframes_end.mp4"
    return media.make_video(path, num_frames=48, gop=12, bframes=2, fps=30, width=64, height=48, noise=8)


def _timescales(path) -> tuple[int, int, int]:
    """(movie timescale, media timescale, frame duration in media ticks)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pk = [p for p in c.demux(s) if p.size]
        frame = int(np.median(np.diff(sorted(p.pts for p in pk))))
    data = Path(path).read_bytes()
    at = data.find(b"mvhd")
    version = data[at + 4]
    movie_ts = struct.unpack_from(">I", data, at + 8 + (16 if version == 1 else 8))[0]
    return movie_ts, s.time_base.denominator, frame


EDIT_CASES = {
    # name: function(movie_ts, media_ts, frame, first_pts) -> edits
    "none": None,
    "identity": lambda m, t, f, p: [(48 * f * m // t, p)],
    "mid_gop_start": lambda m, t, f, p: [(30 * f * m // t, p + 7 * f)],
    "between_frames": lambda m, t, f, p: [(30 * f * m // t, p + 7 * f + f // 3)],
    "short_tail": lambda m, t, f, p: [(17 * f * m // t, p + 3 * f)],
    "empty_then_edit": lambda m, t, f, p: [(5 * f * m // t, -1), (40 * f * m // t, p + 2 * f)],
    "two_segments": lambda m, t, f, p: [(10 * f * m // t, p + 4 * f), (10 * f * m // t, p + 20 * f)],
    "repeat_segment": lambda m, t, f, p: [(8 * f * m // t, p), (8 * f * m // t, p)],
    "zero_media_time": lambda m, t, f, p: [(48 * f * m // t, 0)],
}


@pytest.mark.parametrize("case", sorted(EDIT_CASES))
@pytest.mark.parametrize("version", [0, 1])
def test_edit_lists_match_ffmpeg(case, version, bframe_moov_end, tmp_path):
    movie_ts, media_ts, frame = _timescales(bframe_moov_end)
    first_pts = 2 * frame  # two B-frames of delay: FFmpeg's own edit starts there
    make = EDIT_CASES[case]
    edits = None if make is None else make(movie_ts, media_ts, frame, first_pts)
    path = with_edit_list(bframe_moov_end, tmp_path / f"{case}.mp4", edits, version=version)
    index, _ = _load(path)
    assert_matches_pyav(path, index)
    if case == "mid_gop_start":
        # samples before the edit are kept (decodable) but never shown
        assert index.is_discard[: index.frame_to_sample[0]].any()
        assert index.frame_pts()[0] == 0


# --------------------------------------------------------------------------- fragments and read counts


def _strip_mfra(path: Path) -> None:
    data = path.read_bytes()
    boxes = _children(data, 0, len(data))
    path.write_bytes(b"".join(data[a:b] for k, a, b in boxes if k != b"mfra"))


@pytest.fixture(scope="module")
def many_fragments(tmp_path_factory) -> dict[str, Path]:
    """Fragmented files with 40 fragments: sidx, mfra, and neither."""
    d = tmp_path_factory.mktemp("frag")
    base = "frag_keyframe+empty_moov+default_base_moof"
    common = dict(num_frames=400, gop=10, fps=25, width=160, height=120, noise=24, bframes=2, preset="ultrafast")
    out = {
        "sidx": media.make_video(d / "sidx.mp4", movflags=base + "+global_sidx", **common),
        "mfra": media.make_video(d / "mfra.mp4", movflags=base, **common),
        "walk": media.make_video(d / "walk.mp4", movflags=base, **common),
    }
    _strip_mfra(out["sidx"])
    _strip_mfra(out["walk"])
    return out


def _fragment_count(path: Path) -> int:
    data = path.read_bytes()
    return sum(1 for k, a, b in _children(data, 0, len(data)) if k == b"moof")


def _moof_ranges(path: Path) -> set[int]:
    data = path.read_bytes()
    return {a for k, a, b in _children(data, 0, len(data)) if k == b"moof"}


def _mdat_bytes_read(path: Path, records) -> tuple[int, int]:
    """(mdat payload bytes read outside the first 64 KiB read, mdat payload bytes in the file)."""
    data = path.read_bytes()
    read = total = 0
    for k, a, b in _children(data, 0, len(data)):
        if k == b"mdat":
            total += b - a - 8
            for r in records:
                if r.start != 0:
                    read += max(0, min(r.stop, b) - max(r.start, a + 8))
    return read, total


@pytest.mark.parametrize("kind", ["sidx", "mfra", "walk"])
def test_fragmented_index_equals_pyav(kind, many_fragments):
    path = many_fragments[kind]
    # round_trip_cost_bytes=0: one chain, no resync lanes (those: test_mp4_resync.py).
    src = _source(path, round_trip_cost_bytes=0)
    index = load_index(src, cache=False)
    assert index.fragmented
    assert_matches_pyav(path, index)
    n = _fragment_count(path)
    assert n >= 30
    records = src.stats.records
    moofs = _moof_ranges(path)
    table_reads = [r for r in records if r.start != 0 and r.start not in moofs]
    if kind == "sidx":
        # The sidx sits right after the moov, inside the first read.
        assert len(table_reads) <= 1
    elif kind == "mfra":
        size = path.stat().st_size
        tail = [r for r in table_reads if r.stop == size]
        assert len(tail) == 2 and tail[0].stop - tail[0].start == 16  # mfro, then mfra
        assert len(table_reads) == 2
    else:
        # one mfro probe; every moof read once, sequentially
        assert len(table_reads) == 1
    # every moof read once (twice at most: header, then exact bytes)
    assert len(records) <= 1 + len(table_reads) + 2 * n
    read, total = _mdat_bytes_read(path, records)
    assert read <= total // 200  # blind reads may touch a few bytes past a short moof
    assert index.index_nbytes < path.stat().st_size / 4


def _pad_moov_at_end(data: bytes, pad: int) -> bytes:
    """The file with a ``free`` box of ``pad`` bytes appended inside its moov (last
    top-level box): a moov larger than one probe read, samples unmoved."""
    moov = [b for b in media.iter_boxes(data) if b.type == "moov"][-1]
    assert moov.stop == len(data) and moov.header_size == 8
    free = struct.pack(">I4s", pad, b"free") + bytes(pad - 8)
    return data[: moov.start] + struct.pack(">I4s", moov.size + pad, b"moov") + data[moov.payload_start :] + free


def test_a_moov_at_the_end_arrives_with_the_probe_when_the_rest_costs_less_than_a_round_trip(corpus, tmp_path):
    path = _write(tmp_path, "moov_end_big.mp4", _pad_moov_at_end(corpus["h264_moov_end"].read_bytes(), 100_000))
    priced, src = _load(path)  # default round_trip_cost_bytes (256 KiB) > what is left after one probe
    assert_matches_pyav(path, priced)
    # Head, then one read from the mdat's end to the end of the file.
    assert src.stats.num_requests == 2
    unpriced_src = _source(path, round_trip_cost_bytes=0)
    unpriced = load_index(unpriced_src, cache=False)
    # Head, the probe at the mdat's end, then the rest of the moov.
    assert unpriced_src.stats.num_requests == 3
    assert np.array_equal(priced.offsets, unpriced.offsets) and np.array_equal(priced.pts, unpriced.pts)
    assert src.stats.bytes_received == unpriced_src.stats.bytes_received


def test_the_mfra_arrives_with_the_mfro_read(tmp_path):
    # 20 fragments: a 16 KiB head holds the empty moov and the first moof, then the tail.
    path = media.make_video(
        tmp_path / "frag_mfra_long.mp4",
        codec="h264",
        width=160,
        height=96,
        num_frames=600,
        fps=30,
        gop=30,
        bframes=0,
        movflags="frag_keyframe+empty_moov+default_base_moof",
    )
    assert media.top_level_boxes(path.read_bytes())[-1] == "mfra"
    priced, src = _load(path)
    unpriced_src = _source(path, round_trip_cost_bytes=0)
    unpriced = load_index(unpriced_src, cache=False)
    assert_matches_pyav(path, priced)
    assert np.array_equal(priced.offsets, unpriced.offsets) and np.array_equal(priced.pts, unpriced.pts)
    # One tail read instead of two (the mfro, then the mfra it points to); the moofs as before.
    assert src.stats.num_requests == unpriced_src.stats.num_requests - 1
    assert src.stats.bytes_received - unpriced_src.stats.bytes_received <= path.stat().st_size // 1024


# --------------------------------------------------------------------------- broken input


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _expect(tmp_path, name, data, error, match=None):
    path = _write(tmp_path, name, data)
    t0 = time.perf_counter()
    src = _source(path)
    with pytest.raises(error, match=match) as info:
        load_index(src, cache=False)
    assert time.perf_counter() - t0 < 2.0
    assert str(path.name) in str(info.value)  # message names the source
    assert src.stats.num_requests <= 4
    return info.value


def _moov_span(data: bytes) -> tuple[int, int]:
    for k, a, b in _children(data, 0, len(data)):
        if k == b"moov":
            return a, b
    raise AssertionError("no moov")


def test_html_page(tmp_path):
    page = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n"
    _expect(tmp_path, "page.mp4", page, NotAVideoError, "HTML")
    _expect(tmp_path, "json.mp4", b'{"error": "denied"}', NotAVideoError)
    _expect(tmp_path, "empty.mp4", b"", NotAVideoError)


@pytest.mark.parametrize("where", ["ftyp", "moov_header", "moov_middle", "mdat_start", "mdat_middle"])
def test_truncated_faststart(where, corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    m0, m1 = _moov_span(data)
    cut = {
        "ftyp": 12,
        "moov_header": m0 + 4 + 8,
        "moov_middle": (m0 + m1) // 2,
        "mdat_start": m1 + 4,
        "mdat_middle": (m1 + len(data)) // 2,
    }[where]
    _expect(tmp_path, f"cut_{where}.mp4", data[:cut], TruncatedFileError, "truncated|past the end|ends at")


@pytest.mark.parametrize("where", ["mdat_middle", "moov_middle"])
def test_truncated_moov_at_end(where, corpus, tmp_path):
    data = corpus["h264_moov_end"].read_bytes()
    m0, m1 = _moov_span(data)
    cut = {"mdat_middle": m0 // 2, "moov_middle": (m0 + m1) // 2}[where]
    _expect(tmp_path, f"end_{where}.mp4", data[:cut], TruncatedFileError)


def _patch_box_field(data: bytes, fourcc: bytes, offset_in_box: int, value: bytes) -> bytes:
    at = data.find(fourcc) - 4
    assert at >= 0
    pos = at + offset_in_box
    return data[:pos] + value + data[pos + len(value) :]


def test_box_size_past_eof(corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    bad = _patch_box_field(data, b"stbl", 0, struct.pack(">I", 0x7FFFFFF0))
    _expect(tmp_path, "stbl_huge.mp4", bad, TruncatedFileError, "past the end")


def test_absurd_stsz_count(corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    # stsz body: version/flags(4) sample_size(4) sample_count(4)
    bad = _patch_box_field(data, b"stsz", 16, struct.pack(">I", 0xFFFFFFF0))
    err = _expect(tmp_path, "stsz_count.mp4", bad, MP4ParseError, "stsz")
    assert not isinstance(err, TruncatedFileError)
    # constant sample size with an absurd count: refused before allocating
    bad2 = _patch_box_field(data, b"stsz", 12, struct.pack(">II", 1000, 0xFFFFFFF0))
    _expect(tmp_path, "stsz_const.mp4", bad2, MP4ParseError, "stsz")


def test_absurd_stts_and_stsc(corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    bad = _patch_box_field(data, b"stts", 12, struct.pack(">I", 0x10000000))
    _expect(tmp_path, "stts.mp4", bad, MP4ParseError, "stts")
    bad = _patch_box_field(data, b"stsc", 12, struct.pack(">I", 0x10000000))
    _expect(tmp_path, "stsc.mp4", bad, MP4ParseError, "stsc")


@pytest.mark.parametrize("size", [0, 4])
def test_zero_and_tiny_size_child_box(size, corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    bad = _patch_box_field(data, b"stts", 0, struct.pack(">I", size))
    # size 0 swallows the rest of stbl (tables then disagree); size 4 cannot hold a header
    _expect(tmp_path, f"size{size}.mp4", bad, MP4ParseError)


def test_top_level_zero_size_mdat_is_valid(corpus, tmp_path):
    # A last box of size 0 extends to the end of the file (ISO 14496-12 4.2).
    data = corpus["h264_faststart"].read_bytes()
    at = data.find(b"mdat", _moov_span(data)[1]) - 4
    path = _write(tmp_path, "mdat0.mp4", data[:at] + struct.pack(">I", 0) + data[at + 4 :])
    index, _ = _load(path)
    assert_matches_pyav(corpus["h264_faststart"], index)


def test_unsupported_tracks(corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    _expect(tmp_path, "novideo.mp4", data.replace(b"vide", b"soun"), UnsupportedFormatError, "no video track")
    entry = data.find(b"avc1", data.find(b"stsd"))
    for fourcc, match in ((b"encv", "encrypted"), (b"xyz1", "xyz1")):
        bad = data[:entry] + fourcc + data[entry + 4 :]
        _expect(tmp_path, f"{fourcc.decode()}.mp4", bad, UnsupportedFormatError, match)


# --------------------------------------------------------------------------- cache


def test_cache_in_process_and_on_disk(corpus, tmp_path):
    path = corpus["h264_moov_end"]
    cache = IndexCache(directory=tmp_path / "idx")
    src = _source(path)
    first = load_index(src, cache=cache)
    assert first.index_nbytes > 0
    before = src.stats.bytes_received
    second = load_index(src, cache=cache)
    assert src.stats.bytes_received == before
    assert (second.index_nbytes, second.index_requests) == (0, 0)
    assert np.array_equal(second.offsets, first.offsets) and np.array_equal(second.pts, first.pts)
    # A new process: empty memory, same folder.
    fresh = IndexCache(directory=tmp_path / "idx")
    src2 = _source(path)
    third = load_index(src2, cache=fresh)
    assert src2.stats.num_requests == 0 and third.index_nbytes == 0
    assert our_packets(third) == our_packets(first)
    assert third.extradata == first.extradata and third.frame_to_sample.tolist() == first.frame_to_sample.tolist()
    assert list((tmp_path / "idx").glob("*.npz"))
    # Another track key or changed validator is a miss.
    assert fresh.get(("other", 1, None, None)) is None


def test_default_cache_is_used(corpus):
    from videoloader.mp4 import default_index_cache

    default_index_cache.clear()
    path = corpus["h264_bframes"]
    a = load_index(_source(path))
    src = _source(path)
    b = load_index(src)
    assert a.index_nbytes > 0 and b.index_nbytes == 0 and src.stats.num_requests == 0
    default_index_cache.clear()


def test_cache_given_as_folder_path(corpus, tmp_path):
    path = corpus["h264_open_gop"]
    a = load_index(_source(path), cache=str(tmp_path / "c"))
    src = _source(path)
    b = load_index(src, cache=tmp_path / "c")
    assert a.index_nbytes > 0 and b.index_nbytes == 0 and src.stats.num_requests == 0
    assert list((tmp_path / "c").glob("*.npz"))
    with pytest.raises(TypeError):
        load_index(_source(path), cache=3)


def test_public_names():
    import videoloader.mp4 as m

    assert m.__all__ == sorted(m.__all__)
    assert {"SampleIndex", "load_index", "read_index"} <= set(m.__all__)


def test_read_index_url(corpus):
    from videoloader.mp4 import read_index

    index = read_index(str(corpus["h264_editlist"]))
    assert_matches_pyav(corpus["h264_editlist"], index)


# --------------------------------------------------------------------------- claims vs bytes

# Runs one load_index in a fresh interpreter: peak RSS growth (ru_maxrss, after
# the imports) and the error class come back as JSON. RLIMIT_AS keeps a
# regression from eating the machine: it then fails with MemoryError.
_RSS_PROBE = r"""
import json, resource, sys, psutil
from videoloader.io import RangeSource
from videoloader.mp4 import load_index
proc = psutil.Process()
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (proc.memory_info().vms + (2 << 30), hard))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
error = message = None
try:
    load_index(RangeSource(sys.argv[1]), cache=False)
except BaseException as e:
    error, message = type(e).__name__, str(e)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_mb": grown / 1024, "error": error, "message": message}))
"""


def _rss_probe(path: Path) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _full_box(kind: bytes, version: int, flags: int, body: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + body)


def _forge_fragment_claims(src: Path, dst: Path, *, moofs: int = 150, pad: int = 140_000) -> Path:
    """ftyp + moov of a fragmented file, then ``moofs`` 72-byte moofs whose
    trun has no per-sample field and claims ~``pad`` one-byte samples each
    (~21 million in all), then an mdat of ``pad`` bytes they all point into."""
    data = src.read_bytes()
    top = _children(data, 0, len(data))
    head = b"".join(data[a:b] for k, a, b in top if k in (b"ftyp", b"moov"))
    with av.open(str(src)) as c:
        track_id = c.streams.video[0].id
    moof_size = 72
    out = bytearray(head)
    for i in range(moofs):
        start = len(out)
        count = len(head) + moofs * moof_size + 8 + pad - start - 8
        tfhd = _full_box(b"tfhd", 0, 0x020018, struct.pack(">III", track_id, 512, 1))
        trun = _full_box(b"trun", 0, 0, struct.pack(">I", count))
        moof = _box(b"moof", _full_box(b"mfhd", 0, 0, struct.pack(">I", i + 1)) + _box(b"traf", tfhd + trun))
        assert len(moof) == moof_size
        out += moof
    out += _box(b"mdat", bytes(pad))
    dst.write_bytes(bytes(out))
    return dst


def _forge_repeating_edits(src: Path, dst: Path, *, samples: int = 30_000, edits: int = 3000) -> Path:
    """A moov-at-end file rewritten to ``samples`` one-byte samples (a real
    stsz table backs them) and ``edits`` edits that each replay them all."""
    data = src.read_bytes()
    top = _children(data, 0, len(data))
    _, m0, m1 = top[-1]
    mdat = next(a for k, a, b in top if k == b"mdat") + 8

    def edit(kind, body):
        tables = {
            b"stsz": struct.pack(">III", 0, 0, samples) + struct.pack(">I", 1) * samples,
            b"stsc": struct.pack(">IIIII", 0, 1, 1, samples, 1),
            b"stco": struct.pack(">III", 0, 1, mdat),
            b"stts": struct.pack(">IIII", 0, 1, samples, 512),
            b"elst": struct.pack(">II", 0, edits) + struct.pack(">IIhh", 1 << 20, 0, 1, 0) * edits,
        }
        if kind in (b"stss", b"ctts"):
            return None, b""
        if kind in tables:
            return kind, tables[kind]
        return None

    trak_video = [b"vide" in data[a:b] for k, a, b in _children(data, m0 + 8, m1) if k == b"trak"]
    assert trak_video == [True]
    dst.write_bytes(data[:m0] + _box(b"moov", _rebuild(data, m0 + 8, m1, edit)))
    return dst


def _forge_nested_sidx(src: Path, dst: Path, *, claimed: int, header: bool) -> Path:
    """The global sidx of a fragmented file rewritten to one nested-sidx
    reference of ``claimed`` bytes past the real data; the file is extended
    sparsely so the reference is inside it. With ``header`` a sidx header
    claiming the whole reference sits there."""
    data = src.read_bytes()
    top = _children(data, 0, len(data))
    _, s0, s1 = next(t for t in top if t[0] == b"sidx")
    body = data[s0 + 8 : s1]
    version = body[0]
    fixed = 4 + 8 + (8 if version == 0 else 16)  # version/flags, reference_ID, timescale, ept+first_offset
    first_offset = len(data) - s1  # the reference starts where the real file ends
    off_at = fixed - (4 if version == 0 else 8)
    new_body = bytearray(body[:fixed] + struct.pack(">HH", 0, 1) + struct.pack(">III", (1 << 31) | claimed, 1, 1 << 31))
    new_body[off_at:fixed] = first_offset.to_bytes(fixed - off_at, "big")
    sidx = _box(b"sidx", bytes(new_body))
    out = data[:s0] + sidx + data[s1:]
    start = s0 + len(sidx) + first_offset
    assert start == len(out)
    with open(dst, "wb") as f:
        f.write(out)
        if header:
            f.write(struct.pack(">I4s", 0, b"sidx"))  # size 0: "to the end", i.e. the whole reference
        f.truncate(start + claimed)  # sparse: no disk space used
    return dst


def test_forged_fragment_sample_counts_are_refused_in_bounded_memory(corpus, tmp_path):
    path = _forge_fragment_claims(corpus["frag_nosidx"], tmp_path / "claims.mp4")
    assert path.stat().st_size < 160_000
    got = _rss_probe(path)
    assert got["error"] == "MP4ParseError", got
    assert "without per-sample fields" in got["message"] and "claims.mp4" in got["message"]
    assert got["grown_mb"] < 50, got


def test_forged_repeating_edit_list_is_refused_in_bounded_memory(corpus, tmp_path):
    path = _forge_repeating_edits(corpus["h264_moov_end"], tmp_path / "edits.mp4")
    assert path.stat().st_size < 400_000
    got = _rss_probe(path)
    assert got["error"] == "MP4ParseError" and "repeats samples" in got["message"], got
    assert got["grown_mb"] < 50, got


@pytest.mark.parametrize("header", [False, True])
def test_nested_sidx_reference_of_2gib_is_not_read_whole(header, corpus, tmp_path):
    path = _forge_nested_sidx(corpus["frag_sidx"], tmp_path / "nested.mp4", claimed=(1 << 31) - 1, header=header)
    got = _rss_probe(path)
    assert got["error"] == "MP4ParseError", got
    assert ("claims" if header else "not a sidx") in got["message"], got
    assert got["grown_mb"] < 50, got


# --------------------------------------------------------------------------- times and timescales


@pytest.mark.parametrize("box", [b"mdhd", b"mvhd"])
@pytest.mark.parametrize("value", [1 << 31, 0xFFFFFFFF])
def test_timescale_beyond_int32_is_a_parse_error(box, value, corpus, tmp_path):
    data = corpus["h264_faststart"].read_bytes()
    assert data[data.find(box) + 4] == 0  # version 0: timescale at byte 20 of the box
    bad = _patch_box_field(data, box, 20, struct.pack(">I", value))
    _expect(tmp_path, f"{box.decode()}_ts.mp4", bad, MP4ParseError, "timescale")


def test_tfdt_beyond_int64_is_a_parse_error(corpus, tmp_path):
    data = corpus["frag_nosidx"].read_bytes()
    assert data[data.find(b"tfdt") + 4] == 1  # version 1: 64-bit baseMediaDecodeTime at byte 12
    for value in (1 << 63, (1 << 64) - 1, 1 << 62):
        path = _write(tmp_path, "tfdt.mp4", _patch_box_field(data, b"tfdt", 12, struct.pack(">Q", value)))
        with pytest.raises(MP4ParseError, match="tfdt") as info:
            _load(path)
        assert "tfdt.mp4" in str(info.value)


@pytest.mark.parametrize("edit", [((1 << 64) - 1, 0), (1000, (1 << 63) - 1), (1 << 62, 0)])
def test_huge_edit_times_are_a_parse_error(edit, bframe_moov_end, tmp_path):
    path = with_edit_list(bframe_moov_end, tmp_path / "elst.mp4", [edit], version=1)
    with pytest.raises(MP4ParseError, match="elst|edit list") as info:
        _load(path)
    assert "elst.mp4" in str(info.value)


@pytest.mark.parametrize(
    ("pts", "shared"),
    [([], None), ([5], None), ([3, 1, 2], None), ([4, 1, 4, 2, 1], 1), ([9, 7, 9], 9)],
)
def test_first_shared_time_is_the_smallest_repeated_pts(pts, shared):
    assert first_shared_time(np.array(pts, dtype=np.int64)) == shared


def test_two_samples_with_one_pts_are_a_parse_error(corpus, tmp_path):
    # FFmpeg demuxes this (every pts 0) and decodes 60 frames in decode order; frames are
    # matched to samples by pts here, so the index refuses it rather than guess the order.
    data = corpus["h264_faststart"].read_bytes()
    at = data.find(b"stts") - 4
    assert struct.unpack_from(">II", data, at + 12) == (1, 60)
    bad = _patch_box_field(data, b"stts", 20, struct.pack(">I", 0))
    err = _expect(tmp_path, "dup_pts.mp4", bad, MP4ParseError, "share the presentation time 0")
    assert "samples [0, 1, 2, 3]" in str(err)
