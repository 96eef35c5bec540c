"""The fragment walk in resynchronised lanes (fragmented MP4 without sidx or mfra).

Every index built with lanes must equal the one-chain walk's, array for
array, whatever false 'moof' bytes the mdat payloads hold; broken files raise
what the one-chain walk raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from videoloader import MP4ParseError, TruncatedFileError
from videoloader._types import ByteRange
from videoloader.io import RangeSource
from videoloader.mp4 import _resync
from videoloader.mp4._read import load_index

import media

_ARRAYS = ("offsets", "sizes", "dts", "pts", "durations", "is_sync", "is_discard")


class _Rounds:
    """A RangeSource that counts its ``read_ranges`` calls (rounds) and keeps the ranges asked.

    ``priced=False`` hides ``round_trip_cost_bytes``: a source that does not
    price round trips walks one chain.
    """

    def __init__(self, source: RangeSource, *, priced: bool = True) -> None:
        self._source = source
        self.url = source.url
        self.rounds = 0
        self.starts: list[int] = []
        if priced:
            self.round_trip_cost_bytes = source.round_trip_cost_bytes
            self.max_concurrency = source.max_concurrency

    @property
    def size(self) -> int:
        return self._source.size

    def read_ranges(self, ranges: Sequence[ByteRange], *, retain: bool = False) -> list[bytes]:
        self.rounds += 1
        self.starts.extend(r.start for r in ranges)
        return self._source.read_ranges(ranges)


def _index(path_or_url, *, priced: bool = True):
    with RangeSource(str(path_or_url)) as src:
        counted = _Rounds(src, priced=priced)
        return load_index(counted, cache=False), counted  # type: ignore[arg-type]


def _assert_same(a, b) -> None:
    for name in _ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def _boxes(data: bytes) -> list[media.Box]:
    return list(media.iter_boxes(data))


@pytest.fixture(scope="module")
def noindex(tmp_path_factory) -> Path:
    """60 fragments, no sidx, no mfra."""
    d = tmp_path_factory.mktemp("resync")
    path = media.make_video(
        d / "src.mp4",
        num_frames=600,
        gop=10,
        fps=25,
        width=160,
        height=120,
        noise=24,
        bframes=2,
        preset="ultrafast",
        movflags="frag_keyframe+empty_moov+default_base_moof",
    )
    out = d / "noindex.mp4"
    out.write_bytes(media._strip_top_level(path.read_bytes(), {"mfra"}))
    return out


def _fragments(path: Path) -> int:
    return sum(1 for b in _boxes(path.read_bytes()) if b.type == "moof")


def test_lanes_equal_the_one_chain_walk(noindex):
    lanes, src = _index(noindex)
    chain, seq = _index(noindex, priced=False)
    n = _fragments(noindex)
    assert n >= 50 and len(chain.offsets) == 600
    _assert_same(lanes, chain)
    assert seq.rounds >= n  # one chain: a round per fragment
    assert src.rounds < n // 3
    assert lanes.index_nbytes < noindex.stat().st_size / 2


def test_zero_round_trip_cost_walks_one_chain(noindex):
    with RangeSource(str(noindex), round_trip_cost_bytes=0) as src:
        counted = _Rounds(src)
        index = load_index(counted, cache=False)  # type: ignore[arg-type]
    assert counted.rounds >= _fragments(noindex)
    _assert_same(index, _index(noindex)[0])


def _plant_false_moofs(data: bytes) -> tuple[bytes, list[int]]:
    """Copy each fragment's moof, plus an mdat header of 64 bytes, into the middle of the mdat before it.

    Each copy passes every check a resync candidate gets (it parses, its
    samples lie inside the file, an mdat follows it); the top-level boxes are
    unchanged. Returns the new bytes and where each false mdat ends.
    """
    out = bytearray(data)
    boxes = _boxes(data)
    ends = []
    for a, b in zip(boxes[:-1], boxes[1:], strict=False):
        if a.type != "mdat" or b.type != "moof":
            continue
        moof = data[b.start : b.stop]
        fake = moof + (64).to_bytes(4, "big") + b"mdat"
        at = (a.start + a.stop) // 2
        if at + len(fake) + 64 > a.stop - 16 or at + 8 < a.start + 16:
            continue
        out[at : at + len(fake)] = fake
        ends.append(at + len(moof) + 64)
    return bytes(out), ends


def test_false_moofs_in_mdat_payload_leave_the_index_unchanged(noindex, tmp_path):
    planted, false_ends = _plant_false_moofs(noindex.read_bytes())
    assert len(false_ends) >= 40
    path = tmp_path / "planted.mp4"
    path.write_bytes(planted)
    lanes, src = _index(path)
    chain, _ = _index(path, priced=False)
    _assert_same(lanes, chain)
    _assert_same(lanes, _index(noindex, priced=False)[0])  # the clean file's index
    # Some lanes did start at a false moof and walked on from its false mdat.
    assert set(src.starts) & set(false_ends)
    assert src.rounds < _fragments(path) // 2


def _error_of(path: Path, *, priced: bool) -> tuple[type[Exception], str]:
    with pytest.raises(MP4ParseError) as info:
        _index(path, priced=priced)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("where", ["late_mdat", "late_moof", "first_half"])
def test_truncated_file_raises_as_the_one_chain_walk(where, noindex, tmp_path):
    data = noindex.read_bytes()
    moofs = [b for b in _boxes(data) if b.type == "moof"]
    cut = {
        "late_mdat": moofs[-5].stop + 100,
        "late_moof": moofs[-5].start + 40,
        "first_half": len(data) // 2,
    }[where]
    path = tmp_path / f"cut_{where}.mp4"
    path.write_bytes(data[:cut])
    got = _error_of(path, priced=True)
    assert got == _error_of(path, priced=False)
    assert issubclass(got[0], (TruncatedFileError, MP4ParseError))


def test_over_http_in_few_rounds(noindex, http_server):
    url = http_server.add("noindex.mp4", noindex.read_bytes())
    lanes, src = _index(url)
    _assert_same(lanes, _index(noindex, priced=False)[0])
    assert src.rounds < _fragments(noindex) // 3


def test_cost_model():
    mib = 1 << 20
    # A 10-minute file in 300 fragments of 1 MiB at the default 256 KiB a round trip.
    k = _resync.plan_lanes(area=300 * mib, fragment_bytes=mib, round_trip_cost_bytes=256 * 1024, max_lanes=31)
    assert 4 <= k <= 16
    # Costlier round trips buy more lanes; none when a round trip is free or the walk is short.
    more = _resync.plan_lanes(area=300 * mib, fragment_bytes=mib, round_trip_cost_bytes=4 * mib, max_lanes=31)
    assert more > k
    assert _resync.plan_lanes(area=300 * mib, fragment_bytes=mib, round_trip_cost_bytes=0, max_lanes=31) == 0
    assert _resync.plan_lanes(area=3 * mib, fragment_bytes=mib, round_trip_cost_bytes=256 * 1024, max_lanes=31) == 0
