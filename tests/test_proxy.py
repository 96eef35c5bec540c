"""The tracking proxy over a real loopback origin: exact bytes, accounting, disconnects, secrets."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request

import av

from videoloader.proxy import TrackingProxy


def test_decoder_reads_through_proxy_and_counts_match(corpus, http_server, caplog):
    caplog.set_level(logging.DEBUG)
    path = corpus["h264_moov_end"]
    url = http_server.add(path.name, path) + "?sig=TOPSECRET"
    with TrackingProxy() as proxy:
        purl = proxy.url_for(url)
        assert "TOPSECRET" not in purl and "127.0.0.1:" in purl
        with av.open(purl) as c:
            frames = sum(1 for _ in c.decode(video=0))
        usage = proxy.usage(purl)
        stats = proxy.stats()
        over_http = json.loads(urllib.request.urlopen(proxy.base_url + "/v1/stats").read())
    assert frames == 60
    assert stats["upstream_bytes"] == http_server.bytes_sent_for(path.name)
    assert stats["downstream_bytes"] == sum(r["downstream_bytes"] for r in stats["records"])
    assert stats["wasted_bytes"] == 0
    # One URL: its usage is the totals (the /v1/stats request itself is not an origin's).
    assert usage == {k: stats[k] for k in usage}
    assert stats["num_requests"] == len(stats["records"]) >= 2
    assert {k: v for k, v in over_http.items() if k != "records"} == {k: v for k, v in stats.items() if k != "records"}
    assert "TOPSECRET" not in json.dumps(stats) and "TOPSECRET" not in caplog.text


def test_range_head_and_bad_token(http_server):
    data = bytes(range(256)) * 1000
    url = http_server.add("blob.bin", data)
    with TrackingProxy() as proxy:
        purl = proxy.url_for(url)
        req = urllib.request.Request(purl, headers={"Range": "bytes=1000-1999"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206 and r.read() == data[1000:2000]
            assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        with urllib.request.urlopen(urllib.request.Request(purl, method="HEAD")) as r:
            assert int(r.headers["Content-Length"]) == len(data)
        req = urllib.request.Request(purl, headers={"Range": "bytes=-10"})
        with urllib.request.urlopen(req) as r:
            assert r.read() == data[-10:]
        bad = purl.replace(proxy.state.token, "x" * len(proxy.state.token))
        try:
            urllib.request.urlopen(bad)
            raise AssertionError("a wrong token must not be served")
        except urllib.error.HTTPError as e:
            assert e.code == 404
        try:
            urllib.request.urlopen(urllib.request.Request(purl, headers={"Range": f"bytes={len(data)}-"}))
            raise AssertionError("an unsatisfiable range must be refused")
        except urllib.error.HTTPError as e:
            assert e.code == 416


def test_client_disconnect_stops_upstream_and_counts_waste(http_server):
    size = 16 << 20
    url = http_server.add("big.bin", bytes(size))
    with TrackingProxy() as proxy:
        purl = proxy.url_for(url)
        host, port = proxy.base_url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sock.sendall(f"GET {purl[len(proxy.base_url) :]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = sock.recv(30000)
        sock.close()
        assert got.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not proxy.stats()["records"]:
            time.sleep(0.05)
        stats = proxy.stats()
    record = stats["records"][-1]
    assert record["client_disconnected"]
    assert http_server.bytes_sent_for("big.bin") == stats["upstream_bytes"] < 4 << 20  # far from 16 MiB
    assert stats["wasted_bytes"] == stats["upstream_bytes"] - stats["downstream_bytes"] > 0
