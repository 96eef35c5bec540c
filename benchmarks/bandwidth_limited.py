"""Bandwidth-limited random access: seconds per random frame at 50 ms and 100 Mbit/s per connection.

    .venv/bin/python benchmarks/bandwidth_limited.py --quick   # 60 s file, ~1 min
    .venv/bin/python benchmarks/bandwidth_limited.py           # 10 min file, ~3 min (+ generation once)

Loopback latency alone flatters every reader that fetches more than it needs:
on loopback a whole-file download costs nothing. Here the loopback server
(tests/server.LoopbackServer) adds ``--latency-ms`` before every reply and
paces every connection's body to ``--rate-mbps`` (a token bucket per
connection, ``rate_limit_bps``), as a remote object store would;
``--total-rate-mbps`` also caps all connections together (the client's own
link, ``total_rate_limit_bps``), which takes away the gain of concurrent
requests. The long
720p H.264 file of benchmarks/random_access.py (same recipe and cache,
benchmarks/results/media/ra_long_720p_<N>s.mp4; 10 minutes by default) is
read by, in one run:

* ``videoloader``: ``VideoReader(url, backend="cpu")``, frames by index;
* ``torchcodec_exact`` / ``torchcodec_approx``: torchcodec ``VideoDecoder``
  (``seek_mode="exact"`` / ``"approximate"``, ``num_ffmpeg_threads=0``) on an
  fsspec HTTP file object (``fsspec.filesystem("http").open(url)``, default
  5 MiB blocks);
* ``download_then_decode``: fetch the whole file over one connection (at the
  limited rate), then torchcodec ``VideoDecoder(path, seek_mode="exact")`` on
  the local copy (its open includes the download and exact mode's scan of the
  local file; the download alone is reported beside it).

Per reader (fresh reader, cold index cache), two numbers:

* open included: open, then ``--frames`` random frames in one batched call;
  (open + call) / frames. The per-video cost a dataset of many videos pays;
* steady state: on the same open reader, ``--frames`` further random frames,
  one call each; mean seconds per call (and the median call, less swayed by
  a busy machine). What a job waits per frame once the video is open (for
  download-then-decode: decoding a local file).

Every frame is checked against the frame number drawn into its pixels
(tests/media.read_frame_number). Body bytes and requests are the server's
counts. The reader order rotates every repeat; medians of the repeats are
reported.

Prints one JSON line per measurement, then a markdown table; writes
benchmarks/results/bandwidth_limited.json and bandwidth_limited.png (the chart
is skipped, with a message, when matplotlib is missing).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (sets sys.path for videoloader and tests/)

TORCHCODEC_PROBLEM = _common.ensure_torchcodec_ffmpeg()  # may re-exec this script once

import numpy as np  # noqa: E402
from bandwidth import Meter  # noqa: E402

from videoloader._errors import MissingDependencyError  # noqa: E402
from videoloader._optional import require  # noqa: E402

READERS = ["videoloader", "torchcodec_exact", "torchcodec_approx", "download_then_decode"]
COLOURS = {
    "videoloader": "#d62728",
    "torchcodec_exact": "#1f77b4",
    "torchcodec_approx": "#aec7e8",
    "download_then_decode": "#7f7f7f",
}


def long_recipe(seconds: float) -> dict[str, Any]:
    """The long 720p file of benchmarks/random_access.py (same recipe, so the cache is shared)."""
    return _common.recipe("h264_720p_long", seconds)


# --------------------------------------------------------------------------- readers
#
# Each reader is a class with open(), batch(indices) and one(index); frames come back
# as lists of (H, W, 3) uint8 arrays.


def _hwc(x: Any) -> list[np.ndarray]:
    """Any frame batch (torch NCHW / NHWC, numpy) -> list of (H, W, 3) uint8 arrays."""
    import torch

    if isinstance(x, torch.Tensor):
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.shape[1] == 3:
            x = x.permute(0, 2, 3, 1)
        return [np.ascontiguousarray(f) for f in x.numpy()]
    return [np.asarray(f) for f in x]


class Reader:
    """One reader under test; ``open`` sets ``decoder``, anything with torchcodec's
    ``get_frames_at(indices)`` and ``get_frame_at(index)``."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.info: dict[str, Any] = {}
        """Extra measurements of the open, added to the run's record."""
        self.decoder: Any = None

    def open(self) -> None:
        raise NotImplementedError

    def batch(self, indices: list[int]) -> list[np.ndarray]:
        return _hwc(self.decoder.get_frames_at(indices).data)

    def one(self, index: int) -> list[np.ndarray]:
        return _hwc(self.decoder.get_frame_at(index).data)

    def close(self) -> None:
        pass


class VideoloaderReader(Reader):
    name = "videoloader"

    def open(self) -> None:
        import videoloader
        from videoloader.mp4._cache import default_index_cache

        default_index_cache.clear()  # cold open every time: peers have no index cache either
        self.decoder = videoloader.VideoReader(self.url, backend="cpu")

    def close(self) -> None:
        self.decoder.close()


class TorchcodecReader(Reader):
    """torchcodec on an fsspec HTTP file object (the way its docs read a URL through Python)."""

    def __init__(self, url: str, mode: str) -> None:
        super().__init__(url)
        self.mode = mode
        self.name = "torchcodec_exact" if mode == "exact" else "torchcodec_approx"

    def open(self) -> None:
        import fsspec

        tc = require("torchcodec.decoders", purpose="the torchcodec comparison")
        self.fobj = fsspec.filesystem("http", skip_instance_cache=True).open(self.url, "rb")
        self.decoder = tc.VideoDecoder(self.fobj, seek_mode=self.mode, num_ffmpeg_threads=0)

    def close(self) -> None:
        del self.decoder
        self.fobj.close()


class DownloadReader(Reader):
    """Fetch the whole file over one connection, then torchcodec exact on the local copy."""

    name = "download_then_decode"

    def open(self) -> None:
        tc = require("torchcodec.decoders", purpose="the download-then-decode comparison")
        self.tmp = tempfile.TemporaryDirectory(prefix="vl-bwlimit-")
        path = Path(self.tmp.name) / "video.mp4"
        t0 = time.perf_counter()
        with urllib.request.urlopen(self.url, timeout=600) as resp, open(path, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
        self.info["download_s"] = time.perf_counter() - t0
        self.decoder = tc.VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=0)

    def close(self) -> None:
        del self.decoder
        self.tmp.cleanup()


FACTORIES: dict[str, Callable[[str], Reader]] = {
    "videoloader": VideoloaderReader,
    "torchcodec_exact": lambda url: TorchcodecReader(url, "exact"),
    "torchcodec_approx": lambda url: TorchcodecReader(url, "approximate"),
    "download_then_decode": DownloadReader,
}


# --------------------------------------------------------------------------- one run


def _wrong(frames: list[np.ndarray], indices: list[int]) -> list[int]:
    import media

    return [f for f, x in zip(indices, frames, strict=True) if media.read_frame_number(x) != f]


def run_reader(server: Any, name: str, served: str, batch_idx: list[int], steady_idx: list[int]) -> dict[str, Any]:
    """Open + one batched call, then one call per frame; times, server counts and wrong frames."""
    meter = Meter(server, served)
    reader = FACTORIES[name](server.url(served))
    before = meter.read()
    t0 = time.perf_counter()
    reader.open()
    t_open = time.perf_counter() - t0
    frames = reader.batch(batch_idx)
    t_batch = time.perf_counter() - t0 - t_open
    opened = meter.delta(before)
    wrong = _wrong(frames, batch_idx)
    before = meter.read()
    steady: list[float] = []
    for i in steady_idx:
        t1 = time.perf_counter()
        frame = reader.one(i)
        steady.append(time.perf_counter() - t1)
        wrong += _wrong(frame, [i])
    after = meter.delta(before)
    reader.close()
    return {
        "reader": name,
        "open_s": t_open,
        "batch_s": t_batch,
        "open_batch_s_per_frame": (t_open + t_batch) / len(batch_idx),
        "steady_s": steady,
        "steady_s_per_frame": statistics.fmean(steady),
        "steady_median_s": statistics.median(steady),
        "open_bytes": opened["bytes"],
        "open_requests": opened["requests"],
        "steady_bytes": after["bytes"],
        "steady_requests": after["requests"],
        "wrong": wrong,
        **reader.info,
    }


def bench(
    path: Path,
    readers: list[str],
    *,
    latency_ms: float,
    rate_mbps: float,
    total_rate_mbps: float = 0.0,
    frames: int,
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    from server import LoopbackServer

    data = path.read_bytes()
    num_frames = _count_frames(path)
    rng = np.random.default_rng(seed)
    rate = rate_mbps * 1e6 if rate_mbps > 0 else None
    total = total_rate_mbps * 1e6 if total_rate_mbps > 0 else None
    runs: list[dict[str, Any]] = []
    with LoopbackServer(latency_seconds=latency_ms / 1000, rate_limit_bps=rate, total_rate_limit_bps=total) as server:
        server.add("long.mp4", data)
        urllib.request.urlopen(urllib.request.Request(server.url("long.mp4"), method="HEAD"), timeout=60).close()
        for rep in range(repeats):
            picks = rng.choice(num_frames, size=2 * frames, replace=False).tolist()
            batch_idx, steady_idx = sorted(picks[:frames]), picks[frames:]
            order = readers[rep % len(readers) :] + readers[: rep % len(readers)]
            for name in order:
                try:
                    r = run_reader(server, name, "long.mp4", batch_idx, steady_idx)
                except Exception as e:  # a peer failing is a result, not a crash
                    r = {"reader": name, "error": f"{type(e).__name__}: {str(e)[:300]}"}
                r.update(repeat=rep, batch_indices=batch_idx, steady_indices=steady_idx)
                runs.append(r)
                _common.emit(
                    dict(
                        bench="bandwidth_limited",
                        latency_ms=latency_ms,
                        rate_mbps=rate_mbps,
                        total_rate_mbps=total_rate_mbps,
                        file_bytes=len(data),
                        **{k: v for k, v in r.items() if not k.endswith("_indices")},
                    )
                )
    return runs


def _count_frames(path: Path) -> int:
    import videoloader

    with videoloader.VideoReader(path, backend="cpu") as r:
        return len(r)


def summarise(runs: list[dict[str, Any]], readers: list[str], file_bytes: int, rate_mbps: float) -> list[dict]:
    rows = []
    for name in readers:
        ok = [r for r in runs if r["reader"] == name and "error" not in r]
        errors = [r["error"] for r in runs if r["reader"] == name and "error" in r]
        if not ok:
            rows.append({"reader": name, "runs": 0, "error": "; ".join(errors) or "not run"})
            continue

        def med(key: str, ok: list[dict[str, Any]] = ok) -> float:
            return statistics.median(r[key] for r in ok)

        total_bytes = med("open_bytes") + med("steady_bytes")
        rows.append(
            {
                "reader": name,
                "runs": len(ok),
                "failed runs": len(errors),
                "open s": med("open_s"),
                "of which download s": med("download_s") if "download_s" in ok[0] else None,
                "s/frame, open included": med("open_batch_s_per_frame"),
                "s/frame, steady": med("steady_s_per_frame"),
                "steady, median call s": med("steady_median_s"),
                "open+batch MB": med("open_bytes") / 1e6,
                "open+batch requests": med("open_requests"),
                "steady MB/frame": med("steady_bytes") / max(len(ok[0]["steady_s"]), 1) / 1e6,
                "bytes / file": total_bytes / file_bytes,
                "wrong frames": sum(len(r["wrong"]) for r in ok),
                "error": "; ".join(errors),
            }
        )
    floor = file_bytes * 8 / (rate_mbps * 1e6) if rate_mbps > 0 else 0.0
    for row in rows:
        row["transfer floor of the whole file s"] = floor
    return rows


COLUMNS = [
    "reader",
    "s/frame, open included",
    "s/frame, steady",
    "steady, median call s",
    "open s",
    "of which download s",
    "open+batch MB",
    "open+batch requests",
    "steady MB/frame",
    "bytes / file",
    "wrong frames",
    "runs",
    "error",
]


def chart(rows: list[dict], path: Path, title: str) -> bool:
    """Draw the chart; False (with a message) when matplotlib is missing."""
    try:
        require("matplotlib", purpose="the benchmark chart").use("Agg")
        plt = require("matplotlib.pyplot", purpose="the benchmark chart")
    except MissingDependencyError as e:
        print(f"# chart skipped: {e}", file=sys.stderr)
        return False
    ok = [r for r in rows if r.get("runs")]
    fig, ax = plt.subplots(figsize=(9, 5))
    x = np.arange(2)
    width = 0.8 / max(len(ok), 1)
    for k, r in enumerate(ok):
        vals = [r["s/frame, open included"], r["s/frame, steady"]]
        bars = ax.bar(
            x + (k - (len(ok) - 1) / 2) * width,
            vals,
            width,
            label=r["reader"]
            + (" (steady: a local file)" if r["reader"] == "download_then_decode" else "")
            + (" (wrong frames!)" if r["wrong frames"] else ""),
            color=COLOURS.get(r["reader"], "#999999"),
            edgecolor="black" if r["reader"] == "videoloader" else "none",
            linewidth=0.8,
        )
        for b, v in zip(bars, vals, strict=True):
            ax.annotate(
                f"{v:.3f}" if v < 1 else f"{v:.2f}",
                (b.get_x() + b.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 1),
                textcoords="offset points",
            )
    ax.set_yscale("log")
    ax.set_xticks(
        x, ["open + random frames, one call\n(s per frame)", "steady state, one call per frame\n(s per frame)"]
    )
    ax.set_ylabel("seconds per random frame (log; lower is better)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="the 60 s file instead of 10 minutes")
    ap.add_argument("--long-seconds", type=float, default=None, help="video length (default 600, quick 60)")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="server latency before every reply")
    ap.add_argument("--rate-mbps", type=float, default=100.0, help="per-connection cap in Mbit/s (0: none)")
    ap.add_argument(
        "--total-rate-mbps", type=float, default=0.0, help="cap on all connections together in Mbit/s (0: none)"
    )
    ap.add_argument("--frames", type=int, default=8, help="random frames per phase (batched, then one by one)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per reader (order rotated; medians reported)")
    ap.add_argument("--readers", nargs="*", default=None, help=f"subset of {READERS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generate-only", action="store_true", help="make the media file and stop")
    ap.add_argument("--out", default="bandwidth_limited", help="results/<out>.json and .png")
    args = ap.parse_args(argv)
    long_seconds = args.long_seconds or (60.0 if args.quick else 600.0)

    readers = args.readers or READERS
    unknown = sorted(set(readers) - set(READERS))
    if unknown:
        ap.error(f"unknown readers {unknown}; choose from {READERS}")
    if TORCHCODEC_PROBLEM:
        print(f"# torchcodec unavailable, its rows are skipped: {TORCHCODEC_PROBLEM}", file=sys.stderr)
        readers = [r for r in readers if r == "videoloader"]

    path, gen_s = _common.media_path(f"ra_long_720p_{long_seconds:g}s", **long_recipe(long_seconds))
    print(f"# {path.name}: {path.stat().st_size:,} bytes (generated in {gen_s:.0f} s)", file=sys.stderr)
    if args.generate_only:
        return 0
    t0 = time.perf_counter()
    runs = bench(
        path,
        readers,
        latency_ms=args.latency_ms,
        rate_mbps=args.rate_mbps,
        total_rate_mbps=args.total_rate_mbps,
        frames=args.frames,
        repeats=args.repeats,
        seed=args.seed,
    )
    bench_s = time.perf_counter() - t0
    file_bytes = path.stat().st_size
    one_connection_mbps = min([r for r in (args.rate_mbps, args.total_rate_mbps) if r > 0], default=0.0)
    rows = summarise(runs, readers, file_bytes, one_connection_mbps)
    link = f"{args.rate_mbps:g} Mbit/s per connection" if args.rate_mbps > 0 else "no per-connection limit"
    if args.total_rate_mbps > 0:
        link += f", {args.total_rate_mbps:g} Mbit/s in all"
    head = (
        f"{long_seconds:g} s 720p H.264 ({file_bytes / 1e6:.0f} MB), {args.latency_ms:g} ms latency, {link}, "
        f"{args.frames} + {args.frames} random frames, median of {args.repeats}"
    )
    print()
    print(f"## bandwidth-limited random access ({head})")
    print()
    print(_common.markdown_table(rows, COLUMNS))
    if one_connection_mbps > 0:
        floor = rows[0]["transfer floor of the whole file s"]
        print()
        print(f"Transferring the whole file over one connection ({link}) takes >= {floor:.1f} s.")
    vl = next((r for r in rows if r["reader"] == "videoloader" and r.get("runs")), None)
    verdict: dict[str, Any] = {}
    if vl is not None:
        for r in rows:
            if r["reader"] != "videoloader" and r.get("runs"):
                verdict[f"{r['reader']} / videoloader, open included"] = (
                    r["s/frame, open included"] / vl["s/frame, open included"]
                )
                verdict[f"{r['reader']} / videoloader, steady"] = r["s/frame, steady"] / vl["s/frame, steady"]
    print()
    for k, v in verdict.items():
        print(f"- {k}: {v:.2f}x")
    png = _common.RESULTS / f"{args.out}.png"
    drawn = chart(rows, png, f"Random frames over HTTP (loopback server)\n{head}")
    payload = {
        "args": vars(args),
        "long_seconds": long_seconds,
        "file": path.name,
        "file_bytes": file_bytes,
        "generation_seconds": gen_s,
        "bench_seconds": bench_s,
        "torchcodec_problem": TORCHCODEC_PROBLEM,
        "device": _common.device_info(),
        "versions": _common.versions(),
        "summary": rows,
        "verdict": verdict,
        "runs": runs,
    }
    out = _common.write_json(args.out, payload)
    print(f"\nwrote {out}" + (f" and {png}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
