"""The perfect-reads server over real loopback servers: exact frames from clips, errors, SSRF rules."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

import av
import numpy as np
import pytest

from videoloader import VideoReader
from videoloader._plan import plan_frames
from videoloader.io import RangeSource
from videoloader.mp4 import load_index
from videoloader.serve import make_app
from videoloader.serve._thread import BackgroundServer

import media

MP4_KINDS = [name for name, kind in media.KINDS.items() if kind.container == "mp4"]


@pytest.fixture(scope="module")
def local_server():
    with BackgroundServer(make_app(allow_private=True)) as server:
        yield server


def _get(base: str, path: str, query: list[tuple[str, object]]) -> tuple[int, dict[str, str], bytes]:
    url = f"{base}{path}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _decode(clip: bytes) -> list[tuple[float, np.ndarray]]:
    """Every frame a sequential decode outputs (``ffmpeg -i``'s semantics), in output order."""
    out = []
    with av.open(io.BytesIO(clip)) as c:
        st = c.streams.video[0]
        for f in c.decode(video=0):
            out.append((round(float(f.pts * st.time_base), 6), f.to_ndarray(format="rgb24")))
    return out


@pytest.mark.parametrize("name", MP4_KINDS)
def test_clip_decodes_exactly_the_reader_frames(name, corpus, http_server, local_server):
    path = corpus[name]
    url = http_server.add(path.name, path)
    with VideoReader(path) as reader:
        n = reader.metadata.num_frames
        # Any order, a duplicate, two frames of one GOP, and neighbours on screen.
        frames = [n - 1, n // 3, 0, (2 * n) // 3, n // 3, min(n - 1, n // 3 + 2), min(n - 1, n // 3 + 3)]
        want = reader.get_frames_at(frames)
    status, headers, body = _get(local_server.base_url, "/v1/clip.mp4", [("url", url)] + [("i", f) for f in frames])
    assert status == 200, body
    assert headers["Content-Type"] == "video/mp4"
    pts = json.loads(headers["X-Videoloader-Frames"])
    np.testing.assert_allclose(pts, want.pts_seconds.numpy(), atol=1e-6)
    # A sequential decode outputs the requested frames, once each, in presentation order,
    # at their source times, and nothing else.
    decoded = _decode(body)
    order = sorted(set(frames))
    assert [t for t, _ in decoded] == [round(pts[frames.index(f)], 6) for f in order]
    for f, (_, got) in zip(order, decoded, strict=True):
        np.testing.assert_array_equal(got, want.data[frames.index(f)].permute(1, 2, 0).numpy())
    # Only whole decode groups were sent: no more samples than the plan needs.
    assert len(body) < path.stat().st_size or n <= 2
    assert int(headers["X-Videoloader-Upstream-Bytes"]) > 0


@pytest.fixture(scope="module")
def long_open_gop(tmp_path_factory):
    """300-frame open-GOP H.264 and HEVC files: gaps between groups long enough to wrap the order count."""
    import media

    d = tmp_path_factory.mktemp("open_gop")
    return {
        codec: media.make_video(d / f"{codec}.mp4", codec=codec, num_frames=300, gop=30, bframes=3, open_gop=True)
        for codec in ("h264", "hevc")
    }


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_open_gop_clip_bridges_groups_that_do_not_reset_the_order_count(
    codec, corpus, long_open_gop, http_server, local_server
):
    # Groups starting on a picture that keeps the order count (H.264 non-IDR I, HEVC CRA) are
    # joined to the group before; without that FFmpeg drops or reorders them. IDR groups are not.
    for path, bridged in ((long_open_gop[codec], True), (corpus["h264_faststart"], False)):
        url = http_server.add(f"{codec}-{path.name}", path)
        with RangeSource(str(path)) as s:
            index = load_index(s, cache=False)
        frames = [14, index.num_frames // 2, index.num_frames - 10]
        with VideoReader(path) as reader:
            want = reader.get_frames_at(frames)
        status, headers, body = _get(local_server.base_url, "/v1/clip.mp4", [("url", url)] + [("i", f) for f in frames])
        assert status == 200
        decoded = _decode(body)
        assert [t for t, _ in decoded] == [round(t, 6) for t in json.loads(headers["X-Videoloader-Frames"])]
        for k, (_, got) in enumerate(decoded):
            np.testing.assert_array_equal(got, want.data[k].permute(1, 2, 0).numpy())
        # Bridged: the clip holds every sample from the first group's sync sample to the last frame's.
        first = int(plan_frames(index, frames).groups[0].first_sample)
        last = int(index.frame_to_sample[frames[-1]])
        assert (len(body) >= int(index.sizes[first : last + 1].sum())) == bridged, (path.name, len(body))


def test_times_form_matches_reader_and_clip_keeps_timestamps(corpus, http_server, local_server, tmp_path):
    path = corpus["h264_bframes"]
    url = http_server.add(path.name, path)
    times = [1.51, 0.0, 0.7]
    with VideoReader(path) as reader:
        want = reader.get_frames_played_at(times)
        frames = reader.frame_indices_played_at(times)
    status, headers, body = _get(local_server.base_url, "/v1/clip.mp4", [("url", url)] + [("t", t) for t in times])
    assert status == 200
    np.testing.assert_allclose(json.loads(headers["X-Videoloader-Frames"]), want.pts_seconds.numpy(), atol=1e-6)
    # Our own index of the clip gives the same presentation times as the source's.
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(body)
    with RangeSource(str(clip)) as s:
        clip_index = load_index(s, cache=False)
    with RangeSource(str(path)) as s:
        src_index = load_index(s, cache=False)
    src_pts = set((src_index.frame_pts() / src_index.timescale).round(6).tolist())
    clip_pts = (clip_index.frame_pts() / clip_index.timescale).round(6).tolist()
    assert set(clip_pts) <= src_pts
    for f in frames:
        assert round(float(src_index.frame_pts()[f]) / src_index.timescale, 6) in clip_pts


def test_upstream_bytes_are_the_needed_samples(corpus, http_server):
    path = corpus["h264_moov_end"]
    url = http_server.add(path.name, path)
    with BackgroundServer(make_app(allow_private=True)) as server:
        status, headers, _ = _get(server.base_url, "/v1/clip.mp4", [("url", url), ("i", 50)])
        assert status == 200
        first = int(headers["X-Videoloader-Upstream-Bytes"])
        http_server.reset_counts()
        status, headers, _ = _get(server.base_url, "/v1/clip.mp4", [("url", url), ("i", 50)])
        second = int(headers["X-Videoloader-Upstream-Bytes"])
    assert second == http_server.bytes_sent_for(path.name)  # the header tells the truth
    assert second < first  # the index came from the shared cache
    with RangeSource(str(path)) as s:
        index = load_index(s, cache=False)
    gop = index.sizes[45:51].sum()  # keyframe 45 .. frame 50 (I/P only)
    assert second == gop


def test_index_summary(corpus, http_server, local_server):
    for name, moov, fragment_index in [
        ("h264_moov_end", "end", None),
        ("frag_sidx", "start", "sidx"),
        ("frag_mfra", "start", "mfra"),
    ]:
        url = http_server.add(corpus[name].name, corpus[name])
        status, _, body = _get(local_server.base_url, "/v1/index", [("url", url + "?sig=SECRET")])
        assert status == 200
        info = json.loads(body)
        assert info["num_frames"] == 60 and info["keyframes"] == [0, 15, 30, 45]
        assert info["layout"]["moov"] == moov and info["layout"]["fragment_index"] == fragment_index
        assert "SECRET" not in body.decode()


def test_errors(corpus, http_server, local_server):
    base = local_server.base_url
    html = http_server.add_html("page.html")
    mp4 = http_server.add("v.mp4", corpus["h264_faststart"])
    cases = [
        ([("url", html), ("i", 0)], 422),
        ([("url", http_server.url("missing.mp4")), ("i", 0)], 502),
        ([("url", "http://127.0.0.1:1/v.mp4"), ("i", 0)], 502),
        ([("url", mp4)], 400),
        ([("url", mp4), ("i", 0), ("t", 0.0)], 400),
        ([("url", mp4), ("i", 60)], 400),
        ([("url", mp4), ("t", "nan")], 400),
        ([("url", mp4)] + [("i", 1)] * 300, 413),
        ([("url", "file:///etc/passwd"), ("i", 0)], 403),
    ]
    for query, code in cases:
        status, headers, body = _get(base, "/v1/clip.mp4", query)
        assert status == code, (query, body)
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["status"] == code
    with BackgroundServer(make_app(allow_private=True, max_response_bytes=1000)) as small:
        status, _, _ = _get(small.base_url, "/v1/clip.mp4", [("url", mp4), ("i", 59)])
        assert status == 413


def test_ssrf_rules(corpus, http_server, caplog):
    mp4 = http_server.add("v.mp4", corpus["h264_faststart"])
    with BackgroundServer(make_app()) as strict:
        for url in (mp4, mp4.replace("127.0.0.1", "localhost"), "http://169.254.169.254/latest", "http://[::1]:9/x"):
            status, _, body = _get(strict.base_url, "/v1/index", [("url", url)])
            assert status == 403, body
        assert http_server.requests == []  # refused before any request
    # Redirects are checked on the address actually connected to.
    denied = http_server.add_redirect("to-denied.mp4", mp4.replace("127.0.0.1", "127.0.0.2"))
    with BackgroundServer(make_app(allow_private=True, deny_networks=("127.0.0.2/32",))) as server:
        status, _, body = _get(server.base_url, "/v1/index", [("url", denied)])
        assert status == 403, body
        assert json.loads(body)["error"] == "refused"
    # Host patterns apply to every hop.
    other = http_server.add_redirect("to-localhost.mp4", mp4.replace("127.0.0.1", "localhost"))
    with BackgroundServer(make_app(allow_private=True, allow_hosts=("127.0.0.1",))) as server:
        status, _, _ = _get(server.base_url, "/v1/index", [("url", mp4)])
        assert status == 200
        status, _, body = _get(server.base_url, "/v1/index", [("url", other)])
        assert status == 403, body


def test_no_secret_in_logs_or_replies(corpus, http_server, local_server, caplog):
    mp4 = http_server.add("v.mp4", corpus["h264_faststart"])
    caplog.set_level(logging.DEBUG)
    secret = "?X-Amz-Signature=TOPSECRET"
    for path, query in [
        ("/v1/clip.mp4", [("url", mp4 + secret), ("i", 3)]),
        ("/v1/index", [("url", mp4 + secret)]),
        ("/v1/index", [("url", http_server.url("nope.mp4") + secret)]),
    ]:
        _status, headers, body = _get(local_server.base_url, path, query)
        assert b"TOPSECRET" not in body or path == "/v1/clip.mp4"
        assert "TOPSECRET" not in json.dumps(headers)
    assert "TOPSECRET" not in caplog.text


def test_cli_serve_prints_address_first():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "videoloader.cli", "serve", "--allow-private"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("serving on http://127.0.0.1:")
        base = line.removeprefix("serving on ")
        with urllib.request.urlopen(base + "/v1/health", timeout=10) as r:
            assert json.loads(r.read()) == {"ok": True}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
