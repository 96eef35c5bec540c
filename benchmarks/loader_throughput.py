"""Loader throughput: 8-frame clips per second through DataLoader and torchdata.nodes.

Serves synthetic H.264 720p videos (tests/media.make_video) from the loopback
HTTP server (tests/server.LoopbackServer, in a child process so that its CPU,
GIL and memory stay out of the loader's numbers) with 0 and 50 ms of injected
latency per request, and loads ``RandomClip(8)`` samples scaled to 224 x 224
through:

- ``DataLoader(num_workers=0)``
- ``DataLoader(num_workers=2)`` (fork)
- ``make_node_loader(num_threads=8)`` (one process, a thread pool)

It reports clips/s (from the first batch to the last: worker start-up and
video generation excluded; the median of ``--repeats`` runs, 0 ms and 50 ms
alternating, because other programs' load on a shared 2-core machine moves
single runs by 2x), the CPU time per clip (which that load hardly moves),
the 50 ms / 0 ms ratio (target >= 0.8), bytes per
clip, the peak RSS of each loading process, and the RSS growth of the worst
process from 10 % of the samples to the end (target < 50 MB; run with
``--samples 2000`` for the full check).

Prints a Markdown table; writes JSON to ``benchmarks/results/loader_throughput.json``.

    .venv/bin/python benchmarks/loader_throughput.py                 # quick: 200 samples per run
    .venv/bin/python benchmarks/loader_throughput.py --repeats 3     # steadier clips/s on a busy machine
    .venv/bin/python benchmarks/loader_throughput.py --samples 2000 --latency-ms 0  # the RSS-growth check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from tests.media import make_video  # noqa: E402
from tests.server import LoopbackServer  # noqa: E402
from videoloader._optional import require  # noqa: E402
from videoloader.data import RandomClip, VideoFrameDataset, make_node_loader  # noqa: E402

psutil = require("psutil", purpose="loader_throughput (memory sampling)")

MB = 1024 * 1024


def make_videos(directory: Path, count: int, num_frames: int, gop: int) -> list[Path]:
    paths = []
    for k in range(count):
        path = directory / f"bench_720p_{k}_{num_frames}f_gop{gop}.mp4"
        if not path.exists():
            t = time.perf_counter()
            make_video(
                path,
                codec="h264",
                width=1280,
                height=720,
                num_frames=num_frames,
                fps=30,
                gop=gop,
                movflags="faststart",
                preset="ultrafast",
                seed=k,
            )
            print(
                f"# made {path.name} ({path.stat().st_size / MB:.1f} MB) in {time.perf_counter() - t:.1f} s",
                file=sys.stderr,
            )
        paths.append(path)
    return paths


def _serve(conn, paths: list[Path]) -> None:
    """The loopback server in its own process: its CPU, GIL and memory stay out of the loader's numbers."""
    with LoopbackServer() as server:
        conn.send([server.add(p.name, p) for p in paths])
        while True:
            cmd, arg = conn.recv()
            if cmd == "latency":
                server.latency_seconds = arg
                conn.send(None)
            elif cmd == "reset":
                server.reset_counts()
                conn.send(None)
            elif cmd == "bytes_sent":
                conn.send(server.bytes_sent)
            else:
                conn.send(None)
                return


class ServerProcess:
    """Talks to ``_serve`` in a child process."""

    def __init__(self, paths: list[Path]) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, paths), daemon=True)
        self._proc.start()
        self.urls = self._conn.recv()

    def call(self, cmd: str, arg: object = None) -> object:
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def close(self) -> None:
        self.call("stop")
        self._proc.join(10)


class RssProbe:
    """RSS of this process and its children (DataLoader workers), sampled after each batch."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.points: list[tuple[int, dict[int, int]]] = []  # (samples done, {pid: rss})
        self.cpu: list[tuple[int, float]] = []  # (samples done, CPU seconds so far)

    def sample(self, done: int) -> None:
        rss, cpu = {}, 0.0
        for p in [self.me, *self.me.children(recursive=True)]:
            try:
                rss[p.pid] = p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system
            except psutil.Error:
                pass
        self.points.append((done, rss))
        self.cpu.append((done, cpu))

    def cpu_ms_per_clip(self) -> float | None:
        """CPU seconds (all loading processes) per clip between the first and last batch:
        a cost that machine load from other programs does not change much."""
        if len(self.cpu) < 2 or self.cpu[-1][0] == self.cpu[0][0]:
            return None
        (d0, c0), (d1, c1) = self.cpu[0], self.cpu[-1]
        return round(1000 * (c1 - c0) / (d1 - d0), 1)

    def summary(self, total: int, workers: bool) -> dict:
        me = self.me.pid
        pids = {pid for _, r in self.points for pid in r if (pid != me) == workers}
        if not pids:
            return {"peak_rss_mb": None, "rss_growth_mb": None}
        peak = {pid: max(r.get(pid, 0) for _, r in self.points) for pid in pids}
        warm = [r for done, r in self.points if done >= 0.1 * total]
        first, last = (warm[0], warm[-1]) if warm else (self.points[0][1], self.points[-1][1])
        growth = max((last.get(pid, 0) - first.get(pid, 0)) for pid in pids if pid in first and pid in last)
        # The worst process's RSS at each quarter of the run: a plateau or a slope?
        worst = max(pids, key=lambda pid: last.get(pid, 0) - first.get(pid, 0) if pid in first else -1)
        quarters = []
        for q in (0.1, 0.25, 0.5, 0.75, 1.0):
            at = [r for done, r in self.points if done >= q * total] or [self.points[-1][1]]
            quarters.append(round(at[0].get(worst, 0) / MB, 1))
        return {
            "peak_rss_mb": round(max(peak.values()) / MB, 1),
            "rss_growth_mb": round(growth / MB, 1),
            "rss_mb_at_10_25_50_75_100pct": quarters,
        }


def run_one(mode: str, dataset: VideoFrameDataset, *, batch_size: int, threads: int, seed: int) -> dict:
    n = len(dataset)
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, generator=g)
    if mode == "workers0":
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)
    elif mode == "workers2":
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=2,
            multiprocessing_context="fork",
            prefetch_factor=2,
        )
    elif mode == "threads":
        loader = make_node_loader(dataset, batch_size=batch_size, num_threads=threads, sampler=sampler)
    else:
        raise ValueError(mode)
    probe = RssProbe()
    done = 0
    start = None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
            first = len(batch["index"])
        done += len(batch["index"])
        assert batch["frames"].shape[1:] == (8, 3, 224, 224), batch["frames"].shape
        probe.sample(done)
    elapsed = time.perf_counter() - start
    # Clips after the first batch over the time since it arrived.
    rate = (done - first) / elapsed if elapsed > 0 else float("nan")
    out = {"mode": mode, "samples": done, "clips_per_second": round(rate, 2), "seconds": round(elapsed, 2)}
    out["cpu_ms_per_clip"] = probe.cpu_ms_per_clip()
    out.update(probe.summary(n, workers=mode == "workers2"))
    del loader
    dataset.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200, help="clips per run (use 2000 for the RSS check)")
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    ap.add_argument("--modes", nargs="+", default=["workers0", "workers2", "threads"])
    ap.add_argument("--threads", type=int, default=8, help="threads of the torchdata.nodes pipeline")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--concurrent-samples",
        type=int,
        default=None,
        help="VideoFrameDataset(max_concurrent_samples=...) (default: the dataset's)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="runs per configuration (median reported)")
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300, help="frames per video (30 fps)")
    ap.add_argument("--gop", type=int, default=30)
    ap.add_argument("--media-dir", type=Path, default=Path(tempfile.gettempdir()) / "videoloader-bench-media")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "loader_throughput.json")
    args = ap.parse_args(argv)

    args.media_dir.mkdir(parents=True, exist_ok=True)
    paths = make_videos(args.media_dir, args.videos, args.frames, args.gop)
    runs = []
    server = ServerProcess(paths)  # before any loader thread exists (fork)
    try:
        urls = server.urls
        sources = [urls[i % len(urls)] for i in range(args.samples)]
        extra = {} if args.concurrent_samples is None else {"max_concurrent_samples": args.concurrent_samples}
        # Each mode at every latency back to back (and alternating when repeated), so that
        # load from other programs on the machine hurts the 50 ms / 0 ms ratio least.
        for mode in args.modes:
            for _ in range(args.repeats):
                for latency_ms in args.latency_ms:
                    server.call("latency", latency_ms / 1000)
                    server.call("reset")
                    ds = VideoFrameDataset(sources, RandomClip(8), output_size=(224, 224), seed=0, **extra)
                    load_before = os.getloadavg()[0]
                    r = run_one(mode, ds, batch_size=args.batch_size, threads=args.threads, seed=0)
                    r["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                    r["latency_ms"] = latency_ms
                    r["mb_per_clip"] = round(server.call("bytes_sent") / max(r["samples"], 1) / MB, 3)
                    runs.append(r)
                    print(f"# {json.dumps(r)}", file=sys.stderr)
    finally:
        server.close()

    results = []
    for mode in args.modes:
        for latency_ms in args.latency_ms:
            rs = [r for r in runs if r["mode"] == mode and r["latency_ms"] == latency_ms]
            results.append(
                {
                    "mode": mode,
                    "latency_ms": latency_ms,
                    "clips_per_second": round(statistics.median(r["clips_per_second"] for r in rs), 2),
                    "clips_per_second_runs": [r["clips_per_second"] for r in rs],
                    "cpu_ms_per_clip": round(statistics.median(r["cpu_ms_per_clip"] or 0 for r in rs), 1),
                    "mb_per_clip": rs[-1]["mb_per_clip"],
                    "peak_rss_mb": max(r["peak_rss_mb"] or 0 for r in rs),
                    "rss_growth_mb": max(r["rss_growth_mb"] or 0 for r in rs),
                    "samples": rs[-1]["samples"],
                    "load_average": [min(r["load_average"][0] for r in rs), max(r["load_average"][1] for r in rs)],
                }
            )
    base = {r["mode"]: r["clips_per_second"] for r in results if r["latency_ms"] == 0}
    for r in results:
        b = base.get(r["mode"])
        r["vs_0ms"] = round(r["clips_per_second"] / b, 3) if b else None

    env = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "videos": f"{args.videos} x H.264 1280x720 {args.frames} frames 30 fps gop {args.gop} (x264 ultrafast)",
        "clip": "RandomClip(8), output_size=(224, 224)",
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
    }
    print(
        f"\nLoader throughput ({env['videos']}; {env['clip']}; batch {args.batch_size}; {env['cpus']} CPUs; "
        f"median of {args.repeats} run(s) of {args.samples} clips)\n"
    )
    print(
        "| loader | latency | clips/s | vs 0 ms | runs (clips/s) | MB/clip | CPU ms/clip | peak RSS/proc (MB) | RSS growth (MB) | load avg |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    names = {
        "workers0": "DataLoader, 0 workers",
        "workers2": "DataLoader, 2 workers (fork)",
        "threads": f"nodes, {args.threads} threads",
    }
    for r in results:
        print(
            f"| {names[r['mode']]} | {r['latency_ms']:.0f} ms | {r['clips_per_second']:.1f} | "
            f"{r['vs_0ms'] if r['vs_0ms'] is not None else '-'} | {', '.join(f'{x:.1f}' for x in r['clips_per_second_runs'])} | "
            f"{r['mb_per_clip']} | {r['cpu_ms_per_clip']} | {r['peak_rss_mb']} | "
            f"{r['rss_growth_mb']} | {r['load_average'][0]}-{r['load_average'][1]} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "results": results, "runs": runs}, indent=2))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
