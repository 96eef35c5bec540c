"""videoloader.io against a real loopback HTTP server (tests/server.py), memory://, local files.

No mocks: every fault is produced by the server on the wire.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import pickle
import random
import subprocess
import sys
import threading
import time

import fsspec
import pytest
from fsspec.asyn import AsyncFileSystem

import videoloader.io
from videoloader._errors import (
    RangeRequestError,
    SourceAccessError,
    SourceChangedError,
    SourceError,
    SourceNotFoundError,
    SourceUnreachableError,
    TransferError,
    TruncatedFileError,
)
from videoloader._types import ByteRange
from videoloader.io import (
    COALESCE_GAP_BYTES,
    RangeSource,
    RetryPolicy,
    TransferRecord,
    TransferStats,
    redact_url,
)
from videoloader.io._coalesce import coalesce_ranges
from videoloader.io._loop import sessions

from server import Fault

pytestmark = pytest.mark.timeout(60)

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_seconds=0.01, max_delay_seconds=0.05)


def payload(n: int, seed: int = 0) -> bytes:
    """Deterministic random bytes (so an off-by-one read is visible)."""
    return random.Random(seed).randbytes(n)


BLOB = payload(1_000_000)


@pytest.fixture
def blob_url(http_server):
    return http_server.add("v.bin", BLOB)


def wire_bytes(stats: TransferStats) -> int:
    return sum(r.bytes_received for r in stats.records)


# -- public surface ----------------------------------------------------------------------------


def test_public_names_are_pinned_and_sorted():
    assert videoloader.io.__all__ == sorted(videoloader.io.__all__)
    assert set(videoloader.io.__all__) == {
        "COALESCE_GAP_BYTES",
        "READ_AHEAD_BYTES",
        "RangeFile",
        "RangeSource",
        "RetryPolicy",
        "TransferRecord",
        "TransferStats",
        "install_log_redaction",
        "redact_text",
        "redact_url",
    }


def test_io_does_not_import_torch_or_av():
    code = "import sys, videoloader.io; print(sorted(m for m in ('torch', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://cdn.example.com/a/v.mp4?X-Amz-Signature=abc&X-Amz-Credential=k", "https://cdn.example.com/a/v.mp4"),
        ("https://user:secret@host:8443/v.mp4#t=10", "https://host:8443/v.mp4"),
        ("s3://AKIA:secret@bucket/key.mp4?versionId=3", "s3://bucket/key.mp4"),
        ("simplecache::https://h/v.mp4?sig=1", "simplecache::https://h/v.mp4"),
        ("http://[::1]:80/v.mp4?token=t", "http://[::1]:80/v.mp4"),
        ("/data/videos/a.mp4", "/data/videos/a.mp4"),
        ("memory://bucket/a.mp4", "memory://bucket/a.mp4"),
        ("http://host:notaport/v.mp4?token=t", "http://host:notaport/v.mp4"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_secrets_never_reach_records_or_errors(http_server):
    base = http_server.add("v.bin", BLOB).replace("http://", "http://alice:hunter2@")
    with RangeSource(base + "?sig=TOPSECRET") as src:
        assert src.read(0, 10) == BLOB[:10]
        assert "TOPSECRET" not in src.url and "hunter2" not in src.url
        assert "TOPSECRET" not in repr(src)
        assert all("TOPSECRET" not in r.url and "hunter2" not in r.url for r in src.stats.records)
    missing = http_server.url("missing.bin").replace("http://", "http://alice:hunter2@") + "?sig=TOPSECRET"
    with RangeSource(missing, retry=FAST_RETRY) as src, pytest.raises(SourceNotFoundError) as info:
        src.read(0, 10)
    text = str(info.value) + repr(info.value.__cause__)
    assert "TOPSECRET" not in text and "hunter2" not in text
    assert http_server.url("missing.bin") in str(info.value)


# -- value objects -----------------------------------------------------------------------------


def test_retry_policy_validates_and_caps():
    assert RetryPolicy() == RetryPolicy(max_attempts=4, base_delay_seconds=0.1, max_delay_seconds=5.0)
    assert "max_attempts=4" in repr(RetryPolicy())
    for bad in ({"max_attempts": 0}, {"base_delay_seconds": -1}, {"jitter": 2.0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
    policy = RetryPolicy(base_delay_seconds=0.1, max_delay_seconds=1.0, jitter=0.0)
    assert [policy.delay_seconds(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert policy.delay_seconds(1, retry_after_seconds=0.5) == 0.5
    assert policy.delay_seconds(1, retry_after_seconds=120) == 1.0  # Retry-After is capped
    jittered = RetryPolicy(base_delay_seconds=1.0, max_delay_seconds=10, jitter=0.5)
    assert all(0.5 <= jittered.delay_seconds(1) <= 1.0 for _ in range(100))


def test_transfer_stats_totals_parent_snapshot_since():
    parent = TransferStats()
    stats = TransferStats(parent=parent)

    def rec(n: int, attempt: int = 1) -> TransferRecord:
        return TransferRecord("u", 0, n, n, n, 206, 0.01, attempt=attempt)

    stats.add(rec(10))
    snap = stats.snapshot()
    stats.add(rec(5, attempt=2))
    delta = stats.since(snap)
    assert delta.as_dict() == {"bytes_received": 5, "bytes_requested": 5, "num_requests": 1, "num_retries": 1}
    assert [r.stop for r in delta.records] == [5]
    assert snap.as_dict()["num_requests"] == 1
    with pytest.raises(TypeError):
        snap.add(rec(1))
    assert parent.as_dict() == stats.as_dict()
    copy = pickle.loads(pickle.dumps(stats))
    assert copy.as_dict() == stats.as_dict()
    copy.add(rec(1))
    with pytest.raises(ValueError):
        TransferRecord("u", 5, 1, 0, 0, None, 0.0)


def test_transfer_stats_is_thread_safe_and_can_bound_records():
    stats = TransferStats(max_records=100)

    def work():
        for _ in range(2000):
            stats.add(TransferRecord("u", 0, 3, 3, 2, 206, 0.0))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.num_requests == 16000
    assert stats.bytes_received == 32000 and stats.bytes_requested == 48000
    assert len(stats.records) == 100


def test_transfer_stats_snapshots_are_stable_views():
    stats = TransferStats(max_records=10)
    for i in range(25):
        stats.add(TransferRecord("u", 0, i, i, i, 206, 0.0))
    snap = stats.snapshot()
    assert [r.stop for r in snap.records] == list(range(15, 25))
    for i in range(25, 200):  # forces the record list to be trimmed several times
        stats.add(TransferRecord("u", 0, i, i, i, 206, 0.0))
    assert [r.stop for r in snap.records] == list(range(15, 25))  # unchanged
    assert snap.num_requests == 25
    delta = stats.since(snap)
    assert delta.num_requests == 175 and [r.stop for r in delta.records] == list(range(190, 200))
    assert delta.bytes_received == sum(range(25, 200))
    assert [r.stop for r in stats.since(stats.snapshot()).records] == []


def test_coalesce_ranges():
    ranges = [ByteRange(100, 110), ByteRange(0, 10), ByteRange(12, 20), ByteRange(5, 8), ByteRange(0, 10)]
    merged, where = coalesce_ranges(ranges, gap_bytes=5)
    assert merged == [ByteRange(0, 20), ByteRange(100, 110)]
    assert where == [(1, 0), (0, 0), (0, 12), (0, 5), (0, 0)]
    merged, _ = coalesce_ranges([ByteRange(0, 10), ByteRange(10, 20), ByteRange(21, 30)], gap_bytes=0)
    assert merged == [ByteRange(0, 20), ByteRange(21, 30)]  # adjacent always merge, gaps do not


def test_default_gap_merges_near_ranges_and_splits_far_ones(http_server, blob_url):
    with RangeSource(blob_url) as src:
        gap = COALESCE_GAP_BYTES
        assert src.size == len(BLOB)  # the HEAD is not part of what we count below
        before = src.stats.snapshot()
        src.read_ranges([ByteRange(0, 100), ByteRange(100 + gap - 1, 200 + gap)])
        assert src.stats.since(before).num_requests == 1
        src.read_ranges([ByteRange(0, 100), ByteRange(100 + gap + 1, 200 + gap)])
        assert src.stats.since(before).num_requests == 3


def test_retained_replies_serve_later_ranges_and_only_missing_bytes_are_fetched(http_server, blob_url):
    with RangeSource(blob_url) as src:
        assert src.read_ranges([ByteRange(1000, 2000)], retain=True) == [BLOB[1000:2000]]
        http_server.reset_counts()
        before = src.stats.snapshot()
        # inside: no request; straddling: only [2000, 2500) goes on the wire.
        assert src.read_ranges([ByteRange(1200, 1300)]) == [BLOB[1200:1300]]
        assert src.stats.since(before).num_requests == 0
        assert src.read_ranges([ByteRange(1500, 2500), ByteRange(500, 1100)]) == [BLOB[1500:2500], BLOB[500:1100]]
        delta = src.stats.since(before)
        assert delta.bytes_received == 500 + 500 == http_server.bytes_sent


# -- HTTP reads --------------------------------------------------------------------------------


def test_read_ranges_returns_each_range_in_order(http_server, blob_url):
    ranges = [ByteRange(900_000, 900_100), ByteRange(5, 50), (10, 20), ByteRange(7, 7), ByteRange(0, 1_000_000)]
    with RangeSource(blob_url) as src:
        out = src.read_ranges(ranges)
        assert src.size == len(BLOB)
        assert src.validator is not None and src.validator.startswith('"')
        assert src.read_ranges([]) == []
    assert out == [BLOB[900_000:900_100], BLOB[5:50], BLOB[10:20], b"", BLOB]


def test_nearby_ranges_are_coalesced(http_server, blob_url):
    with RangeSource(blob_url, coalesce_gap_bytes=1000) as src:
        _ = src.size
        http_server.reset_counts()
        out = src.read_ranges([ByteRange(0, 100), ByteRange(600, 700), ByteRange(5000, 5100)])
    assert out == [BLOB[0:100], BLOB[600:700], BLOB[5000:5100]]
    gets = [r for r in http_server.requests if r[0] == "GET"]
    assert sorted(g[2] for g in gets) == ["bytes=0-699", "bytes=5000-5099"]
    assert http_server.bytes_sent == 800


def test_far_ranges_are_fetched_concurrently(http_server, blob_url):
    http_server.latency_seconds = 0.15
    ranges = [ByteRange(i * 120_000, i * 120_000 + 1000) for i in range(8)]
    with RangeSource(blob_url) as src:
        _ = src.size
        t0 = time.perf_counter()
        out = src.read_ranges(ranges)
        elapsed = time.perf_counter() - t0
    assert out == [BLOB[r.start : r.stop] for r in ranges]
    assert elapsed < 0.6, f"8 ranges at 150 ms latency took {elapsed:.2f} s: not concurrent (1.2 s serial)"
    # round_trip_cost_bytes=0: the gaps (119 KB) are not bridged to save round trips.
    with RangeSource(blob_url, max_concurrency=1, round_trip_cost_bytes=0) as src:
        _ = src.size
        t0 = time.perf_counter()
        src.read_ranges(ranges)
        assert time.perf_counter() - t0 >= 1.2  # max_concurrency is honoured


def test_one_source_shared_by_threads(http_server, blob_url):
    errors = []
    with RangeSource(blob_url) as src:

        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(20):
                a = rng.randrange(len(BLOB) - 5000)
                b = a + rng.randrange(1, 5000)
                if src.read(a, b) != BLOB[a:b]:
                    errors.append((a, b))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert src.stats.num_requests == 1 + 8 * 20  # one HEAD: the identity is learned once
    assert wire_bytes(src.stats) == http_server.bytes_sent


def test_records_equal_server_byte_counts(http_server, blob_url):
    with RangeSource(blob_url) as src:
        src.read_ranges([ByteRange(0, 10_000), ByteRange(500_000, 700_000)])
        src.read(999_000, 1_000_000)
        records = src.stats.records
    assert wire_bytes(src.stats) == http_server.bytes_sent == 10_000 + 200_000 + 1000
    assert src.stats.bytes_received == http_server.bytes_sent
    assert src.stats.num_requests == len(http_server.requests) == 4  # HEAD + 3 GETs
    head, *gets = records
    assert (head.status, head.bytes_requested, head.bytes_received) == (200, 0, 0)
    assert all(r.status == 206 and r.ok and r.attempt == 1 and r.error is None for r in gets)
    assert all(r.bytes_requested == r.bytes_received == r.stop - r.start for r in gets)
    assert all(r.latency_seconds > 0 for r in records)
    assert src.stats.as_dict() == {
        "bytes_received": 211_000,
        "bytes_requested": 211_000,
        "num_requests": 4,
        "num_retries": 0,
    }


def test_parent_stats_aggregate_sources(http_server, blob_url):
    total = TransferStats()
    with (
        RangeSource(blob_url, stats=TransferStats(parent=total)) as a,
        RangeSource(blob_url, stats=TransferStats(parent=total)) as b,
    ):
        a.read(0, 100)
        b.read(100, 300)
    assert total.bytes_received == 300 == http_server.bytes_sent
    assert total.num_requests == a.stats.num_requests + b.stats.num_requests


def test_redirect_is_followed(http_server, blob_url):
    url = http_server.add_redirect("old.bin", "v.bin")
    with RangeSource(url) as src:
        assert src.size == len(BLOB)
        assert src.read(10, 20) == BLOB[10:20]


def test_range_past_end_is_truncated_file_error(http_server, blob_url):
    with RangeSource(blob_url) as src, pytest.raises(TruncatedFileError, match=r"only 1000000 bytes"):
        src.read(999_990, 1_000_010)
    assert all(r[0] == "HEAD" for r in http_server.requests)  # nothing fetched


# -- transient faults --------------------------------------------------------------------------

_FAULT_CASES = {
    "503": (503, "503"),
    "500": (500, "500"),
    "429": (429, "429"),
    "drop_mid_body": (206, "ClientPayloadError"),
    "truncate": (206, "short body"),
    "stall": (206, "Timeout"),
    "slow": (None, "Timeout"),
}


@pytest.mark.parametrize("kind", sorted(_FAULT_CASES))
def test_transient_fault_is_retried_and_recorded(http_server, blob_url, kind):
    http_server.slow_seconds = 3.0
    status, error = _FAULT_CASES[kind]
    with RangeSource(blob_url, retry=FAST_RETRY, read_timeout_seconds=0.3) as src:
        _ = src.size
        http_server.faults.append(Fault(kind, retry_after="0"))
        assert src.read(1000, 301_000) == BLOB[1000:301_000]
        first, second = src.stats.records[-2:]
    assert (first.attempt, first.ok, first.status) == (1, False, status)
    assert error in first.error
    assert (second.attempt, second.ok, second.status, second.error) == (2, True, 206, None)
    assert src.stats.num_retries == 1
    assert first.bytes_requested == second.bytes_requested == 300_000
    if kind not in ("stall", "slow"):  # a stalled reply may still be in flight server-side
        assert wire_bytes(src.stats) == http_server.bytes_sent


def test_disconnect_before_reply_is_retried(http_server, blob_url):
    # On a fresh connection (aiohttp itself silently re-sends an idempotent request once
    # when a *pooled* keep-alive connection turns out closed: no bytes are lost there).
    http_server.faults.append(Fault("disconnect", methods=("HEAD",)))
    with RangeSource(blob_url, retry=FAST_RETRY) as src:
        assert src.size == len(BLOB)
        first, second = src.stats.records
    assert (first.ok, first.status, second.ok, second.status, second.attempt) == (False, None, True, 200, 2)
    assert "ServerDisconnected" in first.error


def test_429_retry_after_is_honoured_and_capped(http_server, blob_url):
    with RangeSource(blob_url, retry=RetryPolicy(base_delay_seconds=0.0, max_delay_seconds=5.0)) as src:
        _ = src.size
        http_server.faults.append(Fault("429", retry_after="1"))
        t0 = time.perf_counter()
        assert src.read(0, 10) == BLOB[:10]
        assert time.perf_counter() - t0 >= 0.95
    with RangeSource(blob_url, retry=RetryPolicy(base_delay_seconds=0.0, max_delay_seconds=0.2)) as src:
        _ = src.size
        http_server.faults.append(Fault("429", retry_after="3600"))
        t0 = time.perf_counter()
        assert src.read(0, 10) == BLOB[:10]
        assert time.perf_counter() - t0 < 1.0


def test_retries_are_bounded(http_server, blob_url):
    with RangeSource(blob_url, retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.01)) as src:
        _ = src.size
        http_server.faults.extend(["503"] * 3)
        with pytest.raises(TransferError, match=r"after 3 attempts.*503") as info:
            src.read(0, 100)
        assert isinstance(info.value, TimeoutError)  # catchable as a built-in
        gets = src.stats.records[1:]
    assert [r.attempt for r in gets] == [1, 2, 3] and not any(r.ok for r in gets)


def test_short_body_is_retried_once_then_range_error(http_server, blob_url):
    with RangeSource(blob_url, retry=FAST_RETRY) as src:
        _ = src.size
        http_server.faults.extend(["truncate", "truncate"])
        with pytest.raises(RangeRequestError, match="short body"):
            src.read(0, 10_000)
        assert [r.attempt for r in src.stats.records[1:]] == [1, 2]


@pytest.mark.parametrize("kind", ["long_body", "wrong_range"])
def test_wrong_body_is_range_error_without_retry(http_server, blob_url, kind):
    with RangeSource(blob_url, retry=FAST_RETRY) as src:
        _ = src.size
        http_server.faults.append(kind)
        with pytest.raises(RangeRequestError, match=r"exactly the range asked"):
            src.read(0, 10_000)
        assert len(src.stats.records) == 2  # HEAD + one GET, no retry


def test_slow_server_times_out_in_bounded_time(http_server, blob_url):
    http_server.slow_seconds = 10.0
    with RangeSource(
        blob_url, retry=RetryPolicy(max_attempts=2, base_delay_seconds=0.01), read_timeout_seconds=0.3
    ) as src:
        _ = src.size
        http_server.faults.extend(["slow", "slow"])
        t0 = time.perf_counter()
        with pytest.raises(TransferError, match="Timeout"):
            src.read(0, 100)
        assert time.perf_counter() - t0 < 3.0


def test_unreachable_server_is_not_retried():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        src = RangeSource(f"http://127.0.0.1:{port}/v.bin?token=x", retry=FAST_RETRY, connect_timeout_seconds=1)
        with src, pytest.raises(SourceUnreachableError, match=rf"connection refused by 127\.0\.0\.1:{port}") as info:
            _ = src.size
    assert isinstance(info.value, ConnectionError) and not isinstance(info.value, TransferError)
    assert "token" not in str(info.value)
    assert len(src.stats.records) == 1  # a refusal is not a transient fault


# -- permanent errors --------------------------------------------------------------------------


def test_not_found_and_forbidden(http_server):
    with RangeSource(http_server.url("nope.bin"), retry=FAST_RETRY) as src:
        with pytest.raises(SourceNotFoundError, match=r"nope\.bin.*404") as info:
            _ = src.size
        assert isinstance(info.value, FileNotFoundError)
    url = http_server.add("secret.bin", BLOB, forbidden=True)
    with RangeSource(url, retry=FAST_RETRY) as src:
        with pytest.raises(SourceAccessError, match=r"secret\.bin.*403") as info:
            _ = src.size
        assert isinstance(info.value, PermissionError)
        # HEAD refused -> a 1-byte GET is tried (URLs signed for GET only), which is refused too.
        assert [(r.status, r.bytes_requested) for r in src.stats.records] == [(403, 0), (403, 1)]
    assert wire_bytes(src.stats) == http_server.bytes_sent


def test_object_removed_after_open(http_server, blob_url):
    with RangeSource(blob_url) as src:
        _ = src.size
        http_server.remove("v.bin")
        with pytest.raises(SourceNotFoundError):
            src.read(0, 10)


# -- a server that ignores Range ---------------------------------------------------------------


def test_ignored_range_is_detected_at_the_status_line(http_server):
    # Large: on loopback the kernel alone can buffer ~36 MiB (tcp_rmem max 32 MiB + 4 MiB send).
    size = 128 * 1024 * 1024
    url = http_server.add("big.bin", bytes(size), honour_range=False)
    with RangeSource(url) as src:
        assert src.size == size
        with pytest.raises(RangeRequestError, match=r"HTTP 200.*honour Range"):
            src.read(1_000_000, 1_001_000)
        record = src.stats.records[-1]
    assert (record.status, record.ok, record.bytes_requested) == (200, False, 1000)
    assert record.bytes_received < 1024 * 1024  # the waste is recorded, and small
    time.sleep(0.2)
    assert http_server.bytes_sent_for("big.bin") < size // 2  # the server was cut off early


def test_ignored_range_is_fine_for_the_whole_object(http_server):
    url = http_server.add("small.html", b"<html>hi</html>", honour_range=False)
    with RangeSource(url) as src:
        assert src.read(0, src.size) == b"<html>hi</html>"


def test_html_page_helper(http_server):
    url = http_server.add_html("login")
    with RangeSource(url) as src:
        assert src.read(0, src.size).startswith(b"<!doctype html>")


# -- the object changes --------------------------------------------------------------------------


def test_source_changed_is_detected(http_server, blob_url):
    with RangeSource(blob_url) as src:
        _ = src.size
        http_server.faults.append("replace")  # same size, new ETag
        with pytest.raises(SourceChangedError, match="ETag"):
            src.read(0, 100)
    with RangeSource(blob_url) as src:
        _ = src.size
        http_server.replace("v.bin", BLOB + b"more")
        with pytest.raises(SourceChangedError):
            src.read(0, 100)


def test_unpickled_copy_refuses_a_changed_object(http_server, blob_url):
    src = RangeSource(blob_url)
    _ = src.size
    copy = pickle.loads(pickle.dumps(src))
    http_server.replace("v.bin", payload(len(BLOB), seed=1))
    with copy, pytest.raises(SourceChangedError):
        copy.read(0, 10)
    src.close()


# -- other filesystems ---------------------------------------------------------------------------


def test_memory_filesystem():
    fs = fsspec.filesystem("memory")
    fs.pipe("/io-test/v.bin", BLOB)
    try:
        with RangeSource("memory://io-test/v.bin") as src:
            assert src.size == len(BLOB)
            assert src.read_ranges([ByteRange(0, 10), ByteRange(500_000, 500_010)]) == [
                BLOB[:10],
                BLOB[500_000:500_010],
            ]
            assert all(r.status is None and r.ok for r in src.stats.records)
            assert src.stats.bytes_received == 20
        with fsspec.open("memory://io-test/v.bin", "rb") as f, RangeSource(f) as src:
            assert src.read(3, 9) == BLOB[3:9]
            assert pickle.loads(pickle.dumps(src)).read(3, 9) == BLOB[3:9]
        with RangeSource("memory://io-test/missing.bin") as src, pytest.raises(SourceNotFoundError):
            _ = src.size
    finally:
        fs.rm("/io-test", recursive=True)


def test_local_file(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(BLOB)
    for source in (path, str(path), f"file://{path}"):
        with RangeSource(source) as src:
            assert src.size == len(BLOB)
            assert src.read_ranges([(0, 4), (999_996, 1_000_000)]) == [BLOB[:4], BLOB[-4:]]
            assert src.stats.bytes_received == 8
            with pytest.raises(TruncatedFileError):
                src.read(0, len(BLOB) + 1)
    with RangeSource(path) as src:
        _ = src.size
        with open(path, "ab") as f:
            f.write(b"x")
        with pytest.raises(SourceChangedError):
            src.read(0, 10)
    with RangeSource(tmp_path / "missing.bin") as src, pytest.raises(SourceNotFoundError):
        _ = src.size


class _SlowMemoryFS(AsyncFileSystem):
    """A real async filesystem: memory contents, 50 ms per request."""

    protocol = "slowmem"
    data = {"v.bin": BLOB}

    async def _info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path not in self.data:
            raise FileNotFoundError(path)
        return {"name": path, "size": len(self.data[path]), "type": "file", "ETag": "e1"}

    async def _cat_file(self, path, start=None, end=None, **kwargs):
        await asyncio.sleep(0.05)
        return self.data[self._strip_protocol(path)][start:end]


def test_async_filesystem_reads_concurrently():
    fsspec.register_implementation("slowmem", _SlowMemoryFS, clobber=True)
    ranges = [ByteRange(i * 100_000, i * 100_000 + 10) for i in range(8)]
    with RangeSource("slowmem://v.bin") as src:
        assert src.validator == "e1"
        t0 = time.perf_counter()
        assert src.read_ranges(ranges) == [BLOB[r.start : r.stop] for r in ranges]
        assert time.perf_counter() - t0 < 0.3  # 8 x 50 ms one by one would be 0.4 s
        assert src.stats.num_requests == 8


class _FlakyMemoryFS(AsyncFileSystem):
    """An async filesystem whose reads fail as told by ``faults`` (one exception per read), then succeed."""

    protocol = "flakymem"
    faults: list[BaseException] = []

    async def _info(self, path, **kwargs):
        return {"name": path, "size": len(BLOB), "type": "file", "ETag": "e1"}

    async def _cat_file(self, path, start=None, end=None, **kwargs):
        if self.faults:
            raise self.faults.pop(0)
        return BLOB[start:end]


class _FlakySyncFS(fsspec.AbstractFileSystem):
    """The blocking twin of _FlakyMemoryFS."""

    protocol = "flakysync"
    faults: list[BaseException] = []

    def info(self, path, **kwargs):
        return {"name": path, "size": len(BLOB), "type": "file", "ETag": "e1"}

    def cat_file(self, path, start=None, end=None, **kwargs):
        if self.faults:
            raise self.faults.pop(0)
        return BLOB[start:end]


@pytest.mark.parametrize("fs_cls", [_FlakyMemoryFS, _FlakySyncFS])
def test_filesystem_faults_use_the_same_retry_loop(fs_cls):
    fsspec.register_implementation(fs_cls.protocol, fs_cls, clobber=True)
    url = f"{fs_cls.protocol}://v.bin"
    fs_cls.faults[:] = [ConnectionResetError("reset"), TimeoutError("slow")]
    with RangeSource(url, retry=FAST_RETRY) as src:
        assert src.read(10, 20) == BLOB[10:20]
        assert [(r.attempt, r.ok) for r in src.stats.records] == [(1, False), (2, False), (3, True)]
        assert "reset" in src.stats.records[0].error and src.stats.num_retries == 2
    fs_cls.faults[:] = [ConnectionResetError("reset")] * 4
    with RangeSource(url, retry=FAST_RETRY) as src, pytest.raises(TransferError, match=r"after 4 attempts.*reset"):
        src.read(10, 20)
    fs_cls.faults[:] = [FileNotFoundError("gone")]
    with RangeSource(url, retry=FAST_RETRY) as src:
        with pytest.raises(SourceNotFoundError):
            src.read(10, 20)
        assert len(src.stats.records) == 1  # permanent: not retried
    fs_cls.faults[:] = []


# -- the retry loop ------------------------------------------------------------------------------


def _scripted(outcomes):
    """An attempt function failing with each exception of ``outcomes`` in turn, then returning "ok"."""
    seen: list[int] = []

    def once(attempt):
        seen.append(attempt)
        if outcomes:
            raise outcomes.pop(0)
        return "ok"

    return once, seen


def _run_loop(mode, policy, once):
    from videoloader.io._retry import retry_async, retry_sync

    if mode == "sync":
        return retry_sync(policy, once, redacted="https://h/v.mp4", what="[0, 10)")

    async def attempt(n):
        return once(n)

    return asyncio.run(retry_async(policy, attempt, redacted="https://h/v.mp4", what="[0, 10)"))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_loop_classifies_faults(mode):
    from videoloader.io._common import ShortBody, Transient, Unreachable

    once, seen = _scripted([Transient("HTTP 503"), Transient("reset")])
    assert _run_loop(mode, FAST_RETRY, once) == "ok" and seen == [1, 2, 3]

    once, seen = _scripted([Transient("HTTP 503")] * 4)
    with pytest.raises(TransferError, match=r"https://h/v\.mp4: \[0, 10\) failed after 4 attempts, last: HTTP 503"):
        _run_loop(mode, FAST_RETRY, once)
    assert seen == [1, 2, 3, 4]

    once, seen = _scripted([SourceNotFoundError("404")])  # permanent: at once
    with pytest.raises(SourceNotFoundError):
        _run_loop(mode, FAST_RETRY, once)
    assert seen == [1]

    once, seen = _scripted([ShortBody("short body"), ShortBody("short body")])  # one more try only
    with pytest.raises(RangeRequestError, match=r"short body \(2 times\)"):
        _run_loop(mode, FAST_RETRY, once)
    assert seen == [1, 2]

    once, seen = _scripted([Unreachable("connection refused")])
    with pytest.raises(SourceUnreachableError, match="Not retried"):
        _run_loop(mode, FAST_RETRY, once)
    assert seen == [1]

    once, seen = _scripted([Unreachable("DNS temporary failure", retry_once=True)])  # cleared up
    assert _run_loop(mode, FAST_RETRY, once) == "ok" and seen == [1, 2]

    once, seen = _scripted([Unreachable("DNS temporary failure", retry_once=True)] * 2)
    with pytest.raises(SourceUnreachableError):
        _run_loop(mode, FAST_RETRY, once)
    assert seen == [1, 2]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_loop_honours_and_caps_retry_after(mode):
    from videoloader.io._common import Transient

    policy = RetryPolicy(base_delay_seconds=0.0, max_delay_seconds=0.3)
    once, _ = _scripted([Transient("HTTP 429", status=429, retry_after_seconds=0.2)])
    t0 = time.perf_counter()
    assert _run_loop(mode, policy, once) == "ok"
    assert 0.18 <= time.perf_counter() - t0 < 1.0
    once, _ = _scripted([Transient("HTTP 429", status=429, retry_after_seconds=3600)])
    t0 = time.perf_counter()
    assert _run_loop(mode, policy, once) == "ok"
    assert time.perf_counter() - t0 < 1.0  # capped at max_delay_seconds


# -- pickling and fork ---------------------------------------------------------------------------


def test_pickle_round_trip(http_server, blob_url):
    src = RangeSource(blob_url + "?sig=abc", coalesce_gap_bytes=123, retry=FAST_RETRY, read_timeout_seconds=7)
    src.read(0, 10)
    copy = pickle.loads(pickle.dumps(src))
    assert copy.url == src.url and copy.size == src.size and copy.validator == src.validator
    assert copy.stats.num_requests == 0  # fresh stats, no HEAD needed: identity travelled
    assert copy.read(10, 20) == BLOB[10:20]
    assert copy.stats.num_requests == 1
    assert (copy._coalesce_gap_bytes, copy._retry, copy._read_timeout_seconds) == (123, FAST_RETRY, 7.0)
    src.close()
    copy.close()


def _child_read(src, pickled, queue):
    try:
        a = src.read(100, 200)  # the inherited object: must build its own session
        b = pickle.loads(pickled).read(300, 400)
        queue.put((a == BLOB[100:200], b == BLOB[300:400], os.getpid()))
    except BaseException as e:  # pragma: no cover - reported to the parent
        queue.put(repr(e))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_use_in_forked_child(http_server, blob_url):
    src = RangeSource(blob_url)
    assert src.read(0, 10) == BLOB[:10]  # parent session and loop are live at fork time
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_child_read, args=(src, pickle.dumps(src), queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert all(isinstance(r, tuple) and r[:2] == (True, True) for r in results), results
    assert src.read(10, 20) == BLOB[10:20]  # the parent's session still works after the children exit
    src.close()


# -- open_file -------------------------------------------------------------------------------------


def test_open_file_reads_seeks_and_reads_ahead(http_server):
    size = 8 * 1024 * 1024
    data = payload(size)
    url = http_server.add("big.bin", data)
    with RangeSource(url) as src, src.open_file(read_ahead_bytes=64 * 1024) as f:
        assert f.seekable() and f.readable() and not f.writable()
        assert f.size == size
        assert f.read(4) == data[:4]
        assert f.seek(5_000_000) == 5_000_000
        assert f.read(100) == data[5_000_000:5_000_100]
        assert f.tell() == 5_000_100
        assert f.read(200) == data[5_000_100:5_000_300]  # from the read-ahead buffer
        assert f.seek(-10, os.SEEK_END) == size - 10
        assert f.read(100) == data[-10:]  # short read at EOF
        assert f.read(1) == b""
        f.seek(100, os.SEEK_SET)
        f.seek(50, os.SEEK_CUR)
        buf = bytearray(1000)
        assert f.readinto(buf) == 1000 and bytes(buf) == data[150:1150]
        received = src.stats.bytes_received
        assert received < 4 * 64 * 1024, received  # never the whole file, never 5 MiB blocks
        assert received == http_server.bytes_sent
        gets = [r for r in src.stats.records if r.status == 206]
        assert len(gets) == 4  # start, 5 MB, the tail, back to 150; the rest came from the buffer
    assert f.closed


def test_open_file_large_read_and_buffered_wrapper(http_server, blob_url):
    import io

    with RangeSource(blob_url) as src:
        with io.BufferedReader(src.open_file(), buffer_size=32 * 1024) as f:
            f.seek(123)
            assert f.read() == BLOB[123:]
        assert src.stats.bytes_received == len(BLOB) - 123


# -- resources -------------------------------------------------------------------------------------


def _client_sockets(port: int) -> int:
    import psutil

    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


_LEAK_CHECK = r"""
import json, random, sys, threading, time
import psutil
from videoloader.io import RangeSource
from videoloader.io._loop import sessions

url, local = sys.argv[1], sys.argv[2]
port = int(url.split(":")[2].split("/")[0])
blob = random.Random(0).randbytes(1_000_000)
proc = psutil.Process()

def client_sockets():
    return sum(1 for c in proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)

with RangeSource(url) as warm:  # start the IO loop thread once
    warm.read(0, 1)
time.sleep(0.1)
fds, threads = proc.num_fds(), threading.active_count()
for i in range(1000):
    src = RangeSource(url)
    assert src.read(i, i + 10) == blob[i : i + 10]
    src.close()
    with RangeSource(local) as src:
        src.read(0, 10)
out = {"sockets": client_sockets(), "sessions": sessions.num_sessions(),
       "fd_growth": proc.num_fds() - fds, "thread_growth": threading.active_count() - threads}
# Concurrent use from threads shares one session and still closes cleanly.
srcs = [RangeSource(url) for _ in range(8)]
workers = [threading.Thread(target=s.read, args=(0, 100)) for s in srcs]
for w in workers:
    w.start()
for w in workers:
    w.join()
out["sessions_while_shared"] = sessions.num_sessions()
for s in srcs:
    s.close()
out["sessions_after"] = sessions.num_sessions()
out["sockets_after"] = client_sockets()
print(json.dumps(out))
"""


def test_close_leaves_no_sockets_and_no_threads(http_server, blob_url, tmp_path):
    # In a fresh process, so what other tests left open cannot blur the counts.
    local = tmp_path / "v.bin"
    local.write_bytes(BLOB[:1000])
    proc = subprocess.run(
        [sys.executable, "-c", _LEAK_CHECK, blob_url, str(local)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("fd_growth") <= 0, out
    assert out == {
        "sockets": 0,
        "sessions": 0,
        "thread_growth": 0,
        "sessions_while_shared": 1,
        "sessions_after": 0,
        "sockets_after": 0,
    }, out


def test_read_after_close_is_an_error(http_server, blob_url):
    src = RangeSource(blob_url)
    src.close()
    src.close()  # idempotent
    with pytest.raises(SourceError, match="closed"):
        src.read(0, 1)


def test_garbage_collected_source_releases_its_session(http_server, blob_url):
    import gc

    src = RangeSource(blob_url)
    src.read(0, 10)
    assert sessions.num_sessions() == 1
    del src
    gc.collect()
    assert sessions.num_sessions() == 0
    assert _client_sockets(http_server.port) == 0


def test_interpreter_exit_closes_unclosed_sources(http_server, blob_url, tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(
        "import sys\n"
        "from videoloader.io import RangeSource\n"
        f"a = RangeSource({blob_url!r}); a.read(0, 10)\n"
        f"b = RangeSource({blob_url!r}); b.read(5, 10)\n"
        "print('read ok')\n"  # no close(): exit must clean up quietly
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-W", "default", str(script)], capture_output=True, text=True, timeout=30, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "read ok"
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_read_head_learns_size_and_validator_in_one_request(http_server, blob_url, tmp_path):
    http_server.reset_counts()
    with RangeSource(blob_url) as src:
        assert src.read_head(1000, retain=True) == BLOB[:1000]
        assert src.size == len(BLOB) and src.validator
        assert src.read(10, 20) == BLOB[10:20]  # from the retained head: no request
        assert src.stats.num_requests == 1
    assert [m for m, *_ in http_server.requests] == ["GET"]
    small = http_server.add("small.bin", b"abc")
    with RangeSource(small) as src:
        assert src.read_head(1000) == b"abc" and src.size == 3
    empty = http_server.add("empty.bin", b"")
    with RangeSource(empty) as src:
        assert src.read_head(1000) == b"" and src.size == 0
    local = tmp_path / "l.bin"
    local.write_bytes(BLOB[:50])
    with RangeSource(str(local)) as src:
        assert src.read_head(1000) == BLOB[:50]
