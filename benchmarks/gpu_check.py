"""NVDEC device check: frame identity vs the CPU decoder, and frames/s side by side.

Needs on the GPU machine: torch with CUDA, numpy and PyNvVideoCodec >= 2.2.4;
not PyAV (``import videoloader`` and the NVDEC path import none). Run::

    python benchmarks/gpu_check.py --json "$OUT/gpu_check.json"

First, on any machine with PyAV (once)::

    python benchmarks/gpu_check.py --prepare

``--prepare`` encodes the test videos into ``benchmarks/gpu_check_data/``
(git-ignored): for identity, 480x270 H.264 8-bit with B-frames, H.264 with
open GOPs, HEVC 10-bit and AV1; for speed, several 1920x1080 H.264 videos.
For each it stores the MP4, its sample table (used when ``videoloader.mp4``
cannot index the file), RGB frames of a CPU (FFmpeg) decode for the identity
frames, and the CPU frames/s measured there. It prints the folder's size.

What to carry to a device machine (the device tool's ``carry`` holds 64 MiB
in all): ``benchmarks/gpu_check_data/`` (``--prepare`` prints its size; keep
it under 19 MiB) and the PyNvVideoCodec wheel for the device's Python (cp312,
about 26 MiB) in a git-ignored folder, installed there with ``pip install
--no-deps <wheel>``. Not PyAV (34 MiB): the CPU baseline there is measured
with OpenCV's FFmpeg decode when ``cv2`` imports (the device image has
opencv-python-headless), else with PyAV when it imports, else the prepared
numbers from the other machine; each row says which (``cpu_source``).

The check decodes with ``NvdecDecoder`` and reports PSNR against the stored
CPU frames (pass: >= 40 dB for 8-bit; >= 35 dB for 10-bit, where swscale's
BT.2020 10-bit path differs from ours even for a perfect decode, 37.6 dB
measured), and frames/s for sequential decode and random access (16 random
frames per 1080p video) for NVDEC and the CPU. Every case runs on its own:
an exception is recorded in that case's row (``error``, ``traceback``) and
the run goes on. The JSON is always written (default
``benchmarks/gpu_check_data/result.json``), also when NVDEC is unavailable;
the exit status is 0 when every check passed, 1 when one failed, 2 when
NVDEC is unavailable and ``VIDEOLOADER_REQUIRE_HW=1``, 3 when data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "gpu_check_data"
CASES = {
    # name: (codec, encoder kwargs): identity cases (480x270), CPU vs NVDEC frames.
    "h264": ("h264", dict(pix_fmt="yuv420p", bframes=2, colorspace=1, color_range=1)),
    "h264_opengop": (
        "h264",
        dict(pix_fmt="yuv420p", bframes=3, colorspace=1, color_range=1, options={"x264-params": "open-gop=1"}),
    ),
    "hevc10": (
        "hevc",
        dict(
            pix_fmt="yuv420p10le",
            bframes=2,
            colorspace=9,
            color_range=1,
            options={"x265-params": "log-level=error:open-gop=0"},
        ),
    ),
    "av1": ("av1", dict(pix_fmt="yuv420p", colorspace=1, color_range=1)),
}
IDENTITY_SIZE = (480, 270)
SPEED_SIZE = (1920, 1080)
SPEED_VIDEOS = 3
"""1080p H.264 videos (different content seeds) for the frames/s rows."""
NUM_FRAMES = 96
SPEED_FRAMES = 60
GOP = 24
NUM_RANDOM = 16
"""Random frames per speed video."""
EXPECTED_FRAMES = 10
PSNR_MIN_DB = 40.0
PSNR_MIN_DB_10BIT = 35.0
DEFAULT_JSON = DATA / "result.json"


# ------------------------------------------------------------------------------ tables


def _table_from_index(path: Path) -> dict | None:
    """The sample table from our own MP4 index (stdlib + numpy), if it imports."""
    try:
        from videoloader.mp4 import load_index

        class _LocalSource:  # the RangeSource surface load_index uses, on a local file
            def __init__(self, p: Path) -> None:
                self.url, self._data = str(p), p.read_bytes()
                self.size, self.validator = len(self._data), None
                self.stats = type("S", (), {"add": lambda *a, **k: None})()

            def read_ranges(self, ranges):
                return [self._data[r.start : r.stop] for r in ranges]

            def read(self, start, stop):
                return self._data[start:stop]

        idx = load_index(_LocalSource(path), cache=None)
    except Exception:
        return None
    return dict(
        offsets=idx.offsets,
        sizes=idx.sizes,
        pts=idx.pts,
        dts=idx.dts,
        is_sync=idx.is_sync,
        codec=idx.codec,
        extradata=idx.extradata or b"",
        width=idx.width,
        height=idx.height,
        timescale=idx.timescale,
        bit_depth=idx.bit_depth or 8,
        source="videoloader.mp4",
    )


def _table_from_prepared(npz: Path) -> dict:
    z = np.load(npz, allow_pickle=False)
    return dict(
        offsets=z["offsets"],
        sizes=z["sizes"],
        pts=z["pts"],
        dts=z["dts"],
        is_sync=z["is_sync"],
        codec=str(z["codec"]),
        extradata=z["extradata"].tobytes(),
        width=int(z["width"]),
        height=int(z["height"]),
        timescale=int(z["timescale"]),
        bit_depth=int(z["bit_depth"]),
        source="prepared",
    )


def _packets(table: dict, data: bytes):
    from videoloader.decoders._base import Packet

    return [
        Packet(data[o : o + s], int(p), int(d), 1, bool(k))
        for o, s, p, d, k in zip(
            table["offsets"], table["sizes"], table["pts"], table["dts"], table["is_sync"], strict=False
        )
    ]


def _config(table: dict):
    from videoloader.decoders._base import StreamConfig

    return StreamConfig(
        table["codec"],
        table["extradata"] or None,
        table["width"],
        table["height"],
        table["timescale"],
        bit_depth=table["bit_depth"],
    )


def _groups(packets):
    keys = [i for i, p in enumerate(packets) if p.is_sync] + [len(packets)]
    return [packets[a:b] for a, b in zip(keys, keys[1:], strict=False)]


def _group_of(packets, groups, pts: int):
    for g in groups:
        if any(p.pts == pts for p in g):
            return g
    raise KeyError(pts)


# ----------------------------------------------------------------------------- prepare


def _jobs() -> list[tuple[str, str, dict, tuple[int, int], int]]:
    """``(file stem, codec, encoder kwargs, (w, h), seed)`` of every prepared video."""
    jobs = [(f"{name}_identity", codec, kw, IDENTITY_SIZE, 0) for name, (codec, kw) in CASES.items()]
    h264 = CASES["h264"][1]
    jobs += [(f"h264_speed{i}", "h264", h264, SPEED_SIZE, i) for i in range(SPEED_VIDEOS)]
    return jobs


def prepare() -> None:
    import io

    import av

    sys.path.insert(0, str(ROOT / "tests"))
    from videoloader.decoders._pyav import PyAVDecoder

    from _hw_media import encode  # the same recipes as the unit tests

    DATA.mkdir(parents=True, exist_ok=True)
    summary = {}
    for stem, codec, kw, (w, h), seed in _jobs():
        t0 = time.perf_counter()
        speed = "_speed" in stem
        frames_n = SPEED_FRAMES if speed else NUM_FRAMES
        data = encode(codec, width=w, height=h, num_frames=frames_n, gop=GOP, smooth=speed, seed=seed, **kw)
        mp4 = DATA / f"{stem}.mp4"
        mp4.write_bytes(data)
        with av.open(io.BytesIO(data)) as c:
            st = c.streams.video[0]
            rows = [(p.pos, p.size, p.pts, p.dts, p.is_keyframe) for p in c.demux(st) if p.size]
            extradata = st.codec_context.extradata or b""
            timescale = st.time_base.denominator // st.time_base.numerator
        table = dict(
            offsets=np.array([r[0] for r in rows], np.int64),
            sizes=np.array([r[1] for r in rows], np.int64),
            pts=np.array([r[2] for r in rows], np.int64),
            dts=np.array([r[3] for r in rows], np.int64),
            is_sync=np.array([r[4] for r in rows], bool),
            codec=codec,
            extradata=extradata,
            width=w,
            height=h,
            timescale=timescale,
            bit_depth=10 if "10" in kw["pix_fmt"] else 8,
        )
        packets = _packets(table, data)
        groups = _groups(packets)
        if speed:
            extra = {f"cpu_{k}": v for k, v in _speed(lambda cfg: PyAVDecoder(cfg), table, packets).items()}
        else:
            rng = np.random.default_rng(0)
            chosen = np.sort(rng.choice(np.sort(table["pts"]), EXPECTED_FRAMES, replace=False))
            dec = PyAVDecoder(_config(table))
            frames = [
                dec.decode_group(_group_of(packets, groups, int(pts)), [int(pts)])[int(pts)].numpy() for pts in chosen
            ]
            extra = dict(expected_pts=chosen, expected_rgb=np.stack(frames))
        np.savez_compressed(
            DATA / f"{stem}.npz",
            **{k: v for k, v in table.items() if k not in ("extradata", "codec")},
            codec=np.array(codec),
            extradata=np.frombuffer(extradata, np.uint8),
            **extra,
        )
        summary[stem] = round(time.perf_counter() - t0, 1)
    size = sum(f.stat().st_size for f in DATA.iterdir() if f.is_file())
    print(json.dumps({"prepared": str(DATA), "bytes": size, "mib": round(size / 2**20, 2), "seconds": summary}))


# ------------------------------------------------------------------------------- check


def _sync(device_is_cuda: bool) -> None:
    if device_is_cuda:
        import torch

        torch.cuda.synchronize()


def _speed(make, table, packets) -> dict:
    """Sequential and random-access frames/s for one backend factory."""
    config = _config(table)
    groups = _groups(packets)
    dec = make(config)
    cuda = getattr(dec, "name", "") == "nvdec"
    # Warm-up (decoder creation, CUDA kernels) outside the timing.
    dec.decode_group(groups[0], [groups[0][0].pts])
    _sync(cuda)
    t0 = time.perf_counter()
    n = 0
    for g in groups:
        n += len(dec.decode_group(g, [p.pts for p in g]))
    _sync(cuda)
    seq = n / (time.perf_counter() - t0)
    rng = np.random.default_rng(1)
    targets = rng.choice(np.asarray(table["pts"]), NUM_RANDOM)
    t0 = time.perf_counter()
    for pts in targets:
        g = _group_of(packets, groups, int(pts))
        # Feed from the sync sample to the last sample needed (decode order).
        last = max(i for i, p in enumerate(g) if p.pts <= pts)
        dec.decode_group(g[: last + 1], [int(pts)])
    _sync(cuda)
    rnd = NUM_RANDOM / (time.perf_counter() - t0)
    dec.close()
    return {"sequential_fps": round(seq, 1), "random_fps": round(rnd, 1)}


def _speed_opencv(mp4: Path, table: dict) -> dict:
    """The same two measures with OpenCV's FFmpeg decode (all cores), for a machine without PyAV.

    Random access seeks by frame number (OpenCV decodes from the preceding
    keyframe), 16 frames as for the other backends.
    """
    import cv2

    cap = cv2.VideoCapture(str(mp4))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {mp4.name}")
    try:
        t0 = time.perf_counter()
        n = 0
        while cap.grab():
            ok, _ = cap.retrieve()
            n += int(ok)
        seq = n / (time.perf_counter() - t0)
        rng = np.random.default_rng(1)
        targets = rng.integers(0, len(table["pts"]), NUM_RANDOM)
        t0 = time.perf_counter()
        for i in targets:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            cap.read()
        rnd = NUM_RANDOM / (time.perf_counter() - t0)
    finally:
        cap.release()
    return {"sequential_fps": round(seq, 1), "random_fps": round(rnd, 1)}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _cpu_speed(mp4: Path, npz: Any, table: dict, packets) -> tuple[dict, str]:
    """CPU frames/s with what this machine has: OpenCV, else PyAV, else the prepared numbers."""
    try:
        import cv2  # noqa: F401

        return _speed_opencv(mp4, table), "opencv-ffmpeg (live, this machine)"
    except ImportError:
        pass
    try:
        from videoloader.decoders._pyav import PyAVDecoder
    except ImportError:
        prepared = {"sequential_fps": float(npz["cpu_sequential_fps"]), "random_fps": float(npz["cpu_random_fps"])}
        return prepared, "prepared with PyAV on another machine (not this one)"
    return _speed(lambda cfg: PyAVDecoder(cfg), table, packets), "pyav (live, this machine)"


def _identity_case(name: str, nv_cls) -> dict:
    from videoloader.decoders._base import OutputSpec

    ident = DATA / f"{name}_identity.npz"
    mp4 = DATA / f"{name}_identity.mp4"
    table = _table_from_index(mp4) or _table_from_prepared(ident)
    z = np.load(ident)
    packets = _packets(table, mp4.read_bytes())
    groups = _groups(packets)
    bar = PSNR_MIN_DB_10BIT if table["bit_depth"] > 8 else PSNR_MIN_DB
    result: dict[str, Any] = {"case": name, "kind": "identity", "index_source": table["source"], "psnr_bar_db": bar}
    dec = nv_cls(_config(table), output=OutputSpec(device="cuda"))
    psnrs, missing = [], []
    try:
        for pts, want in zip(z["expected_pts"], z["expected_rgb"], strict=False):
            got = dec.decode_group(_group_of(packets, groups, int(pts)), [int(pts)])
            if int(pts) not in got:
                missing.append(int(pts))
                psnrs.append(0.0)
                continue
            psnrs.append(_psnr(got[int(pts)].cpu().numpy(), want))
    finally:
        dec.close()
    result["psnr_db"] = [round(p, 2) for p in psnrs]
    result["psnr_min_db"] = round(min(psnrs), 2)
    result["missing_pts"] = missing
    result["ok"] = min(psnrs) >= bar and not missing
    return result


def _speed_case(stem: str, nv_cls) -> dict:
    from videoloader.decoders._base import OutputSpec

    mp4, npz_path = DATA / f"{stem}.mp4", DATA / f"{stem}.npz"
    npz = np.load(npz_path)
    table = _table_from_index(mp4) or _table_from_prepared(npz_path)
    packets = _packets(table, mp4.read_bytes())
    result: dict[str, Any] = {"case": stem, "kind": "speed", "size": f"{table['width']}x{table['height']}"}
    if nv_cls is not None:
        result["nvdec"] = _speed(lambda cfg: nv_cls(cfg, output=OutputSpec(device="cuda")), table, packets)
    result["cpu"], result["cpu_source"] = _cpu_speed(mp4, npz, table, packets)
    if "nvdec" in result and result["cpu"]["random_fps"]:
        result["random_speedup"] = round(result["nvdec"]["random_fps"] / result["cpu"]["random_fps"], 2)
    result["ok"] = True
    return result


def _run(fn, *args) -> dict:
    """One case; an exception becomes the row's ``error`` and ``traceback``."""
    try:
        return fn(*args)
    except Exception as e:
        return {
            "case": args[0],
            "ok": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }


def check(json_path: str | None) -> int:
    out = Path(json_path) if json_path else DEFAULT_JSON
    doc: dict[str, Any] = {"platform": None, "nvdec": None, "results": [], "failures": []}

    def write() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1, default=str))
        print(f"wrote {out}")

    try:
        from videoloader.decoders._platform import platform_info
        from videoloader.decoders._registry import backend_availability, get_backend_class

        doc["platform"] = info = platform_info()
        ok, why = backend_availability()["nvdec"]
    except Exception as e:
        doc["failures"].append(f"setup: {type(e).__name__}: {e}")
        doc["setup_traceback"] = traceback.format_exc()
        write()
        return 1
    doc["nvdec"] = {"available": ok, "reason": why}
    try:
        import ctypes

        ctypes.CDLL("libnvcuvid.so.1")
        doc["libnvcuvid"] = True
    except OSError as e:
        doc["libnvcuvid"] = f"not loadable: {e}"
    device = f"{info.get('gpu_name')} (driver {info.get('driver_version')}, CUDA {info.get('cuda_version')})"
    doc["device"] = device
    if not ok:
        print(f"NVDEC unavailable: {why}")
        doc["failures"].append(f"NVDEC unavailable: {why}")
        if os.environ.get("VIDEOLOADER_REQUIRE_HW") == "1":
            write()
            return 2
    missing = [f"{stem}.npz" for stem, *_ in _jobs() if not (DATA / f"{stem}.npz").exists()]
    if missing:
        doc["failures"].append(f"missing {missing}: run `python benchmarks/gpu_check.py --prepare` first")
        write()
        return 3
    nv_cls = None
    if ok:
        try:
            nv_cls = get_backend_class("nvdec")
        except Exception as e:
            doc["failures"].append(f"nvdec class: {type(e).__name__}: {e}")
    rows = doc["results"]
    for name in CASES:
        if nv_cls is not None:
            rows.append(_run(_identity_case, name, nv_cls))
    for stem, *_ in _jobs():
        if "_speed" in stem:
            rows.append(_run(_speed_case, stem, nv_cls))
    doc["failures"] += [
        f"{r['case']}: {r.get('error') or 'below the PSNR bar or frames missing'}" for r in rows if not r["ok"]
    ]
    print(f"\nNVDEC check on {device}")
    print(f"{'case':16} {'PSNR min':>9} {'bar':>5} {'ok':>5}  error")
    for r in rows:
        if r.get("kind") != "speed":
            print(
                f"{r['case']:16} {r.get('psnr_min_db', '-'):>9} {r.get('psnr_bar_db', '-'):>5} {str(r['ok']):>5}  {r.get('error', '')}"
            )
    print(f"\n{'video':16} {'NVDEC seq':>10} {'NVDEC rnd':>10} {'CPU seq':>9} {'CPU rnd':>9} {'rnd x':>6}  cpu")
    for r in rows:
        if r.get("kind") == "speed" or "_speed" in r["case"]:
            nvs, cpu = r.get("nvdec", {}), r.get("cpu", {})
            print(
                f"{r['case']:16} {nvs.get('sequential_fps', '-'):>10} {nvs.get('random_fps', '-'):>10} "
                f"{cpu.get('sequential_fps', '-'):>9} {cpu.get('random_fps', '-'):>9} {r.get('random_speedup', '-'):>6}  "
                f"{r.get('cpu_source', r.get('error', ''))}"
            )
    write()
    for f in doc["failures"]:
        print("FAIL:", f)
    return 1 if doc["failures"] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepare", action="store_true", help="encode videos and store CPU reference frames (needs PyAV)")
    ap.add_argument("--json", help=f"where to write the result (default {DEFAULT_JSON})")
    args = ap.parse_args()
    if args.prepare:
        prepare()
        return 0
    return check(args.json)


if __name__ == "__main__":
    sys.exit(main())
