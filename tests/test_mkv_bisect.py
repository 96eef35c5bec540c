"""Keyframes around a time without Cues: the bisection's answer equals a full walk's, at a fraction of its requests."""

from __future__ import annotations

import bisect
import time

import pytest

from videoloader import MatroskaParseError
from videoloader.io import RangeSource
from videoloader.mkv._bisect import KeyframeSearch, keyframes_around
from videoloader.mkv._ebml import ID, Window, read_element
from videoloader.mkv._read import open_head, walk_table
from videoloader.mkv._walk import walk_clusters

import media

CLUSTER_ID = b"\x1f\x43\xb6\x75"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Matroska files without Cues: known and unknown cluster sizes, with and without audio, short and longer."""
    folder = tmp_path_factory.mktemp("mkv_bisect")
    out = {name: media.make_kind(name, folder) for name in ("mkv_no_cues", "mkv_live", "mkv_audio")}
    long = media.make_video(folder / "long.mkv", container="mkv", num_frames=300, gop=15, bframes=2, audio=True)
    long.write_bytes(media._strip_cues(long.read_bytes()))
    out["long_no_cues"] = long
    live = media.make_video(
        folder / "long_live.mkv",
        container="mkv",
        num_frames=300,
        gop=30,
        bframes=2,
        container_options={"live": "1"},
    )
    live.write_bytes(media._unknown_cluster_sizes(live.read_bytes()))
    out["long_live"] = live
    return out


def _cluster_positions(data: bytes, seg_start: int, seg_end: int) -> list[int]:
    """Every top-level Cluster, by following the element chain from the Segment's start."""
    w = Window(data, 0, "test")
    out = []
    pos = seg_start
    while pos < seg_end:
        e = read_element(w, pos)
        if e.id != ID.CLUSTER:
            pos = e.end
            continue
        out.append(pos)
        if not e.unknown_size:
            pos = e.end
            continue
        pos = e.data_start
        while pos < seg_end:  # a Cluster of unknown size ends at the next top-level element
            c = read_element(w, pos)
            if c.id in (ID.CLUSTER, ID.CUES, ID.TAGS):
                break
            pos = c.end
    return out


def _gop_starts(path) -> list[tuple[int, int]]:
    """``(time, cluster offset)`` of every cluster whose first video block is a keyframe, from a full walk."""
    data = path.read_bytes()
    with RangeSource(str(path)) as s:
        head = open_head(s, track=None)
        walk = walk_clusters(
            url=head.url,
            file_size=head.file_size,
            seg_start=head.seg_start,
            seg_end=head.seg_end,
            track=head.track.number,
            windows=[head.head],
            read=s.read_ranges,
        )
    clusters = _cluster_positions(data, head.seg_start, head.seg_end)
    bounds = [*clusters, head.seg_end]
    out = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        first = next((b for b in walk.blocks if start < b.offset < stop), None)
        if first is not None and first.keyframe:
            out.append((first.timestamp, start))
    return out


def _expected(starts: list[tuple[int, int]], ticks: int) -> list[tuple[int, int]]:
    i = bisect.bisect_right([t for t, _ in starts], ticks) - 1
    return starts[i : i + 3] if i >= 0 else []


def _times(starts: list[tuple[int, int]]) -> list[int]:
    """Times before, at, just after and between every GOP start, and past the end."""
    out = {-1, 0}
    for t, _ in starts:
        out.update({t - 1, t, t + 1, t + 17})
    out.add(starts[-1][0] + 10_000)
    return sorted(out)


def _search(path, ticks, head=None, stats=None):
    with RangeSource(str(path)) as s:
        head = head or open_head(s, track=None)
        return keyframes_around(head, s.read_ranges, ticks, stats=stats)


@pytest.mark.parametrize("name", ["mkv_no_cues", "mkv_live", "mkv_audio", "long_no_cues", "long_live"])
def test_equals_the_full_walk(name, files):
    """At every time, the GOP-starting clusters around it are exactly those a full walk finds."""
    path = files[name]
    starts = _gop_starts(path)
    assert len(starts) >= 2
    with RangeSource(str(path)) as s:
        head = open_head(s, track=None)
        for ticks in _times(starts):
            assert keyframes_around(head, s.read_ranges, ticks) == _expected(starts, ticks), ticks


def test_clusters_that_do_not_start_with_a_keyframe_are_skipped(files):
    """FFmpeg's live mode cuts clusters every second, not at keyframes: only GOP starts are returned,
    and a time inside a cluster that starts mid-GOP gets the GOP start before it."""
    path = files["long_live"]
    data = path.read_bytes()
    with RangeSource(str(path)) as s:
        head = open_head(s, track=None)
    clusters = _cluster_positions(data, head.seg_start, head.seg_end)
    starts = _gop_starts(path)
    mid_gop = sorted(set(clusters) - {p for _, p in starts})
    assert mid_gop, "the live file should have clusters that start mid-GOP"
    w = Window(data, 0, "test")
    for pos in mid_gop:
        e = read_element(w, pos)
        ts_el = read_element(w, e.data_start)
        if ts_el.id == ID.CRC32:
            ts_el = read_element(w, ts_el.end)
        ticks = int.from_bytes(data[ts_el.data_start : ts_el.end], "big")
        got = _search(path, ticks, head)
        assert got == _expected(starts, ticks)
        assert got and got[0][1] < pos and all(p != pos for _, p in got)


def _plant(data: bytes, positions: list[int], forgeries: list[bytes]) -> bytes:
    out = bytearray(data)
    for i, at in enumerate(positions):
        f = forgeries[i % len(forgeries)]
        out[at : at + len(f)] = f
    return bytes(out)


@pytest.mark.parametrize("name", ["long_no_cues", "long_live"])
def test_cluster_ids_planted_in_payloads_are_never_returned(name, files, tmp_path):
    """Cluster IDs written into block payloads, with plausible sizes and even a Timestamp and a
    block after them, never become an answer: the answer stays the full walk's."""
    path = files[name]
    with RangeSource(str(path)) as s:
        head = open_head(s, track=None)
        table = walk_table(head, s.read_ranges)
    forgeries = [
        CLUSTER_ID + b"\x01\x00\x00\x00\x00\x00\x40\x00",  # a known size inside the Segment
        CLUSTER_ID + b"\xff",  # an unknown size
        CLUSTER_ID + b"\x01\xff\xff\xff\xff\xff\xff\xff" + b"\xbf\x84\x00\x00\x00\x00\xe7\x82\x01\xf4",  # + Timestamp
        CLUSTER_ID + b"\xff\xe7\x82\x03\xe8" + b"\xa3\x85\x81\x00\x00\x80\x00",  # + Timestamp + a keyframe block
    ]
    planted = [int(off) + int(size) // 3 for off, size in zip(table.offsets, table.sizes, strict=True) if size > 64]
    assert len(planted) > 100
    bad = tmp_path / path.name
    bad.write_bytes(_plant(path.read_bytes(), planted, forgeries))
    starts = _gop_starts(path)
    assert _gop_starts(bad) == starts  # the payloads changed, not the structure
    planted_set = set(planted)
    with RangeSource(str(bad)) as s:
        head = open_head(s, track=None)
        for ticks in _times(starts):
            got = keyframes_around(head, s.read_ranges, ticks)
            assert got == _expected(starts, ticks), ticks
            assert not planted_set & {p for _, p in got}


def test_truncated_files_raise_or_give_up(files, tmp_path):
    """A file cut short: opening raises MatroskaParseError (a known Segment size), or the search
    returns None or true GOP starts (an unknown size) — quickly, never a wrong position."""
    for name in ("long_no_cues", "long_live"):
        data = files[name].read_bytes()
        starts = _gop_starts(files[name])
        for frac in (0.3, 0.55, 0.8, 0.97):
            cut = tmp_path / f"{name}_{frac}.mkv"
            cut.write_bytes(data[: int(len(data) * frac)])
            with RangeSource(str(cut)) as s:
                try:
                    head = open_head(s, track=None)
                except MatroskaParseError:
                    assert name == "long_no_cues"
                    continue
                for ticks in _times(starts):
                    began = time.monotonic()
                    got = keyframes_around(head, s.read_ranges, ticks)
                    assert time.monotonic() - began < 2
                    assert got is None or set(got) <= set(starts), (frac, ticks, got)


def test_over_http_far_fewer_requests_than_a_full_walk(files, http_server):
    """One time costs a handful of requests; a full walk costs one per block."""
    path = files["long_no_cues"]
    url = http_server.add("long.mkv", path)
    starts = _gop_starts(path)
    with RangeSource(url) as s:
        head = open_head(s, track=None)
        before = len(http_server.requests)
        walk_table(head, s.read_ranges)
        full = len(http_server.requests) - before
        for ticks in (starts[len(starts) // 3][0] + 5, starts[-2][0] + 1, 3):
            before = len(http_server.requests)
            stats = KeyframeSearch()
            assert keyframes_around(head, s.read_ranges, ticks, stats=stats) == _expected(starts, ticks)
            used = len(http_server.requests) - before
            assert used == stats.requests
            assert used * 10 < full, (used, full)
            assert stats.nbytes < path.stat().st_size / 3
