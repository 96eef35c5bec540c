"""Bytes on the wire: what the reader fetches against an independent minimum.

The minimum is computed from PyAV's own packet list, not from our index: for
each target frame, the packets from the preceding keyframe to the target in
decode order (from the keyframe before that for an open-GOP leading frame),
plus the container boxes any index reader must read (ftyp, moov, and for
fragmented files the sidx/moof boxes).
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from videoloader import VideoReader

import media

MP4_KINDS = sorted(name for name, k in media.KINDS.items() if k.container == "mp4" and name != "one_frame")
INDEX_BOXES = {"ftyp", "moov", "sidx", "moof", "mfra"}


def _minimal_bytes(path, targets: list[int]) -> tuple[int, int]:
    """(index bytes, sample bytes) a perfect reader needs for ``targets``."""
    data = path.read_bytes()
    index_nbytes = sum(b.size for b in media.iter_boxes(data) if b.type in INDEX_BOXES)
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    shown = [i for i, p in enumerate(packets) if not p.is_discard]
    order = sorted(shown, key=lambda i: (packets[i].pts, i))  # frame -> packet (decode order)
    needed: set[int] = set()
    for f in targets:
        s = order[f]
        keys = [i for i in range(s + 1) if packets[i].is_keyframe]
        k = keys[-1]
        # An open-GOP leading picture (pts before its keyframe) needs the GOP before.
        while packets[k].pts > packets[s].pts and len(keys) > 1:
            keys.pop()
            k = keys[-1]
        needed.update(range(k, s + 1))
    return index_nbytes, sum(packets[i].size for i in needed)


def _fetch_random_frames(served_as, url, server, name, **reader_kwargs) -> tuple[int, list[int]]:
    with VideoReader(url, index_cache=False, **reader_kwargs) as r:
        n = r.metadata.num_frames
        targets = np.random.default_rng(len(name)).choice(n, size=min(16, n), replace=False).tolist()
        r.get_frames_at(targets)
        got = r.transfer_stats.bytes_received
        assert got == server.bytes_sent_for(served_as)
    return got, targets


@pytest.mark.parametrize("name", MP4_KINDS)
def test_random_frames_cost_within_10_percent_of_minimal(name, corpus, http_server):
    path = corpus[name]
    url = http_server.add(path.name, path)
    got, targets = _fetch_random_frames(path.name, url, http_server, name)
    minimal = sum(_minimal_bytes(path, targets))
    ratio = got / minimal
    if "audio" in media.KINDS[name].features:
        # The few-hundred-byte audio chunks between video chunks are skipped,
        # except the smallest gaps, bridged to keep the call in one wave of
        # max_concurrency requests; with coalescing off the reader is at the minimum.
        assert ratio <= 1.05, f"{name}: fetched {got} bytes, minimum {minimal} ({ratio:.3f}x)"
        url0 = http_server.add("nogap_" + path.name, path)
        got0, _ = _fetch_random_frames(
            "nogap_" + path.name, url0, http_server, name, source_options={"coalesce_gap_bytes": 0}
        )
        assert got0 <= 1.10 * minimal, f"{name} without coalescing: {got0} vs {minimal}"
    else:
        assert ratio <= 1.10, f"{name}: fetched {got} bytes, minimum {minimal} ({ratio:.3f}x)"


def test_single_frame_reads_only_its_gop_prefix_on_a_longer_file(tmp_path, http_server):
    path = media.make_video(
        tmp_path / "long.mp4",
        codec="h264",
        width=320,
        height=240,
        num_frames=300,
        gop=30,
        bframes=2,
        movflags="faststart",
    )
    url = http_server.add("long.mp4", path)
    with VideoReader(url, index_cache=False) as r:
        opened = r.transfer_stats.bytes_received
        for f in (7, 151, 299):
            before = r.transfer_stats.snapshot()
            r.get_frames_at([f])
            fetched = r.transfer_stats.since(before).bytes_received
            _, minimal = _minimal_bytes(path, [f])
            assert fetched <= 1.10 * minimal, (f, fetched, minimal)
    # Opening reads the index only: far less than the file.
    assert opened < 0.25 * path.stat().st_size
