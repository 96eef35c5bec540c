"""Loader throughput: 8-frame clips per second through DataLoader and torchdata.nodes.

Serves synthetic H.264 720p videos (tests/media.make_video, cached in
benchmarks/results/media) from the loopback HTTP server
(tests/server.LoopbackServer, in a child process so that its CPU, GIL and
memory stay out of the loader's numbers) with 0 and 50 ms of injected latency
per request, and loads ``RandomClip(8)`` samples scaled to 224 x 224 through:

- ``DataLoader(num_workers=0)``
- ``DataLoader(num_workers=2)`` (fork)
- ``make_node_loader(num_threads=8)`` (one process, a thread pool)

and, in the same run, peers loading the same items (``RandomClip(8)`` from
the same per-item seeds, 224 x 224, same batch and ``RandomSampler``) through
a plain torch ``Dataset`` and ``DataLoader`` (``--peer-modes``, default
``num_workers=0``) over the same server:

- torchcodec ``VideoDecoder(seek_mode="exact" | "approximate",
  transforms=[Resize((224, 224))])`` on an fsspec HTTP file object
  (``HTTPFileSystem().open(url, "rb")``, default 5 MiB blocks);
- decord2 ``VideoReader(url, width=224, height=224)`` on the URL (its FFmpeg's
  HTTP reader), or on an fsspec file object (it reads the whole object
  first) when it cannot open the URL.

Every run (library, loader, latency, repeat) gets its own URLs: fresh aliases
of the generated files on the server, so that no reader, index cache or
read-ahead of any library carries over from one run to the next. Each peer
keeps one open decoder per URL and loading thread (its best case: exact
mode's whole-file scan, fsspec's read-ahead and decord's index are paid once
per URL, not per clip). A peer that is not installed or cannot read the
source is skipped with the reason printed; a run that fails is listed
after the tables. Every run and peer probe runs in its own process, forked
from the script's (which never loads a decoder): nothing of an earlier run is
left in it and its peak RSS is its own. Our rows get ``vs best peer``: clips/s and bytes over those of the peer with the most
clips/s at the same loader, latency and clips per video (target >= 2x the
clips/s at 50 ms with <= 1/10 of its bytes).

Clips per video. By default the ``--samples`` items of a run are spread over
``--videos`` URLs (100 clips per video with the defaults), so a peer's
per-file cost is spread over many clips. A training job over a large corpus
reads each video a few times per epoch: ``--clips-per-video K [K ...]`` runs
every configuration once per K with ``--samples // K`` URLs (each an alias of
one of the ``--videos`` files) and K items per URL, so every URL gets exactly
K clips, at random places in the epoch (``RandomSampler``).

It reports clips/s (from the first batch to the last: worker start-up and
video generation excluded; the median of ``--repeats`` runs, 0 ms and 50 ms
alternating, because other programs' load on a shared 2-core machine moves
single runs by 2x), the CPU time per clip (which that load hardly moves),
the 50 ms / 0 ms ratio (target >= 0.85 for every loader), bytes per
clip, the peak RSS of each loading process, and the RSS growth of the worst
process from 10 % of the samples to the end (target < 50 MB; run with
``--samples 2000`` for the full check).

Prints a Markdown table (and, with ``--clips-per-video``, one row per K of
ours against the peers); writes JSON to ``benchmarks/results/<--out>.json``
(default ``loader_throughput``; a value ending in ``.json`` is a file path).

    .venv/bin/python benchmarks/loader_throughput.py                 # quick: 200 samples per run
    .venv/bin/python benchmarks/loader_throughput.py --repeats 3     # steadier clips/s on a busy machine
    .venv/bin/python benchmarks/loader_throughput.py --samples 2000 --latency-ms 0  # the RSS-growth check
    .venv/bin/python benchmarks/loader_throughput.py --peers --modes workers0  # ours only, no peer rows
    # a training epoch: 60 s 720p files (GOP 2 s, B-frames), 1, 4 and 16 clips per video, at 50 ms
    .venv/bin/python benchmarks/loader_throughput.py --frames 1800 --gop 60 --preset veryfast --bframes 3 \\
        --clips-per-video 1 4 16 --samples 64 --modes workers0 --latency-ms 50 --out loader_epoch
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from videoloader._optional import require  # noqa: E402
from videoloader.data import RandomClip, VideoFrameDataset, make_node_loader  # noqa: E402

import _common  # noqa: E402  (sets sys.path for videoloader and tests/)
from server import LoopbackServer  # noqa: E402

psutil = require("psutil", purpose="loader_throughput (memory sampling)")

MB = 1024 * 1024


def make_videos(count: int, num_frames: int, gop: int, preset: str, bframes: int) -> list[Path]:
    """``count`` distinct 720p H.264 files (noise seeds 0..count-1), made once and cached."""
    paths = []
    for k in range(count):
        path, seconds = _common.media_path(
            f"lt_h264_720p_{num_frames}f_gop{gop}_{preset}_b{bframes}_s{k}",
            codec="h264",
            width=1280,
            height=720,
            num_frames=num_frames,
            fps=30,
            gop=gop,
            bframes=bframes,
            movflags="faststart",
            preset=preset,
            seed=k,
        )
        if seconds:
            print(f"# made {path.name} ({path.stat().st_size / MB:.1f} MB) in {seconds:.1f} s", file=sys.stderr)
        paths.append(path)
    return paths


def _serve(conn: Any, paths: list[Path]) -> None:
    """The loopback server in its own process: its CPU, GIL and memory stay out of the loader's numbers."""
    data = [p.read_bytes() for p in paths]  # read once: every alias serves the same bytes object
    with LoopbackServer() as server:
        conn.send(None)
        while True:
            cmd, arg = conn.recv()
            if cmd == "urls":
                run, count = arg
                names = [f"r{run}_{j}_{paths[j % len(paths)].name}" for j in range(count)]
                conn.send([server.add(name, data[j % len(paths)]) for j, name in enumerate(names)])
            elif cmd == "latency":
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
        self._conn.recv()

    def call(self, cmd: str, arg: object = None) -> Any:
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def urls(self, run: object, count: int) -> list[str]:
        """``count`` new URLs (``run`` names them), aliases of the files in turn: nothing cached for them yet."""
        return list(self.call("urls", (run, count)))

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


PEERS = ("torchcodec_exact", "torchcodec_approx", "decord")
SIZE = (224, 224)


class _PeerVideo:
    """What ``RandomClip`` needs from a video, from a peer's frame count and rate (constant rate)."""

    def __init__(self, url: str, num_frames: int, fps: float) -> None:
        self.url = url
        self.starts = np.arange(num_frames, dtype=np.float64) / fps
        self.metadata = type(
            "Meta", (), {"num_frames": num_frames, "begin_stream_seconds": 0.0, "duration_seconds": num_frames / fps}
        )()

    def frame_indices_played_at(self, seconds: Any) -> list[int]:
        idx = np.searchsorted(self.starts, np.asarray(seconds, dtype=np.float64), side="right") - 1
        if (idx < 0).any() or (idx >= len(self.starts)).any():
            raise IndexError(f"{seconds} outside the video")
        return [int(i) for i in idx]


class PeerDataset(torch.utils.data.Dataset):
    """The benchmark's items through a peer library: a plain map-style Dataset.

    Item ``i`` draws ``RandomClip(8)`` from ``SeedSequence([seed, 0, i])`` as
    ``VideoFrameDataset`` does, and returns ``{"frames": 8 x 3 x 224 x 224, "index": i}``.
    One decoder per (loading thread, video) is kept open.
    """

    def __init__(self, sources: list[str], peer: str, *, seed: int = 0) -> None:
        self.sources, self.peer, self.seed = sources, peer, seed
        self.sampler = RandomClip(8)
        self._open: dict[tuple[int, int, str], Any] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.sources)

    def _decoder(self, url: str) -> tuple[Any, _PeerVideo]:
        key = (os.getpid(), threading.get_ident(), url)
        with self._lock:
            got = self._open.get(key)
        if got is None:
            got = open_peer(self.peer, url)
            with self._lock:
                self._open[key] = got
        return got

    def __getitem__(self, index: int) -> dict:
        url = self.sources[index]
        (dec, f), video = self._decoder(url)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, int(index)]))
        idx = [int(i) for i in self.sampler(video, rng)]
        if self.peer == "decord":
            frames = torch.from_numpy(dec.get_batch(idx).asnumpy()).permute(0, 3, 1, 2).contiguous()
        else:
            frames = dec.get_frames_at(indices=idx).data
        return {"frames": frames, "index": int(index)}

    def close(self) -> None:
        with self._lock:
            opened, self._open = self._open, {}
        for (_, f), _video in opened.values():
            if f is not None:
                f.close()


def open_peer(peer: str, url: str) -> tuple[tuple[Any, Any], _PeerVideo]:
    """``((decoder, file object or None), video)`` for one peer on ``url``."""
    import fsspec

    if peer.startswith("torchcodec"):
        tc = require("torchcodec.decoders", purpose="the torchcodec peer")
        tct = require("torchcodec.transforms", purpose="the torchcodec peer")
        f = fsspec.filesystem("http", skip_instance_cache=True).open(url, "rb")
        mode = "exact" if peer == "torchcodec_exact" else "approximate"
        dec = tc.VideoDecoder(f, seek_mode=mode, transforms=[tct.Resize(SIZE)], num_ffmpeg_threads=1)
        m = dec.metadata
        return (dec, f), _PeerVideo(url, int(m.num_frames), float(m.average_fps))
    decord = require("decord", purpose="the decord peer")
    try:
        dec = decord.VideoReader(url, width=SIZE[1], height=SIZE[0], num_threads=1)
        f = None
    except Exception:  # its FFmpeg may lack HTTP: a file object (read whole by decord)
        f = fsspec.filesystem("http", skip_instance_cache=True).open(url, "rb")
        dec = decord.VideoReader(f, width=SIZE[1], height=SIZE[0], num_threads=1)
    return (dec, f), _PeerVideo(url, len(dec), float(dec.get_avg_fps()))


def peer_problem(peer: str, url: str) -> str | None:
    """Why ``peer`` cannot load ``url`` here (None: it can); says how decord reads it."""
    try:
        (dec, f), video = open_peer(peer, url)
    except Exception as e:  # noqa: BLE001 - reported, then the peer is skipped
        return f"{type(e).__name__}: {e}"
    how = "the URL" if f is None else "an fsspec file object"
    if peer == "decord":
        print(f"# decord reads {how}", file=sys.stderr)
    if f is not None:
        f.close()
    return None


def _child(conn: Any, fn: Callable[..., Any], args: tuple) -> None:
    try:
        out: tuple[Any, str | None] = (fn(*args), None)
    except Exception as e:  # noqa: BLE001 - reported as this run's error
        lines = str(e).strip().splitlines()
        out = (None, f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300])
    conn.send(out)
    conn.close()


def isolated(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """``(fn(*args), None)``, run in a forked child process, or ``(None, why)`` if it raised or died.

    Every run and peer probe gets a fresh process, forked from this one, which
    never loads a decoder and starts no thread: no reader, thread pool, cache
    or allocator state of an earlier run (ours or a peer's) is left in it, its
    peak RSS is its own, and a peer's error ends only its run. The child joins
    its non-daemon threads (our pools) and leaves through ``os._exit`` as every
    multiprocessing child does: no library's native threads (decord's decode
    threads and thread pool, torch's) are alive when this process's
    interpreter shuts down, which could abort the script with "terminate
    called without an active exception" after it had written its results.
    """
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args))
    proc.start()
    send.close()
    try:
        out, why = receive.recv()
    except EOFError:
        out, why = None, None
    proc.join()
    receive.close()
    if why is None and proc.exitcode != 0:
        why = f"the run's process ended with exit code {proc.exitcode}"
    return out, why


def load(lib: str, mode: str, sources: list[str], args: argparse.Namespace) -> dict:
    """One run: ``sources`` through ``lib`` (ours or a peer) and loader ``mode``; in a child (``isolated``)."""
    if lib == "videoloader":
        extra = {} if args.concurrent_samples is None else {"max_concurrent_samples": args.concurrent_samples}
        ds: Any = VideoFrameDataset(sources, RandomClip(8), output_size=SIZE, seed=0, **extra)
    else:
        ds = PeerDataset(sources, lib, seed=0)
    return run_one(mode, ds, batch_size=args.batch_size, threads=args.threads, seed=0)


def run_one(mode: str, dataset: Any, *, batch_size: int, threads: int, seed: int) -> dict:
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
    done = first = 0
    start: float | None = None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
            first = len(batch["index"])
        done += len(batch["index"])
        assert batch["frames"].shape[1:] == (8, 3, 224, 224), batch["frames"].shape
        probe.sample(done)
    if start is None:
        raise ValueError("the loader gave no batch")
    elapsed = time.perf_counter() - start
    # Clips after the first batch over the time since it arrived.
    rate = (done - first) / elapsed if elapsed > 0 else float("nan")
    out = {"mode": mode, "samples": done, "clips_per_second": round(rate, 2), "seconds": round(elapsed, 2)}
    out["cpu_ms_per_clip"] = probe.cpu_ms_per_clip()
    out.update(probe.summary(n, workers=mode == "workers2"))
    del loader
    dataset.close()
    return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def summarise(runs: list[dict], configs: list[tuple[str, str]], latencies: list[float], ks: list[Any]) -> list[dict]:
    """One row per (K, library, loader, latency): medians over repeats, then ratios to 0 ms and to the best peer."""
    results = []
    for k in ks:
        for lib, mode in configs:
            for latency_ms in latencies:
                rs = [
                    r
                    for r in runs
                    if "error" not in r
                    and (r["library"], r["mode"], r["latency_ms"], r["clips_per_video_asked"])
                    == (lib, mode, latency_ms, k)
                ]
                if not rs:
                    continue
                results.append(
                    {
                        "library": lib,
                        "mode": mode,
                        "latency_ms": latency_ms,
                        "clips_per_video_asked": k,
                        "clips_per_video": rs[-1]["clips_per_video"],
                        "urls": rs[-1]["urls"],
                        "clips_per_second": round(statistics.median(r["clips_per_second"] for r in rs), 2),
                        "clips_per_second_runs": [r["clips_per_second"] for r in rs],
                        "cpu_ms_per_clip": round(statistics.median(r["cpu_ms_per_clip"] or 0 for r in rs), 1),
                        "mb_per_clip": round(statistics.median(r["mb_per_clip"] for r in rs), 3),
                        "peak_rss_mb": max(r["peak_rss_mb"] or 0 for r in rs),
                        "rss_growth_mb": max(r["rss_growth_mb"] or 0 for r in rs),
                        "samples": rs[-1]["samples"],
                        "load_average": [min(r["load_average"][0] for r in rs), max(r["load_average"][1] for r in rs)],
                    }
                )
    base = {
        (r["library"], r["mode"], r["clips_per_video_asked"]): r["clips_per_second"]
        for r in results
        if r["latency_ms"] == 0
    }
    for r in results:
        b = base.get((r["library"], r["mode"], r["clips_per_video_asked"]))
        r["vs_0ms"] = round(r["clips_per_second"] / b, 3) if b else None
    for r in results:
        if r["library"] != "videoloader":
            continue
        rivals = [
            p
            for p in results
            if p["library"] != "videoloader"
            and (p["mode"], p["latency_ms"], p["clips_per_video_asked"])
            == (r["mode"], r["latency_ms"], r["clips_per_video_asked"])
        ]
        best = max(rivals, key=lambda p: p["clips_per_second"], default=None)
        if best is not None and best["clips_per_second"] > 0:
            r["best_peer"] = best["library"]
            r["vs_best_peer"] = round(r["clips_per_second"] / best["clips_per_second"], 2)
            r["bytes_vs_best_peer"] = round(r["mb_per_clip"] / best["mb_per_clip"], 3) if best["mb_per_clip"] else None
        frugal = min(rivals, key=lambda p: p["mb_per_clip"], default=None)
        if frugal is not None and frugal["mb_per_clip"] > 0:
            r["fewest_bytes_peer"] = frugal["library"]
            r["bytes_vs_fewest_bytes_peer"] = round(r["mb_per_clip"] / frugal["mb_per_clip"], 3)
    return results


def print_tables(results: list[dict], env: dict, args: argparse.Namespace) -> None:
    print(
        f"\nLoader throughput ({env['videos']}; {env['clip']}; batch {args.batch_size}; {env['cpus']} CPUs; "
        f"median of {args.repeats} run(s))\n"
    )
    print(
        "| library | loader | latency | clips/video (URLs) | clips/s | vs 0 ms | vs best peer (clips/s, bytes) "
        "| runs (clips/s) | MB/clip | CPU ms/clip | peak RSS/proc (MB) | RSS growth (MB) | load avg |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
    names = {
        "workers0": "DataLoader, 0 workers",
        "workers2": "DataLoader, 2 workers (fork)",
        "threads": f"nodes, {args.threads} threads",
    }
    for r in results:
        peer = f"{r['vs_best_peer']}x, {r['bytes_vs_best_peer']}x ({r['best_peer']})" if "best_peer" in r else "-"
        print(
            f"| {r['library']} | {names[r['mode']]} | {r['latency_ms']:.0f} ms | "
            f"{r['clips_per_video']:g} ({r['urls']}) | {r['clips_per_second']:.1f} | "
            f"{r['vs_0ms'] if r['vs_0ms'] is not None else '-'} | {peer} | "
            f"{', '.join(f'{x:.1f}' for x in r['clips_per_second_runs'])} | "
            f"{r['mb_per_clip']} | {r['cpu_ms_per_clip']} | {r['peak_rss_mb']} | "
            f"{r['rss_growth_mb']} | {r['load_average'][0]}-{r['load_average'][1]} |"
        )
    ours = [r for r in results if "best_peer" in r and r["clips_per_video_asked"] is not None]
    if not ours:
        return
    print("\nOurs against the peers, per clips per video (target at 50 ms: >= 2x clips/s, <= 0.1x bytes)\n")
    print(
        "| loader | latency | clips/video (URLs) | ours clips/s | ours MB/clip | best peer (clips/s, MB/clip) "
        "| clips/s ratio | bytes ratio | fewest-bytes peer: bytes ratio |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for r in ours:
        best = next(
            p
            for p in results
            if (p["library"], p["mode"], p["latency_ms"], p["clips_per_video_asked"])
            == (r["best_peer"], r["mode"], r["latency_ms"], r["clips_per_video_asked"])
        )
        print(
            f"| {names[r['mode']]} | {r['latency_ms']:.0f} ms | {r['clips_per_video']:g} ({r['urls']}) | "
            f"{r['clips_per_second']:.1f} | {r['mb_per_clip']} | "
            f"{r['best_peer']} ({best['clips_per_second']:.1f}, {best['mb_per_clip']}) | {r['vs_best_peer']}x | "
            f"{r['bytes_vs_best_peer']}x | {r['fewest_bytes_peer']}: {r['bytes_vs_fewest_bytes_peer']}x |"
        )


def write_results(out: str, payload: dict) -> Path:
    """``benchmarks/results/<out>.json`` as the other benchmarks write, or the file ``out`` if it ends in .json."""
    if not out.endswith(".json"):
        return _common.write_json(out, payload)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


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
    ap.add_argument("--peers", nargs="*", default=list(PEERS), help=f"peer libraries ({', '.join(PEERS)})")
    ap.add_argument("--peer-modes", nargs="*", default=["workers0"], help="loaders for the peers (workers0, workers2)")
    ap.add_argument("--videos", type=int, default=2, help="distinct files to generate (and, by default, URLs)")
    ap.add_argument("--frames", type=int, default=300, help="frames per video (30 fps)")
    ap.add_argument("--gop", type=int, default=30)
    ap.add_argument("--preset", default="ultrafast", help="x264 preset of the generated files")
    ap.add_argument("--bframes", type=int, default=0, help="x264 B-frames of the generated files")
    ap.add_argument(
        "--clips-per-video",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="per K: runs over --samples // K URLs (aliases of the --videos files) with K clips each",
    )
    ap.add_argument(
        "--out",
        default="loader_throughput",
        help="results name: writes benchmarks/results/<name>.json (a value ending in .json is a file path)",
    )
    args = ap.parse_args(argv)
    print(f"# videoloader from {_common.CODE_ROOT / 'videoloader'}", file=sys.stderr)
    if args.clips_per_video and min(args.clips_per_video) < 1:
        ap.error("--clips-per-video takes K >= 1")

    if any(p.startswith("torchcodec") for p in args.peers):
        _common.ensure_torchcodec_ffmpeg()  # may re-exec this script once, before anything runs
    paths = make_videos(args.videos, args.frames, args.gop, args.preset, args.bframes)
    ks: list[Any] = list(args.clips_per_video or [None])
    runs = []
    skipped: dict[str, str] = {}
    configs = [("videoloader", m) for m in args.modes] + [(p, m) for p in args.peers for m in args.peer_modes]
    server = ServerProcess(paths)  # before any loader thread exists (fork)
    try:
        run_id = 0
        for k in ks:
            n_urls = args.videos if k is None else max(1, args.samples // k)
            samples = args.samples if k is None else n_urls * k
            # Each mode at every latency back to back (and alternating when repeated), so that
            # load from other programs on the machine hurts the 50 ms / 0 ms ratio least.
            for lib, mode in configs:
                if lib != "videoloader" and lib not in skipped:
                    # In a child process, as every run: this process never loads a decoder.
                    problem, died = isolated(peer_problem, lib, server.urls(f"probe-{lib}", 1)[0])
                    why = died or problem
                    if why is not None:
                        print(f"# skipping peer {lib}: {why}", file=sys.stderr)
                        skipped[lib] = str(why)
                if lib in skipped:
                    continue
                for _ in range(args.repeats):
                    for latency_ms in args.latency_ms:
                        urls = server.urls(run_id, n_urls)  # new URLs: nothing cached from earlier runs
                        run_id += 1
                        sources = [urls[i % n_urls] for i in range(samples)]  # each URL samples / n_urls times
                        server.call("latency", latency_ms / 1000)
                        server.call("reset")
                        load_before = os.getloadavg()[0]
                        r, why = isolated(load, lib, mode, sources, args)
                        r = {"mode": mode, "error": why} if why is not None else r
                        r["library"] = lib
                        r["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                        r["latency_ms"] = latency_ms
                        r["clips_per_video_asked"] = k
                        r["clips_per_video"] = round(samples / n_urls, 2)
                        r["urls"] = n_urls
                        r["mb_per_clip"] = round(server.call("bytes_sent") / max(r.get("samples", samples), 1) / MB, 3)
                        runs.append(r)
                        print(f"# {json.dumps(r)}", file=sys.stderr)
    finally:
        server.close()

    results = summarise(runs, [c for c in configs if c[0] not in skipped], args.latency_ms, ks)
    env = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("torch", "torchcodec", "decord2", "fsspec", "av")},
        "videos": (
            f"{args.videos} x H.264 1280x720 {args.frames} frames 30 fps gop {args.gop} "
            f"(x264 {args.preset}, {args.bframes} B-frames), {', '.join(f'{p.stat().st_size / MB:.1f}' for p in paths)} MB"
        ),
        "clip": "RandomClip(8), output_size=(224, 224)",
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "samples": args.samples,
        "clips_per_video": args.clips_per_video,
        "peers_skipped": skipped,
    }
    print_tables(results, env, args)
    for r in runs:
        if "error" in r:
            print(
                f"\nFailed run ({r['library']}, {r['mode']}, {r['latency_ms']:g} ms, K={r['clips_per_video']:g}): {r['error']}"
            )
    path = write_results(args.out, {"env": env, "results": results, "runs": runs})
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
