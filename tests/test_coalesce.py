"""Coalescing by cost: a gap is bridged when the request or the round trip it saves is worth more than its bytes."""

from __future__ import annotations

import pickle
import random

import pytest

from videoloader._types import ByteRange
from videoloader.io import COALESCE_GAP_BYTES, RangeSource
from videoloader.io._coalesce import ROUND_TRIP_COST_BYTES, coalesce_ranges

pytestmark = pytest.mark.timeout(60)

BLOB = random.Random(1).randbytes(200_000)


def spaced(gaps: list[int], size: int = 100, start: int = 0) -> list[ByteRange]:
    """Ranges of ``size`` bytes separated by ``gaps``."""
    out, pos = [], start
    for gap in [0, *gaps]:
        pos += gap
        out.append(ByteRange(pos, pos + size))
        pos += size
    return out


def check_where(ranges: list[ByteRange], merged: list[ByteRange], where: list[tuple[int, int]]) -> None:
    """Every range lies inside its request at its offset; requests are sorted and disjoint."""
    assert all(a.stop < b.start for a, b in zip(merged, merged[1:], strict=False))
    for r, (k, offset) in zip(ranges, where, strict=True):
        m = merged[k]
        assert m.start + offset == r.start and r.stop <= m.stop


# -- the pure function -----------------------------------------------------------------------


def test_gaps_under_one_requests_cost_are_bridged_longer_ones_are_not():
    ranges = spaced([255, 256, 300, 10])
    merged, where = coalesce_ranges(ranges, 256)
    assert merged == [ByteRange(0, 455), ByteRange(711, 811), ByteRange(1111, 1321)]
    check_where(ranges, merged, where)
    # Defaults: bytes only (a reply's headers), so few-hundred-byte audio chunks stay out.
    assert COALESCE_GAP_BYTES == 256
    assert coalesce_ranges(spaced([300] * 5))[0] == spaced([300] * 5)


def test_round_trips_are_saved_by_bridging_the_smallest_gaps_when_worth_it():
    # 20 ranges, 19 gaps: the call needs 2 waves of 16; bridging the 4 smallest
    # gaps (1000..1003 bytes) brings it to 16 requests, one wave.
    gaps = [5000 + i for i in range(15)] + [1003, 1000, 1002, 1001]
    ranges = spaced(gaps)
    merged, where = coalesce_ranges(ranges, 0, max_concurrency=16, round_trip_cost_bytes=4007)
    assert len(merged) == 16
    check_where(ranges, merged, where)
    bridged = sum(m.stop - m.start for m in merged) - 20 * 100
    assert bridged == 1000 + 1001 + 1002 + 1003
    # A round trip worth no more than those bytes: no gap is bridged, two waves it is.
    merged, _ = coalesce_ranges(ranges, 0, max_concurrency=16, round_trip_cost_bytes=4006)
    assert len(merged) == 20
    # No concurrency limit or a zero round-trip cost: never bridged for latency.
    assert len(coalesce_ranges(ranges, 0, round_trip_cost_bytes=10**9)[0]) == 20
    assert len(coalesce_ranges(ranges, 0, max_concurrency=16)[0]) == 20


def test_the_cheapest_number_of_waves_wins():
    # 40 ranges (3 waves of 16). 8 gaps of 10 bytes, 16 of 1000, 15 of 10**6.
    gaps = [10] * 8 + [1000] * 16 + [10**6] * 15
    ranges = spaced(gaps)
    # One wave saved for 80 bytes is worth it; a second for 16,000 more is not at 10,000 a round.
    merged, _ = coalesce_ranges(ranges, 0, max_concurrency=16, round_trip_cost_bytes=10_000)
    assert len(merged) == 32
    # At 20,000 a round, both are.
    merged, _ = coalesce_ranges(ranges, 0, max_concurrency=16, round_trip_cost_bytes=20_000)
    assert len(merged) == 16
    # The per-request cost counts too: with 1000-byte gaps free to bridge, one wave.
    merged, _ = coalesce_ranges(ranges, 1001, max_concurrency=16, round_trip_cost_bytes=0)
    assert len(merged) == 16


def test_barriers_are_never_bridged_even_to_save_a_round_trip():
    ranges = spaced([10] * 19)  # 20 ranges, 110 bytes apart
    barriers = [r.start for r in ranges[1:]]  # held bytes start where each range starts
    merged, where = coalesce_ranges(ranges, 1000, max_concurrency=4, round_trip_cost_bytes=10**9, barriers=barriers)
    assert merged == ranges
    check_where(ranges, merged, where)
    # Without them, one request.
    assert len(coalesce_ranges(ranges, 1000)[0]) == 1


def test_overlaps_duplicates_and_order_are_kept_under_every_setting():
    rng = random.Random(7)
    for _ in range(200):
        ranges = []
        for _ in range(rng.randint(1, 60)):
            a = rng.randrange(0, 100_000)
            ranges.append(ByteRange(a, a + rng.randrange(0, 3000)))
        kw = dict(max_concurrency=rng.choice([None, 1, 4, 16]), round_trip_cost_bytes=rng.choice([0, 5000, 10**6]))
        merged, where = coalesce_ranges(ranges, rng.choice([0, 256, 8192]), **kw)
        check_where(ranges, merged, where)
        assert kw["max_concurrency"] != 1 or kw["round_trip_cost_bytes"] < 10**6 or len(merged) == 1


# -- RangeSource ---------------------------------------------------------------------------------


@pytest.fixture
def blob_url(http_server):
    return http_server.add("c.bin", BLOB)


def _gets(http_server) -> list[str]:
    return sorted((r[2] for r in http_server.requests if r[0] == "GET"), key=lambda h: int(h[6:].split("-")[0]))


def test_a_call_past_max_concurrency_bridges_small_gaps_to_stay_in_one_wave(http_server, blob_url):
    ranges = spaced([600] * 19, start=1000)  # 20 ranges; 600-byte gaps cost more than a request
    cases = (
        ({"max_concurrency": 16}, 16),
        ({"max_concurrency": 16, "round_trip_cost_bytes": 0}, 20),
        ({"max_concurrency": 32}, 20),
    )
    for options, requests in cases:
        with RangeSource(blob_url, **options) as src:
            _ = src.size
            http_server.reset_counts()
            assert src.read_ranges(ranges) == [BLOB[r.start : r.stop] for r in ranges]
            assert len(_gets(http_server)) == requests, options
            assert http_server.bytes_sent == 20 * 100 + (20 - requests) * 600


def test_nearby_audio_sized_gaps_are_not_bridged_by_default(http_server, blob_url):
    ranges = [ByteRange(0, 5000), ByteRange(5300, 9000), ByteRange(9100, 12000)]
    with RangeSource(blob_url) as src:
        _ = src.size
        http_server.reset_counts()
        src.read_ranges(ranges)
    assert _gets(http_server) == ["bytes=0-4999", "bytes=5300-11999"]  # 300 bytes skipped, 100 bridged
    assert http_server.bytes_sent == 5000 + 6700


def test_retained_bytes_are_never_fetched_again_to_save_a_round_trip(http_server, blob_url):
    with RangeSource(blob_url, max_concurrency=2) as src:
        assert src.read_ranges([ByteRange(10_000, 20_000)], retain=True) == [BLOB[10_000:20_000]]
        http_server.reset_counts()
        out = src.read_ranges([ByteRange(5000, 10_500), ByteRange(19_000, 21_000), ByteRange(30_000, 30_100)])
        assert out == [BLOB[5000:10_500], BLOB[19_000:21_000], BLOB[30_000:30_100]]
    # [5000, 10000) and [20000, 21000) around the held bytes, and the rest: the
    # held region is not bridged, the gap after it is (to fit 2 requests).
    assert _gets(http_server) == ["bytes=5000-9999", "bytes=20000-30099"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("coalesce_gap_bytes", -1),
        ("coalesce_gap_bytes", 1.5),
        ("coalesce_gap_bytes", "8k"),
        ("coalesce_gap_bytes", True),
        ("round_trip_cost_bytes", -1),
        ("round_trip_cost_bytes", 0.5),
        ("round_trip_cost_bytes", None),
    ],
)
def test_nonsense_costs_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=rf"RangeSource\.{name} must be a whole number of bytes >= 0"):
        RangeSource("/nonexistent", **{name: value})


def test_costs_travel_with_a_pickled_source_and_through_source_options(http_server, blob_url, corpus):
    src = RangeSource(blob_url, coalesce_gap_bytes=4096, round_trip_cost_bytes=0)
    copy = pickle.loads(pickle.dumps(src))
    assert (copy._coalesce_gap_bytes, copy._round_trip_cost_bytes) == (4096, 0)
    src.close()
    copy.close()
    assert RangeSource(blob_url)._round_trip_cost_bytes == ROUND_TRIP_COST_BYTES

    from videoloader import VideoReader

    path = corpus["audio_first"]
    url = http_server.add(path.name, path)
    opts = {"coalesce_gap_bytes": 8192, "round_trip_cost_bytes": 0}
    with VideoReader(url, index_cache=False, source_options=opts) as r:
        assert (r._source._coalesce_gap_bytes, r._source._round_trip_cost_bytes) == (8192, 0)
