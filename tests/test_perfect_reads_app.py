"""The perfect-reads Modal app without credentials or network: constants, command, and the body run locally."""

from __future__ import annotations

import importlib
import io
import json
import socket
import urllib.error
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("modal")

import av  # noqa: E402

import modal_jobs.perfect_reads_app as job  # noqa: E402

ENV = (
    "VIDEOLOADER_MODAL_ALLOW_HOSTS",
    "VIDEOLOADER_MODAL_MAX_FRAMES",
    "VIDEOLOADER_MODAL_MAX_RESPONSE_BYTES",
    "VIDEOLOADER_MODAL_PROXY_AUTH",
)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_constants_and_command(monkeypatch):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    mod = importlib.reload(job)
    assert mod.app.name == "videoloader-perfect-reads"
    assert mod.PORT == 8000 and mod.ALLOW_HOSTS == () and mod.MAX_FRAMES == 256
    assert mod.REQUIRES_PROXY_AUTH is False
    import modal

    assert isinstance(mod.web, modal.Function)
    argv = mod.serve_command()
    assert argv[1:4] == ["-m", "videoloader.cli", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == "8000"
    assert "--allow-private" not in argv  # a public endpoint refuses private origins
    assert "torch" not in " ".join(mod.pip_requirements()) and mod.torch_requirement().startswith("torch")


def test_overrides_from_environment(monkeypatch):
    monkeypatch.setenv("VIDEOLOADER_MODAL_ALLOW_HOSTS", "*.example.com, cdn.example.org")
    monkeypatch.setenv("VIDEOLOADER_MODAL_MAX_FRAMES", "16")
    monkeypatch.setenv("VIDEOLOADER_MODAL_PROXY_AUTH", "1")
    try:
        mod = importlib.reload(job)
        assert mod.ALLOW_HOSTS == ("*.example.com", "cdn.example.org") and mod.REQUIRES_PROXY_AUTH is True
        argv = mod.serve_command()
        assert argv[argv.index("--max-frames") + 1] == "16"
        assert [argv[i + 1] for i, a in enumerate(argv) if a == "--allow-host"] == list(mod.ALLOW_HOSTS)
    finally:
        for var in ENV:
            monkeypatch.delenv(var, raising=False)
        importlib.reload(job)


@pytest.mark.filterwarnings("ignore:The web function is executing locally")
def test_web_body_starts_the_server_with_origin_rules(monkeypatch, corpus, http_server):
    # The endpoint's body, run here: it starts `videoloader serve` on PORT with the app's rules.
    monkeypatch.setattr(job, "PORT", _free_port())
    url = http_server.add("v.mp4", corpus["h264_faststart"])
    job.web.local()
    proc = job._servers.pop()
    try:
        base = f"http://127.0.0.1:{job.PORT}"
        status, _, body = _get(base + "/v1/health")
        assert status == 200 and json.loads(body) == {"ok": True}
        # A loopback origin is refused: the public endpoint never allows private addresses.
        status, _, body = _get(base + "/v1/index?" + urllib.parse.urlencode({"url": url}))
        assert status == 403 and json.loads(body)["error"] == "refused"
        assert http_server.requests == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_served_clip_decodes_to_the_requested_frames(corpus, http_server):
    # The same command, loopback and private origins allowed (local testing), serves exact clips.
    url = http_server.add("v.mp4", corpus["h264_bframes"])
    proc, base = job.start_server(job.serve_command(host="127.0.0.1", port=0) + ["--allow-private"])
    try:
        query = urllib.parse.urlencode([("url", url), ("i", 40), ("i", 7)])
        status, headers, body = _get(f"{base}/v1/clip.mp4?{query}")
        assert status == 200, body
        pts = json.loads(headers["X-Videoloader-Frames"])
        with av.open(io.BytesIO(body)) as c:
            st = c.streams.video[0]
            got = [round(float(f.pts * st.time_base), 6) for f in c.decode(video=0)]
        assert got == sorted(round(t, 6) for t in pts)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
