"""The ``videoloader`` command.

::

    videoloader infer [URL ...] [--urls-file F] [--frames N] [--seed S] [--offset-max-seconds T]
                      [--model M] [--weights W] [--backend B] [--device D] [--batch-size N]
                      [--save-frames DIR] [--json OUT] [--wandb] [--wandb-project P]
    videoloader inspect URL [--frames I [I ...]] [--json OUT]
    videoloader info [--json OUT]
    videoloader proxy [--host 127.0.0.1] [--port N] [URL ...]
    videoloader serve [--host 127.0.0.1] [--port N] [--allow-host PATTERN ...] [--allow-private]

``infer`` with no URL runs on the sample clip shipped in the package
(``videoloader/assets/sample.mp4``). Exit status: 0 when every video worked,
1 when any video failed (the reasons are printed), 2 for bad arguments, 3 when
the job could not run at all (e.g. pretrained weights unavailable).
``LOGGER_LEVEL`` (``DEBUG``, ``INFO``, ...) sets the log level; logs never
contain a URL's query string or credentials, those of libraries (fsspec,
aiohttp) included: the command redacts every record it writes.
``--frames N`` beyond what a video (or its first ``--offset-max-seconds``)
holds takes each of its frames once, and the report says so.

This module only parses arguments and prints; the work is in
:mod:`videoloader.job`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .io import redact_text
from .job import (
    DEFAULT_MODEL,
    WeightsUnavailableError,
    collect_info,
    inspect_video,
    run_inference,
    save_frame_pngs,
    without_pngs,
)
from .job._logging import configure_command_logging

__all__ = ["SAMPLE_VIDEO", "main"]

SAMPLE_VIDEO = Path(__file__).resolve().parent / "assets" / "sample.mp4"
"""A 4 s, 320x240 H.264 clip (``scripts/make_sample.py``) for a first run without a URL."""

EXIT_OK, EXIT_VIDEO_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3


# --------------------------------------------------------------------------- output


class _Out:
    """Human-readable output (tables and lines) on one stream."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream, highlight=False, soft_wrap=False, width=max(100, _term_width(stream)))

    def print(self, text: str = "") -> None:
        self.console.print(text, markup=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        t = Table(title=title, show_lines=False)
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*("" if v is None else str(v) for v in r))
        self.console.print(t)


def _term_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 120


class _Progress:
    """A progress bar over videos on stderr (or nothing when disabled)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._bar = Progress(
                TextColumn("[bold]decoding"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(file=sys.stderr),
                transient=False,
            )
            self._task = self._bar.add_task("", total=total)
            self._bar.start()

    def update(self, done: int, total: int, info: dict[str, Any]) -> None:
        if self._bar is not None and self._task is not None:
            label = f"{info['url'].rsplit('/', 1)[-1]} {'ok' if info['ok'] else 'FAILED'}"
            self._bar.update(self._task, completed=done, description=label)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _write_json(obj: Any, dest: str, out: _Out) -> None:
    text = json.dumps(obj, indent=2, default=str)
    if dest == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(text + "\n")
        out.print(f"JSON written to {dest}")


# --------------------------------------------------------------------------- infer


def _read_urls_file(path: str) -> list[str]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _weights_arg(value: str | None) -> str | None:
    if value is None or value.lower() in ("none", "random", ""):
        return None
    return value


def _cmd_infer(args: argparse.Namespace, out: _Out) -> int:
    urls = list(args.urls)
    if args.urls_file:
        urls += _read_urls_file(args.urls_file)
    if not urls:
        urls = [str(SAMPLE_VIDEO)]
        out.print(f"No URL given: running on the bundled sample clip {SAMPLE_VIDEO.name}.")
    wandb: Any = False
    if args.wandb:
        wandb = {"project": args.wandb_project} if args.wandb_project else True
    progress = _Progress(len(urls), enabled=not args.no_progress)
    try:
        result = run_inference(
            video_urls=urls,
            frames_per_video=args.frames,
            random_seed=args.seed,
            offset_max_seconds=args.offset_max_seconds,
            model=args.model,
            weights=_weights_arg(args.weights),
            weights_dir=args.weights_dir,
            backend=args.backend,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.workers,
            via=args.via,
            return_frame_png=args.save_frames is not None,
            wandb=wandb,
            progress=progress.update,
        )
    except (WeightsUnavailableError, ValueError, TypeError, ImportError) as e:
        progress.close()
        return _job_error(e, out)
    progress.close()

    saved: dict[int, list[str]] = {}
    if args.save_frames is not None:
        Path(args.save_frames).mkdir(parents=True, exist_ok=True)
        saved = {i: [str(p) for p in paths] for i, paths in save_frame_pngs(result, args.save_frames).items()}
    _print_infer(result, out, saved)
    if args.json:
        _write_json(without_pngs(result, saved), args.json, out)
    return EXIT_OK if result["num_failed"] == 0 else EXIT_VIDEO_FAILED


def _job_error(e: Exception, out: _Out) -> int:
    """Print why the job could not run; the exit status says whether the arguments were to blame.

    ``ImportError`` is a ``MissingDependencyError`` (torchvision for a model by
    name, wandb for ``--wandb``): its message names the extra to install.
    """
    if isinstance(e, WeightsUnavailableError):
        out.print(f"error: {redact_text(str(e))}")
        return EXIT_FATAL
    out.print(f"error: {type(e).__name__}: {redact_text(str(e))}")
    return EXIT_USAGE if isinstance(e, (ValueError, TypeError)) else EXIT_FATAL


def _print_infer(result: dict[str, Any], out: _Out, saved: dict[int, list[str]]) -> None:
    rows = []
    for v in result["videos"]:
        if v["ok"]:
            top = ", ".join(dict.fromkeys(v["top_classes"]))
            conf = ", ".join(f"{c:.3f}" for c in v["confidences"])
            ts = ", ".join(f"{t:.2f}" for t in v["selected_timestamps_seconds"])
        else:
            top, conf, ts = "FAILED", "", ""
        rows.append(
            [
                v["index"],
                v["url"],
                top,
                conf,
                ts,
                _fmt_bytes(v["bandwidth_upstream_bytes"]),
                _fmt_bytes(v["bandwidth_downstream_bytes"]),
                f"{v['total_time_seconds']:.3f}",
            ]
        )
    out.table(
        "videoloader infer",
        ["#", "video", "top class", "confidence", "timestamps (s)", "upstream", "to decoder", "time (s)"],
        rows,
    )
    r = result
    out.print(
        f"{r['num_succeeded']}/{r['num_videos']} videos ok, {r['num_failed']} failed | model {r['model']} "
        f"(weights {r['weights']}) on {r['device']}{' (' + r['gpu_name'] + ')' if r['gpu_name'] else ''} | "
        f"seed {r['random_seed']}"
    )
    out.print(
        f"time: model load {r['model_load_time_seconds']:.2f} s, "
        f"frame extraction {r['frame_extraction_time_seconds']:.2f} s, "
        f"preprocess {r['preprocess_time_seconds']:.2f} s, inference {r['inference_time_seconds']:.2f} s, "
        f"total {r['total_pipeline_time_seconds']:.2f} s"
    )
    out.print(
        f"bandwidth: {_fmt_bytes(r['bandwidth_total_upstream_bytes'])} from the origin in "
        f"{r['bandwidth_num_requests']} requests, {_fmt_bytes(r['bandwidth_total_downstream_bytes'])} "
        "of samples fed to the decoder"
    )
    if saved:
        out.print(f"frames saved: {sum(len(p) for p in saved.values())} PNG files")
    window = f"its first {r['offset_max_seconds']} s hold" if r.get("offset_max_seconds") else "it has"
    for v in r["videos"]:
        asked, got = v.get("frames_requested"), v.get("frames_returned")
        if v["ok"] and asked is not None and got is not None and got < asked:
            out.print(f"note: video {v['index']} {v['url']}: {asked} frames asked, {window} {got}: each taken once")
    for v in r["videos"]:
        if not v["ok"]:
            err = v["error"] or {}
            out.print(f"FAILED video {v['index']} {v['url']}: {err.get('type')}: {err.get('message')}")


# --------------------------------------------------------------------------- inspect


def _cmd_inspect(args: argparse.Namespace, out: _Out) -> int:
    try:
        info = inspect_video(args.url, frames=args.frames, backend=args.backend)
    except Exception as e:
        out.print(f"error: {type(e).__name__}: {redact_text(str(e))}")
        return EXIT_VIDEO_FAILED
    m = info["metadata"]
    out.print(f"{info['url']}")
    out.print(
        f"  {m['codec']} {m['width']}x{m['height']}, {m['num_frames']} frames, {m['fps']:.3f} fps, "
        f"{m['duration_seconds']:.3f} s (first frame at {m['begin_stream_seconds']:.3f} s), container {m['container']}"
    )
    out.print(
        f"  access path: {info['access_path']} | backend: {info['backend']} | "
        f"file size: {_fmt_bytes(info['file_size_bytes'])}"
    )
    ix = info["index"]
    if ix:
        out.print(
            f"  index: {ix['num_samples']} samples, {ix['num_keyframes']} keyframes, fragmented={ix['fragmented']}, "
            f"GOP length min/mean/max {ix['gop_length_min']}/{ix['gop_length_mean']:.1f}/{ix['gop_length_max']}, "
            f"read {_fmt_bytes(ix['index_nbytes'])} in {ix['index_requests']} requests"
        )
        size = info["file_size_bytes"]
        out.table(
            "planned reads per frame",
            ["frame", "samples", "byte ranges", "bytes", "of file"],
            [
                [
                    p["frame"],
                    f"{p['samples'][0]}..{p['samples'][1]}",
                    " ".join(f"[{a},{b})" for a, b in p["ranges"]),
                    p["nbytes"],
                    f"{100 * p['fraction_of_file']:.2f} %" if size else "-",
                ]
                for p in info["plans"]
            ],
        )
    else:
        out.print(f"  {info.get('note')}")
    t = info["transfer"]
    out.print(f"  transferred so far: {_fmt_bytes(t['bytes_received'])} in {t['num_requests']} requests")
    if args.json:
        _write_json(info, args.json, out)
    return EXIT_OK


# --------------------------------------------------------------------------- info


def _cmd_info(args: argparse.Namespace, out: _Out) -> int:
    info = collect_info()
    out.print(f"videoloader {info['videoloader_version']} | Python {info['python']} | {info['platform']}")
    out.print(
        f"torch {info['torch_version']} | CUDA available: {info['cuda_available']} (built for {info['cuda_version']})"
        f"{' | GPU ' + info['gpu_name'] if info['gpu_name'] else ''} | MPS: {info['mps_available']}"
    )
    found = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["optional_modules"].items())
    out.print(f"optional modules: {found}")
    dec = info["decoders"]
    if isinstance(dec, dict):
        rows = [[k, v if isinstance(v, str) else json.dumps(v, default=str)] for k, v in dec.items()]
        out.table("decoders", ["key", "value"], rows)
    if args.json:
        _write_json(info, args.json, out)
    return EXIT_OK


# --------------------------------------------------------------------------- proxy / serve


def _cmd_proxy(args: argparse.Namespace, out: _Out) -> int:
    from .proxy import ProxyState, make_proxy_app
    from .serve._thread import serve_forever

    state = ProxyState()
    paths = [state.register(u) for u in args.urls]
    app = make_proxy_app(state)

    async def announce(_app: object) -> None:
        for p in paths:  # after the banner line: the first line of stdout is the address
            print(f"proxy path {p}", file=sys.stderr, flush=True)

    app.on_startup.append(announce)
    serve_forever(app, host=args.host, port=args.port, banner="proxy")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace, out: _Out) -> int:
    from .serve import make_app
    from .serve._thread import serve_forever

    app = make_app(
        allow_hosts=tuple(args.allow_host or ()),
        allow_private=args.allow_private,
        max_frames=args.max_frames,
        max_response_bytes=args.max_response_bytes,
        cache_dir=args.cache_dir,
    )
    serve_forever(app, host=args.host, port=args.port, banner="serving")
    return EXIT_OK


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``videoloader`` command (``infer``, ``inspect``, ``info``)."""
    p = argparse.ArgumentParser(prog="videoloader", description="Frame-exact random access to remote videos.")
    sub = p.add_subparsers(dest="command", required=True)

    inf = sub.add_parser("infer", help="classify frames sampled from videos and report timings and bytes")
    inf.add_argument("urls", nargs="*", metavar="URL", help="video URLs or paths (none: the bundled sample clip)")
    inf.add_argument("--urls-file", metavar="F", help="file with one URL per line ('#' comments; '-' for stdin)")
    inf.add_argument("--frames", type=int, default=1, metavar="N", help="frames per video (default 1)")
    inf.add_argument("--seed", type=int, default=None, metavar="S", help="random seed of the frame choice")
    inf.add_argument(
        "--offset-max-seconds", type=float, default=None, metavar="T", help="sample only the first T seconds"
    )
    inf.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="M", help=f"torchvision model name (default {DEFAULT_MODEL})"
    )
    inf.add_argument(
        "--weights",
        default="DEFAULT",
        metavar="W",
        help="DEFAULT (pretrained, downloaded once), a weights name, 'none' (random init) or a checkpoint path",
    )
    inf.add_argument("--weights-dir", default=None, metavar="DIR", help="weights cache (default $TORCH_HOME/hub)")
    inf.add_argument("--backend", default="auto", metavar="B", help="decoder: auto or a backend name (see `info`)")
    inf.add_argument("--device", default="auto", metavar="D", help="model device: auto, cpu, cuda, cuda:1, mps")
    inf.add_argument(
        "--via",
        choices=("reader", "proxy"),
        default="reader",
        help="reader: our index (default); proxy: FFmpeg reads each URL through the tracking proxy",
    )
    inf.add_argument("--batch-size", type=int, default=64, metavar="N")
    inf.add_argument("--workers", type=int, default=4, metavar="N", help="videos read concurrently")
    inf.add_argument("--save-frames", default=None, metavar="DIR", help="write each decoded frame as PNG here")
    inf.add_argument("--json", default=None, metavar="OUT", help="write the full result as JSON ('-' for stdout)")
    inf.add_argument("--wandb", action="store_true", help="log to Weights & Biases (project: $WANDB_PROJECT)")
    inf.add_argument("--wandb-project", default=None, metavar="P")
    inf.add_argument("--no-progress", action="store_true", help="no progress bar")
    inf.set_defaults(func=_cmd_infer)

    ins = sub.add_parser("inspect", help="metadata, index summary and planned byte ranges of one video")
    ins.add_argument("url", metavar="URL")
    ins.add_argument(
        "--frames", type=int, nargs="*", default=None, metavar="I", help="frames to plan (default first, middle, last)"
    )
    ins.add_argument("--backend", default="cpu", metavar="B")
    ins.add_argument("--json", default=None, metavar="OUT")
    ins.set_defaults(func=_cmd_inspect)

    nfo = sub.add_parser("info", help="platform and decoder availability")
    nfo.add_argument("--json", default=None, metavar="OUT")
    nfo.set_defaults(func=_cmd_info)

    prx = sub.add_parser("proxy", help="local bandwidth-tracking proxy for decoders that only take a URL")
    prx.add_argument("urls", nargs="*", metavar="URL", help="origins to register now (their proxy paths go to stderr)")
    prx.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    prx.add_argument("--port", type=int, default=0, metavar="N", help="port (default: a free one)")
    prx.set_defaults(func=_cmd_proxy)

    srv = sub.add_parser("serve", help="perfect-reads server: /v1/clip.mp4 and /v1/index")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    srv.add_argument("--port", type=int, default=0, metavar="N", help="port (default: a free one)")
    srv.add_argument(
        "--allow-host", action="append", metavar="PATTERN", help="allowed origin host pattern (repeatable)"
    )
    srv.add_argument("--allow-private", action="store_true", help="allow private/loopback origins (local testing only)")
    srv.add_argument("--max-frames", type=int, default=256, metavar="N", help="frames per clip request (413 above)")
    srv.add_argument(
        "--max-response-bytes", type=int, default=512 * 1024 * 1024, metavar="B", help="sample bytes per clip"
    )
    srv.add_argument("--cache-dir", default=None, metavar="DIR", help="on-disk index cache")
    srv.set_defaults(func=_cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used by the console script)."""
    configure_command_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 on --help
        return int(e.code or 0)
    # With --json - the JSON owns stdout; the human-readable report goes to stderr.
    out = _Out(sys.stderr if getattr(args, "json", None) == "-" else sys.stdout)
    result: int = args.func(args, out)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
