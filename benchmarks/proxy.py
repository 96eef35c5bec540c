"""The tracking proxy and the perfect-reads server, over a loopback origin.

    .venv/bin/python benchmarks/proxy.py --quick   # ~1-2 min: 10 s and 60 s 720p files
    .venv/bin/python benchmarks/proxy.py           # 60 s file for (a), 10-minute file for (b)

(a) Through the proxy vs directly, at each origin latency (0 and 50 ms): the
``ffmpeg`` CLI (``-ss T -i URL -frames:v 1``, one run per frame) and
torchcodec ``VideoDecoder(URL, seek_mode="exact" | "approximate")`` read 8
random frames of a 720p H.264 file served by tests/server.py's
LoopbackServer. Where ``ffmpeg`` is not installed, PyAV (``av.open(URL)``,
seek to the keyframe, decode to the frame: FFmpeg's own demuxer and HTTP
client) stands in and the rows say so; where torchcodec does not load, its
rows are skipped. For each run through the proxy: the origin's byte count
(what the server wrote) must equal the proxy's ``upstream_bytes``, and the
proxy's ``downstream_bytes`` is what the decoder read (compared with what the
same reader read directly).

(b) 8 random frames of a 10-minute 720p H.264 file (``--long-seconds``), read
by FFmpeg (PyAV, as above) two ways: the perfect-reads server's clip
(``GET /v1/clip.mp4?url=...&i=...``, decoded sequentially: exactly those
frames come out) vs the origin directly (seek + decode per frame). Bytes from
the origin and seconds, side by side, with the minimal bytes: the samples
from each frame's sync sample to it (the union over frames), our index's
plan. The clip's origin bytes are given cold (index read included) and warm
(index cached in the server). Target: warm origin bytes <= 1.10x minimal.

Prints one JSON line per measurement, then markdown tables; writes
benchmarks/results/proxy.json.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

import _common  # noqa: E402  (sets sys.path for videoloader and tests/)

TORCHCODEC_PROBLEM = _common.ensure_torchcodec_ffmpeg()  # may re-exec this script once

import av  # noqa: E402

from videoloader import VideoReader  # noqa: E402
from videoloader._plan import plan_frames  # noqa: E402
from videoloader.io import RangeSource  # noqa: E402
from videoloader.mp4 import load_index  # noqa: E402
from videoloader.proxy import TrackingProxy  # noqa: E402
from videoloader.serve import make_app  # noqa: E402
from videoloader.serve._thread import BackgroundServer  # noqa: E402

from server import LoopbackServer  # noqa: E402

FFMPEG = shutil.which("ffmpeg")
FFMPEG_READER = "ffmpeg_cli" if FFMPEG else "pyav (ffmpeg CLI not installed)"


def _recipe(seconds: float) -> dict[str, Any]:
    return _common.recipe("h264_720p", seconds)


def _pick(n: int, count: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False).tolist())


def _frame_times(path: Path, frames: list[int]) -> list[float]:
    with VideoReader(path) as r:
        return [float(t) for t in r.get_frames_at(frames).pts_seconds]


def read_ffmpeg(url: str, times: list[float]) -> int:
    """The frames shown at ``times``, read by FFmpeg from ``url``; returns how many came out."""
    if FFMPEG:
        for t in times:
            subprocess.run(
                [FFMPEG, "-nostdin", "-v", "error", "-ss", f"{t:.6f}", "-i", url, "-frames:v", "1", "-f", "null", "-"],
                check=True,
            )
        return len(times)
    got = 0
    with av.open(url) as c:
        st = c.streams.video[0]
        assert st.time_base is not None
        for t in times:
            c.seek(int(round(t / st.time_base)), stream=st, backward=True, any_frame=False)
            for frame in c.decode(st):
                if frame.pts is not None and float(frame.pts * st.time_base) >= t - 1e-6:
                    got += 1
                    break
    return got


def read_torchcodec(mode: Literal["exact", "approximate"]) -> Any:
    def run(url: str, frames: list[int]) -> int:
        from torchcodec.decoders import VideoDecoder

        d = VideoDecoder(url, seek_mode=mode, num_ffmpeg_threads=0)
        return int(d.get_frames_at(indices=frames).data.shape[0])

    return run


def _attempt(run: Any, url: str) -> tuple[int, str | None]:
    """``run(url)``'s frame count, or 0 and the reader's error (a peer's failure is a result, not a crash)."""
    try:
        return run(url), None
    except Exception as e:
        return 0, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def measure_a(path: Path, *, latencies_ms: list[float], frames: int, seed: int) -> list[dict[str, Any]]:
    """(a): each reader through the proxy and directly, at each latency."""
    with VideoReader(path) as r:
        n = len(r)
    idx = _pick(n, frames, seed)
    times = _frame_times(path, idx)
    readers: list[tuple[str, Any]] = [(FFMPEG_READER, lambda url: read_ffmpeg(url, times))]
    if TORCHCODEC_PROBLEM is None:
        readers += [
            (f"torchcodec_{m}", (lambda f: lambda url: f(url, idx))(read_torchcodec(m)))
            for m in ("exact", "approximate")
        ]
    else:
        print(f"torchcodec rows skipped: {TORCHCODEC_PROBLEM}", file=sys.stderr)
    rows = []
    for latency in latencies_ms:
        with LoopbackServer(latency_seconds=latency / 1000) as origin:
            url = origin.add(path.name, path)
            for name, run in readers:
                origin.reset_counts()
                t0 = time.perf_counter()
                got, error = _attempt(run, url)
                direct_s = time.perf_counter() - t0
                direct_bytes = origin.bytes_sent_for(path.name)
                direct_requests = len(origin.requests)
                origin.reset_counts()
                with TrackingProxy() as proxy:
                    purl = proxy.url_for(url)
                    t0 = time.perf_counter()
                    got_proxy, error_proxy = _attempt(run, purl)
                    proxy_s = time.perf_counter() - t0
                    proxy.usage(purl)  # waits for requests still in flight (a decoder that just hung up)
                    stats = proxy.stats()
                origin_bytes = origin.bytes_sent_for(path.name)
                row = {
                    "part": "a",
                    "reader": name,
                    "latency_ms": latency,
                    "frames": len(idx),
                    "frames_out": got,
                    "frames_out_proxy": got_proxy,
                    "direct_bytes": direct_bytes,
                    "direct_requests": direct_requests,
                    "direct_seconds": direct_s,
                    "origin_bytes_via_proxy": origin_bytes,
                    "proxy_upstream_bytes": stats["upstream_bytes"],
                    "proxy_downstream_bytes": stats["downstream_bytes"],
                    "proxy_wasted_bytes": stats["wasted_bytes"],
                    "proxy_requests": stats["num_requests"],
                    "proxy_upstream_requests": stats["upstream_requests"],
                    "proxy_seconds": proxy_s,
                    "upstream_equals_origin": stats["upstream_bytes"] == origin_bytes,
                    "error": error,
                    "error_proxy": error_proxy,
                }
                rows.append(_common.emit(row))
    return rows


def _minimal_bytes(path: Path, frames: list[int]) -> int:
    with RangeSource(str(path)) as s:
        index = load_index(s, cache=False)
    return int(plan_frames(index, frames).nbytes)


def _get_clip(base: str, url: str, frames: list[int]) -> tuple[bytes, dict[str, str]]:
    query = urllib.parse.urlencode([("url", url)] + [("i", f) for f in frames])
    with urllib.request.urlopen(f"{base}/v1/clip.mp4?{query}", timeout=600) as r:
        return r.read(), dict(r.headers)


def _decode_all(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as c:
        return len(list(c.decode(video=0)))


def measure_b(path: Path, *, latency_ms: float, frames: int, seed: int) -> dict[str, Any]:
    """(b): the perfect-reads clip vs FFmpeg on the origin, same random frames."""
    with VideoReader(path) as r:
        n = len(r)
    idx = _pick(n, frames, seed)
    times = _frame_times(path, idx)
    minimal = _minimal_bytes(path, idx)
    row: dict[str, Any] = {
        "part": "b",
        "file": path.name,
        "num_frames_in_file": n,
        "file_bytes": path.stat().st_size,
        "latency_ms": latency_ms,
        "frames": len(idx),
        "reader": FFMPEG_READER,
        "minimal_bytes": minimal,
    }
    with LoopbackServer(latency_seconds=latency_ms / 1000) as origin:
        url = origin.add(path.name, path)
        # FFmpeg on the origin directly.
        origin.reset_counts()
        t0 = time.perf_counter()
        row["direct_frames_out"] = read_ffmpeg(url, times)
        row["direct_seconds"] = time.perf_counter() - t0
        row["direct_origin_bytes"] = origin.bytes_sent_for(path.name)
        with BackgroundServer(make_app(allow_private=True)) as server:
            for label in ("cold", "warm"):
                origin.reset_counts()
                t0 = time.perf_counter()
                clip, headers = _get_clip(server.base_url, url, idx)
                got = _decode_all(clip)
                row[f"clip_{label}_seconds"] = time.perf_counter() - t0
                row[f"clip_{label}_origin_bytes"] = origin.bytes_sent_for(path.name)
                row[f"clip_{label}_header_upstream_bytes"] = int(headers["X-Videoloader-Upstream-Bytes"])
                row[f"clip_{label}_frames_out"] = got
                row["clip_bytes"] = len(clip)
    row["clip_warm_vs_minimal"] = row["clip_warm_origin_bytes"] / minimal
    row["clip_cold_vs_minimal"] = row["clip_cold_origin_bytes"] / minimal
    row["direct_vs_minimal"] = row["direct_origin_bytes"] / minimal
    row["target_met"] = row["clip_warm_vs_minimal"] <= 1.10
    return _common.emit(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 s file for (a), 60 s file for (b)")
    ap.add_argument("--seconds", type=float, default=None, help="length of the (a) file (default 60, quick 10)")
    ap.add_argument("--long-seconds", type=float, default=None, help="length of the (b) file (default 600, quick 60)")
    ap.add_argument("--frames", type=int, default=8, help="random frames per reader")
    ap.add_argument("--latencies-ms", type=float, nargs="+", default=[0.0, 50.0], help="origin latencies for (a)")
    ap.add_argument("--long-latency-ms", type=float, default=50.0, help="origin latency for (b)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    long_seconds = args.long_seconds or (60.0 if args.quick else 600.0)

    gen: dict[str, float] = {}
    short, gen["short"] = _common.media_path(f"proxy_h264_720p_{int(seconds)}s", **_recipe(seconds))
    long, gen["long"] = _common.media_path(f"proxy_h264_720p_{int(long_seconds)}s", **_recipe(long_seconds))
    rows_a = measure_a(short, latencies_ms=args.latencies_ms, frames=args.frames, seed=args.seed)
    row_b = measure_b(long, latency_ms=args.long_latency_ms, frames=args.frames, seed=args.seed + 1)

    print()
    print(f"(a) {args.frames} random frames of {short.name}, through the proxy vs directly")
    print(
        _common.markdown_table(
            rows_a,
            [
                "reader",
                "latency_ms",
                "frames_out_proxy",
                "direct_bytes",
                "proxy_downstream_bytes",
                "proxy_upstream_bytes",
                "origin_bytes_via_proxy",
                "upstream_equals_origin",
                "proxy_wasted_bytes",
                "proxy_requests",
                "direct_seconds",
                "proxy_seconds",
                "error",
                "error_proxy",
            ],
        )
    )
    print()
    print(f"(b) {row_b['frames']} random frames of {long.name} ({row_b['latency_ms']:.0f} ms origin latency)")
    table_b = [
        {
            "path": "perfect-reads clip, index cold",
            "origin_bytes": row_b["clip_cold_origin_bytes"],
            "x_minimal": row_b["clip_cold_vs_minimal"],
            "seconds": row_b["clip_cold_seconds"],
            "frames_out": row_b["clip_cold_frames_out"],
        },
        {
            "path": "perfect-reads clip, index cached",
            "origin_bytes": row_b["clip_warm_origin_bytes"],
            "x_minimal": row_b["clip_warm_vs_minimal"],
            "seconds": row_b["clip_warm_seconds"],
            "frames_out": row_b["clip_warm_frames_out"],
        },
        {
            "path": f"{FFMPEG_READER} on the origin",
            "origin_bytes": row_b["direct_origin_bytes"],
            "x_minimal": row_b["direct_vs_minimal"],
            "seconds": row_b["direct_seconds"],
            "frames_out": row_b["direct_frames_out"],
        },
        {"path": "minimal (samples sync -> frame)", "origin_bytes": row_b["minimal_bytes"], "x_minimal": 1.0},
    ]
    print(_common.markdown_table(table_b, ["path", "origin_bytes", "x_minimal", "seconds", "frames_out"]))
    print(f"target (cached index <= 1.10x minimal): {'met' if row_b['target_met'] else 'NOT met'}")
    out = _common.write_json(
        "proxy",
        {
            "args": vars(args),
            "device": _common.device_info(),
            "versions": _common.versions(),
            "ffmpeg_reader": FFMPEG_READER,
            "torchcodec": TORCHCODEC_PROBLEM or "ok",
            "media_generation_seconds": gen,
            "a": rows_a,
            "b": row_b,
            "table_b": table_b,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
