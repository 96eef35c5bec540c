"""The loopback server's per-connection bandwidth cap (``LoopbackServer(rate_limit_bps=...)``).

Benchmarks use it to model a bandwidth-limited origin. Only lower bounds on
time are asserted: a loaded machine can make a transfer slower, never faster.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

import pytest

from server import LoopbackServer, TokenBucket

PAYLOAD = bytes(range(256)) * (2_000_000 // 256)  # ~2 MB


def _get(port: int, path: str, range_header: str | None = None) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Range": range_header} if range_header else {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, time.perf_counter() - t0
    finally:
        conn.close()


def test_rate_limit_caps_one_connection():
    """2 MB at 20 Mbit/s (2.5 MB/s) cannot arrive in under 0.8 s; the bytes are intact."""
    with LoopbackServer(rate_limit_bps=20e6) as server:
        server.add("v.bin", PAYLOAD)
        status, body, elapsed = _get(server.port, "/v.bin")
    assert status == 200 and body == PAYLOAD
    floor = len(PAYLOAD) * 8 / 20e6 - 0.03  # minus the one-chunk burst a bucket may hold
    assert elapsed >= floor, f"{len(PAYLOAD)} bytes at 20 Mbit/s took {elapsed:.3f} s (< {floor:.3f} s)"
    assert server.bytes_sent_for("v.bin") == len(PAYLOAD)


def test_rate_limit_is_per_connection():
    """Two concurrent range reads are each paced: each 1 MB half takes >= ~0.4 s at 20 Mbit/s."""
    half = len(PAYLOAD) // 2
    results: list[tuple[int, bytes, float]] = []
    with LoopbackServer(rate_limit_bps=20e6) as server:
        server.add("v.bin", PAYLOAD)
        threads = [
            threading.Thread(target=lambda r=r: results.append(_get(server.port, "/v.bin", r)))
            for r in (f"bytes=0-{half - 1}", f"bytes={half}-")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert server.num_connections == 2
    assert sorted(r[1] for r in results) == sorted([PAYLOAD[:half], PAYLOAD[half:]])
    floor = half * 8 / 20e6 - 0.03
    assert all(r[0] == 206 and r[2] >= floor for r in results), [(r[0], round(r[2], 3)) for r in results]


def test_total_rate_limit_caps_connections_together():
    """Two concurrent 1 MB range reads share 20 Mbit/s: both done no sooner than ~0.8 s."""
    half = len(PAYLOAD) // 2
    results: list[tuple[int, bytes, float]] = []
    with LoopbackServer(total_rate_limit_bps=20e6) as server:
        server.add("v.bin", PAYLOAD)
        threads = [
            threading.Thread(target=lambda r=r: results.append(_get(server.port, "/v.bin", r)))
            for r in (f"bytes=0-{half - 1}", f"bytes={half}-")
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.perf_counter() - t0
        assert server.num_connections == 2
    assert sorted(r[1] for r in results) == sorted([PAYLOAD[:half], PAYLOAD[half:]])
    floor = len(PAYLOAD) * 8 / 20e6 - 0.03
    assert elapsed >= floor, f"2 x 1 MB sharing 20 Mbit/s took {elapsed:.3f} s (< {floor:.3f} s)"


def test_token_bucket_never_exceeds_its_rate():
    """40 takes of 25 kB at 1 MB/s cannot finish in under 1 s (minus one burst of credit)."""

    async def run() -> float:
        bucket = TokenBucket(1_000_000, burst=25_000)
        t0 = time.monotonic()
        for _ in range(40):
            await bucket.take(25_000)
        return time.monotonic() - t0

    elapsed = asyncio.run(run())
    assert elapsed >= 1.0 - 0.025 - 0.01


def test_token_bucket_rejects_a_non_positive_rate():
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_rate_limit_is_off_by_default():
    with LoopbackServer() as server:
        assert server.rate_limit_bps is None and server.total_rate_limit_bps is None
        server.add("v.bin", PAYLOAD)
        status, body, _ = _get(server.port, "/v.bin")
        assert status == 200 and body == PAYLOAD
        assert not server._buckets and server._total_bucket is None
