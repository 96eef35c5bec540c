"""The ``videoloader`` command.

::

    videoloader infer [URL ...] [--urls-file F] [--frames N] [--seed S] [--offset-max-seconds T]
                      [--model M] [--weights W] [--backend B] [--device D] [--batch-size N]
                      [--save-frames DIR] [--json OUT] [--wandb] [--wandb-project P]
    videoloader inspect URL [--frames I [I ...]] [--json OUT]
    videoloader info [--json OUT]

``infer`` with no URL runs on the sample clip shipped in the package
(``videoloader/assets/sample.mp4``). Exit status: 0 when every video worked,
1 when any video failed (the reasons are printed), 2 for bad arguments, 3 when
the job could not run at all (e.g. pretrained weights unavailable).
``LOGGER_LEVEL`` (``DEBUG``, ``INFO``, ...) sets the log level; logs never
contain a URL's query string or credentials, those of libraries (fsspec,
aiohttp) included: the command redacts every record it writes.
``--frames N`` beyond what a video (or its first ``--offset-max-seconds``)
holds takes each of its frames once, and the report says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["SAMPLE_VIDEO", "main"]

SAMPLE_VIDEO = Path(__file__).resolve().parent / "assets" / "sample.mp4"
"""A 4 s, 320x240 H.264 clip (``scripts/make_sample.py``) for a first run without a URL."""

EXIT_OK, EXIT_VIDEO_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3


# --------------------------------------------------------------------------- output helpers


class _Out:
    """Human-readable output: rich when installed, plain text otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        try:
            from rich.console import Console

            self.console = Console(file=stream, highlight=False, soft_wrap=False, width=max(100, _term_width(stream)))
        except ImportError:  # pragma: no cover - rich is in the test env
            self.console = None

    def print(self, text: str = "") -> None:
        if self.console is not None:
            self.console.print(text, markup=False)
        else:
            print(text, file=self.stream)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.console is not None:
            from rich.table import Table

            t = Table(title=title, show_lines=False)
            for c in columns:
                t.add_column(c, overflow="fold")
            for r in rows:
                t.add_row(*("" if v is None else str(v) for v in r))
            self.console.print(t)
            return
        cells = [list(map(str, columns))] + [["" if v is None else str(v) for v in r] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        print(title, file=self.stream)
        for k, row in enumerate(cells):
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)), file=self.stream)
            if k == 0:
                print("  ".join("-" * w for w in widths), file=self.stream)


def _term_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 120


class _Progress:
    """A progress bar over videos on stderr: rich, else tqdm, else nothing."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._rich = self._tqdm = None
        self._task = None
        if not enabled:
            return
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from rich.console import Console

            self._rich = Progress(
                TextColumn("[bold]decoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.description}"), console=Console(file=sys.stderr), transient=False,
            )
            self._task = self._rich.add_task("", total=total)
            self._rich.start()
        except ImportError:  # pragma: no cover
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, unit="video", file=sys.stderr)
            except ImportError:
                pass

    def update(self, done: int, total: int, info: dict[str, Any]) -> None:
        label = f"{info['url'].rsplit('/', 1)[-1]} {'ok' if info['ok'] else 'FAILED'}"
        if self._rich is not None:
            self._rich.update(self._task, completed=done, description=label)
        elif self._tqdm is not None:
            self._tqdm.set_postfix_str(label)
            self._tqdm.update(done - self._tqdm.n)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self._tqdm is not None:
            self._tqdm.close()


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _redact(text: str) -> str:
    from .io import redact_text

    return redact_text(text)


def _write_json(obj: Any, dest: str, out: _Out) -> None:
    text = json.dumps(obj, indent=2, default=str)
    if dest == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(text + "\n")
        out.print(f"JSON written to {dest}")


def _configure_logging() -> None:
    """Log to stderr at ``LOGGER_LEVEL`` (default WARNING), every URL redacted.

    fsspec and aiohttp log raw URLs (a signed URL's token, ``user:password@``)
    at DEBUG. Their records (and ours) are redacted when made
    (``install_log_redaction``), and every root handler gets a
    ``RedactingFilter`` for the records of any other logger. As
    ``logging.basicConfig``, a handler is added only when the root has none.
    """
    from .io._redact import RedactingFilter, install_log_redaction

    level = os.environ.get("LOGGER_LEVEL", "WARNING").strip().upper()
    install_log_redaction()
    logging.basicConfig(level=level if level in logging._nameToLevel else "WARNING",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


# --------------------------------------------------------------------------- infer


def _read_urls_file(path: str) -> list[str]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _weights_arg(value: str | None) -> str | None:
    if value is None or value.lower() in ("none", "random", ""):
        return None
    return value


def _strip_png(result: dict[str, Any], saved: dict[int, list[str]]) -> dict[str, Any]:
    """The result without PNG bytes (not JSON), with the saved frame paths instead."""
    out = {k: v for k, v in result.items() if k != "frame_png_bytes_list"}
    out["videos"] = []
    for v in result["videos"]:
        v = {k: val for k, val in v.items() if k != "frame_png_bytes_list"}
        if v["index"] in saved:
            v["frame_png_paths"] = saved[v["index"]]
        out["videos"].append(v)
    return out


def _save_frames(result: dict[str, Any], directory: Path) -> dict[int, list[str]]:
    directory.mkdir(parents=True, exist_ok=True)
    saved: dict[int, list[str]] = {}
    for v in result["videos"]:
        for frame, png in zip(v.get("selected_frame_indices", []), v.get("frame_png_bytes_list") or []):
            path = directory / f"video{v['index']:04d}_frame{frame:06d}.png"
            path.write_bytes(png)
            saved.setdefault(v["index"], []).append(str(path))
    return saved


def _cmd_infer(args: argparse.Namespace, out: _Out) -> int:
    from .inference import WeightsUnavailableError, run_inference

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
            return_frame_png=args.save_frames is not None,
            wandb=wandb,
            progress=progress.update,
        )
    except WeightsUnavailableError as e:
        progress.close()
        out.print(f"error: {_redact(str(e))}")
        return EXIT_FATAL
    except (ValueError, TypeError, ImportError) as e:
        progress.close()
        out.print(f"error: {type(e).__name__}: {_redact(str(e))}")
        return EXIT_USAGE if isinstance(e, (ValueError, TypeError)) else EXIT_FATAL
    progress.close()

    saved = _save_frames(result, Path(args.save_frames)) if args.save_frames is not None else {}
    _print_infer(result, out, saved)
    if args.json:
        _write_json(_strip_png(result, saved), args.json, out)
    return EXIT_OK if result["num_failed"] == 0 else EXIT_VIDEO_FAILED


def _print_infer(result: dict[str, Any], out: _Out, saved: dict[int, list[str]]) -> None:
    rows = []
    for v in result["videos"]:
        if v["ok"]:
            top = ", ".join(dict.fromkeys(v["top_classes"]))
            conf = ", ".join(f"{c:.3f}" for c in v["confidences"])
            ts = ", ".join(f"{t:.2f}" for t in v["selected_timestamps_seconds"])
        else:
            top, conf, ts = "FAILED", "", ""
        rows.append([
            v["index"], v["url"], top, conf, ts,
            _fmt_bytes(v["bandwidth_upstream_bytes"]), _fmt_bytes(v["bandwidth_downstream_bytes"]),
            f"{v['total_time_seconds']:.3f}",
        ])
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
        f"time: model load {r['model_load_time_seconds']:.2f} s, frame extraction {r['frame_extraction_time_seconds']:.2f} s, "
        f"preprocess {r['preprocess_time_seconds']:.2f} s, inference {r['inference_time_seconds']:.2f} s, "
        f"total {r['total_pipeline_time_seconds']:.2f} s"
    )
    out.print(
        f"bandwidth: {_fmt_bytes(r['bandwidth_total_upstream_bytes'])} from the origin in {r['bandwidth_num_requests']} "
        f"requests, {_fmt_bytes(r['bandwidth_total_downstream_bytes'])} of samples fed to the decoder"
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


def _gop_lengths(is_sync) -> list[int]:
    import numpy as np

    sync = np.flatnonzero(np.asarray(is_sync))
    if len(sync) == 0:
        return []
    return np.diff(np.append(sync, len(is_sync))).tolist()


def inspect_video(url: str, *, frames: Sequence[int] | None = None, backend: str = "cpu",
                  storage_options: dict | None = None) -> dict[str, Any]:
    """Metadata, access path, index summary and the byte ranges planned for a few frames.

    Nothing is decoded: only the index (or the demux packet table) is read.
    """
    from ._reader import VideoReader

    with VideoReader(url, backend=backend, storage_options=storage_options) as reader:
        m = reader.metadata
        info: dict[str, Any] = {
            "url": reader.url,
            "metadata": {
                "num_frames": m.num_frames, "fps": m.fps, "duration_seconds": m.duration_seconds,
                "begin_stream_seconds": m.begin_stream_seconds, "width": m.width, "height": m.height,
                "codec": m.codec, "pixel_format": m.pixel_format, "bit_depth": m.bit_depth,
                "rotation": m.rotation, "container": m.container,
            },
            "access_path": m.access_path,
            "backend": reader.backend,
        }
        idx = reader.index
        size = getattr(idx, "file_size", None) if idx is not None else None
        info["file_size_bytes"] = size
        if idx is not None:
            gops = _gop_lengths(idx.is_sync)
            info["index"] = {
                "num_samples": idx.num_samples,
                "num_keyframes": int(idx.is_sync.sum()),
                "fragmented": bool(idx.fragmented),
                "timescale": idx.timescale,
                "sample_entry": idx.sample_entry,
                "gop_length_min": min(gops) if gops else None,
                "gop_length_max": max(gops) if gops else None,
                "gop_length_mean": (sum(gops) / len(gops)) if gops else None,
                "index_nbytes": idx.index_nbytes,
                "index_requests": idx.index_requests,
                "samples_nbytes": int(idx.sizes.sum()),
            }
            n = m.num_frames
            picks = list(frames) if frames else sorted({0, n // 2, n - 1}) if n else []
            planned = []
            for f in picks:
                plan = reader.plan([f])
                planned.append({
                    "frame": f,
                    "samples": [plan.groups[0].first_sample, plan.groups[0].last_sample],
                    "ranges": [[r.start, r.stop] for r in plan.ranges],
                    "nbytes": plan.nbytes,
                    "fraction_of_file": (plan.nbytes / size) if size else None,
                })
            info["plans"] = planned
        else:
            info["index"] = None
            info["plans"] = []
            info["note"] = "demux fallback: PyAV reads the container; no byte-range plan"
        info["transfer"] = reader.transfer_stats.as_dict()
    return info


def _cmd_inspect(args: argparse.Namespace, out: _Out) -> int:
    try:
        info = inspect_video(args.url, frames=args.frames, backend=args.backend)
    except Exception as e:
        out.print(f"error: {type(e).__name__}: {_redact(str(e))}")
        return EXIT_VIDEO_FAILED
    m = info["metadata"]
    out.print(f"{info['url']}")
    out.print(
        f"  {m['codec']} {m['width']}x{m['height']}, {m['num_frames']} frames, {m['fps']:.3f} fps, "
        f"{m['duration_seconds']:.3f} s (first frame at {m['begin_stream_seconds']:.3f} s), container {m['container']}"
    )
    out.print(f"  access path: {info['access_path']} | backend: {info['backend']} | file size: {_fmt_bytes(info['file_size_bytes'])}")
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
            [[p["frame"], f"{p['samples'][0]}..{p['samples'][1]}", " ".join(f"[{a},{b})" for a, b in p["ranges"]),
              p["nbytes"], f"{100 * p['fraction_of_file']:.2f} %" if size else "-"] for p in info["plans"]],
        )
    else:
        out.print(f"  {info.get('note')}")
    t = info["transfer"]
    out.print(f"  transferred so far: {_fmt_bytes(t['bytes_received'])} in {t['num_requests']} requests")
    if args.json:
        _write_json(info, args.json, out)
    return EXIT_OK


# --------------------------------------------------------------------------- info


def collect_info() -> dict[str, Any]:
    """Platform, torch/CUDA and decoder availability (``videoloader.decoders.platform_info`` when present)."""
    import importlib.util
    import platform

    import torch

    info: dict[str, Any] = {
        "videoloader_version": _version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    optional = {}
    for mod in ("av", "torchvision", "PyNvVideoCodec", "torchdata", "wandb", "modal", "torchcodec", "decord"):
        optional[mod] = importlib.util.find_spec(mod) is not None
    info["optional_modules"] = optional
    platform_info = _platform_info_fn()
    if platform_info is None:
        info["decoders"] = {"error": "decoder registry unavailable (videoloader.decoders has no platform_info)"}
    else:
        try:
            info["decoders"] = platform_info()
        except Exception as e:  # never let a probe kill `info`
            info["decoders"] = {"error": f"{type(e).__name__}: {e}"}
    return info


def _platform_info_fn():
    """``videoloader.decoders.platform_info`` (the hardware engineer's registry), or None if missing."""
    import importlib

    for module in ("videoloader.decoders", "videoloader.decoders._registry", "videoloader.decoders._platform"):
        try:
            fn = getattr(importlib.import_module(module), "platform_info", None)
        except ImportError:
            continue
        if callable(fn):
            return fn
    return None


def _version() -> str:
    from . import __version__

    return __version__


def _cmd_info(args: argparse.Namespace, out: _Out) -> int:
    info = collect_info()
    out.print(f"videoloader {info['videoloader_version']} | Python {info['python']} | {info['platform']}")
    out.print(
        f"torch {info['torch_version']} | CUDA available: {info['cuda_available']} (built for {info['cuda_version']})"
        f"{' | GPU ' + info['gpu_name'] if info['gpu_name'] else ''} | MPS: {info['mps_available']}"
    )
    out.print("optional modules: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["optional_modules"].items()))
    dec = info["decoders"]
    if isinstance(dec, dict):
        out.table("decoders", ["key", "value"], [[k, json.dumps(v, default=str) if not isinstance(v, str) else v] for k, v in dec.items()])
    if args.json:
        _write_json(info, args.json, out)
    return EXIT_OK


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from .inference import DEFAULT_MODEL

    p = argparse.ArgumentParser(prog="videoloader", description="Frame-exact random access to remote videos.")
    sub = p.add_subparsers(dest="command", required=True)

    inf = sub.add_parser("infer", help="classify frames sampled from videos and report timings and bytes")
    inf.add_argument("urls", nargs="*", metavar="URL", help="video URLs or paths (none: the bundled sample clip)")
    inf.add_argument("--urls-file", metavar="F", help="file with one URL per line ('#' comments; '-' for stdin)")
    inf.add_argument("--frames", type=int, default=1, metavar="N", help="frames per video (default 1)")
    inf.add_argument("--seed", type=int, default=None, metavar="S", help="random seed of the frame choice")
    inf.add_argument("--offset-max-seconds", type=float, default=None, metavar="T", help="sample only the first T seconds")
    inf.add_argument("--model", default=DEFAULT_MODEL, metavar="M", help=f"torchvision model name (default {DEFAULT_MODEL})")
    inf.add_argument("--weights", default="DEFAULT", metavar="W",
                     help="DEFAULT (pretrained, downloaded once), a weights name, 'none' (random init) or a checkpoint path")
    inf.add_argument("--weights-dir", default=None, metavar="DIR", help="weights cache (default $TORCH_HOME/hub)")
    inf.add_argument("--backend", default="auto", metavar="B", help="decoder: auto, cpu, nvdec, videotoolbox")
    inf.add_argument("--device", default="auto", metavar="D", help="model device: auto, cpu, cuda, cuda:1, mps")
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
    ins.add_argument("--frames", type=int, nargs="*", default=None, metavar="I", help="frames to plan (default first, middle, last)")
    ins.add_argument("--backend", default="cpu", metavar="B")
    ins.add_argument("--json", default=None, metavar="OUT")
    ins.set_defaults(func=_cmd_inspect)

    nfo = sub.add_parser("info", help="platform and decoder availability")
    nfo.add_argument("--json", default=None, metavar="OUT")
    nfo.set_defaults(func=_cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used by the console script)."""
    _configure_logging()
    from .inference import apply_log_level_from_env

    apply_log_level_from_env()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 on --help
        return int(e.code or 0)
    # With --json - the JSON owns stdout; the human-readable report goes to stderr.
    out = _Out(sys.stderr if getattr(args, "json", None) == "-" else sys.stdout)
    return args.func(args, out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
