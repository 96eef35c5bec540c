"""Helpers shared by the benchmark scripts (not part of the library).

* :func:`ensure_torchcodec_ffmpeg` makes torchcodec loadable on machines with no
  system FFmpeg by pointing the dynamic linker at the FFmpeg 8 libraries that
  the PyAV wheel bundles (``av.libs``), then re-executing the script once.
* :func:`emit` prints one JSON line per measurement (machine-readable results).
* :func:`markdown_table` renders rows of dicts.
* :data:`RECIPES` and :func:`recipe` name the synthetic videos' recipes, so
  that the scripts which share a file (and its cache) share one spelling;
  :func:`media_path` makes (and caches) a video from a recipe with
  tests/media.py.

The scripts import ``videoloader`` and ``tests/`` from this checkout, unless
a ``PYTHONPATH`` entry holds another checkout's ``videoloader`` (a baseline
worktree, say): then from that one, so that one script measures both. Results
and cached media stay under this checkout's ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MEDIA_DIR = RESULTS / "media"


def _code_root() -> Path:
    """The checkout to import ``videoloader`` and ``tests/`` from: the first
    ``PYTHONPATH`` entry that holds a ``videoloader`` package, else this one."""
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and (Path(entry) / "videoloader" / "__init__.py").is_file():
            return Path(entry).resolve()
    return ROOT


CODE_ROOT = _code_root()
for p in (str(CODE_ROOT / "tests"), str(CODE_ROOT)):  # first on the path, even where PYTHONPATH put it later
    if p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)

_REEXEC_FLAG = "VIDEOLOADER_BENCH_REEXEC"


def _av_libs_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("av")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).resolve().parent.parent / "av.libs"
    return d if d.is_dir() else None


def torchcodec_status() -> str | None:
    """None when torchcodec's core library loads, else a one-line reason."""
    try:
        from torchcodec._internally_replaced_utils import load_core_libraries

        load_core_libraries()
        return None
    except Exception as e:  # ImportError, RuntimeError from the loader
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"


def ensure_torchcodec_ffmpeg() -> str | None:
    """Make torchcodec importable; returns None if it works, else why not.

    torchcodec dlopens ``libavutil.so.N`` etc. by soname. PyAV's wheel ships
    FFmpeg under hashed names (``libavutil-5809ad29.so.60``), so we link the
    plain sonames to those files in benchmarks/results/_ffmpeg_libs and re-exec
    this process with LD_LIBRARY_PATH set (the linker reads it only at start).
    """
    status = torchcodec_status()
    if status is None or os.environ.get(_REEXEC_FLAG):
        return status
    libs = _av_libs_dir()
    if libs is None:
        return status
    link_dir = RESULTS / "_ffmpeg_libs"
    link_dir.mkdir(parents=True, exist_ok=True)
    for f in libs.iterdir():
        m = re.match(r"^(lib(?:av\w+|sw\w+))-[0-9a-f]+\.so\.(\d+)", f.name)
        if m:
            link = link_dir / f"{m.group(1)}.so.{m.group(2)}"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(f)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(link_dir), str(libs)] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
    )
    env[_REEXEC_FLAG] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return status  # not reached


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"device": "cpu", "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("videoloader", "av", "torch", "torchcodec", "decord", "fsspec", "numpy"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception as e:
            out[mod] = f"unavailable ({type(e).__name__})"
    return out


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Print one measurement as one JSON line, so that runs can be collected and compared."""
    print(json.dumps(record, sort_keys=False, default=_json_default), flush=True)
    return record


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


#: The synthetic videos' recipes by name: tests/media.make_video's keyword
#: arguments, less ``num_frames`` (:func:`recipe` sets it from a length). A
#: cached file is reused only while its ``.recipe.json`` sidecar holds the same
#: recipe, so a change here re-encodes every file made from it (a 10-minute
#: 720p file takes about 6 minutes).
RECIPES: dict[str, dict[str, Any]] = {
    # x264/x265 veryfast, 3 B-frames, 2 s GOPs: bandwidth.py's and proxy.py's
    # 720p files, random_access.py's short files (which set their own GOPs).
    "h264_720p": dict(
        codec="h264", width=1280, height=720, fps=30, gop=60, bframes=3, preset="veryfast", movflags="faststart"
    ),
    "hevc_720p": dict(
        codec="hevc", width=1280, height=720, fps=30, gop=60, bframes=3, preset="veryfast", movflags="faststart"
    ),
    "h264_1080p": dict(
        codec="h264", width=1920, height=1080, fps=30, gop=60, bframes=3, preset="veryfast", movflags="faststart"
    ),
    "hevc_1080p": dict(
        codec="hevc", width=1920, height=1080, fps=30, gop=60, bframes=3, preset="veryfast", movflags="faststart"
    ),
    # x264 ultrafast, no B-frames, no noise: quick to encode at 10 minutes.
    # random_access.py's and bandwidth_limited.py's long file (one cache).
    "h264_720p_long": dict(
        codec="h264", width=1280, height=720, fps=30, gop=60, preset="ultrafast", noise=0, movflags="faststart"
    ),
}


def recipe(name: str, seconds: float, **overrides: Any) -> dict[str, Any]:
    """``RECIPES[name]`` for a video of ``seconds`` (its frame count), with ``overrides`` applied."""
    base = RECIPES[name]
    return {**base, "num_frames": int(round(seconds * base["fps"])), **overrides}


def media_path(name: str, **recipe: Any) -> tuple[Path, float]:
    """Make ``MEDIA_DIR/name.<container>`` with tests/media.make_video once.

    The file is reused while a sidecar holds the same recipe. Returns the path
    and the seconds spent generating it (0.0 when reused).
    """
    import media

    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    path = MEDIA_DIR / f"{name}.{recipe.get('container', 'mp4')}"
    sidecar = path.with_suffix(path.suffix + ".recipe.json")
    key = json.dumps(recipe, sort_keys=True, default=str)
    if path.exists() and sidecar.exists() and sidecar.read_text() == key:
        return path, 0.0
    t0 = time.perf_counter()
    media.make_video(path, **recipe)
    sidecar.write_text(key)
    return path, time.perf_counter() - t0
