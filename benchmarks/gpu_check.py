"""NVDEC device check: frame identity vs the CPU decoder, and frames/s side by side.

Run on a GPU machine (H100: well under 5 minutes; needs torch with CUDA and
PyNvVideoCodec; PyAV only if you also want live CPU timings)::

    VIDEOLOADER_REQUIRE_HW=1 python benchmarks/gpu_check.py --json benchmarks/gpu_check_data/result.json

First, on any machine with PyAV (once; ``benchmarks/gpu_check_data/`` is
git-ignored, about 10 MB: name it in the device tool's ``carry`` list)::

    python benchmarks/gpu_check.py --prepare

``--prepare`` encodes small test videos (H.264 8-bit with B-frames, HEVC
10-bit, AV1; 480x270 for identity, 1280x720 for throughput) into
``benchmarks/gpu_check_data/``, and stores for each: the sample table (so the
NVDEC side needs neither PyAV nor fsspec; ``videoloader.mp4.load_index`` is
used instead when it imports), RGB frames of a CPU (FFmpeg) decode for a
subset of frames, and CPU frames/s measured there.

The check then decodes with :class:`videoloader.decoders._nvdec.NvdecDecoder`
and reports PSNR against the stored CPU frames (pass: >= 40 dB for every
frame), and frames/s for sequential decode and random access (NVDEC here; CPU
live if PyAV is importable, else the prepared numbers, marked as such). It
prints a table and one JSON line per (codec, backend), and exits non-zero if
an identity check fails (or NVDEC is unavailable under VIDEOLOADER_REQUIRE_HW=1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "gpu_check_data"
CASES = {
    # name: (codec, encoder kwargs)
    "h264": ("h264", dict(pix_fmt="yuv420p", bframes=2, colorspace=1, color_range=1)),
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
SPEED_SIZE = (1280, 720)
NUM_FRAMES = 96
GOP = 24
NUM_RANDOM = 48
EXPECTED_FRAMES = 10
PSNR_MIN_DB = 40.0


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


def prepare() -> None:
    import io

    import av

    sys.path.insert(0, str(ROOT / "tests"))
    from videoloader.decoders._pyav import PyAVDecoder

    from _hw_media import encode  # the same recipes as the unit tests

    DATA.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, (codec, kw) in CASES.items():
        for kind, (w, h) in (("identity", IDENTITY_SIZE), ("speed", SPEED_SIZE)):
            t0 = time.perf_counter()
            data = encode(codec, width=w, height=h, num_frames=NUM_FRAMES, gop=GOP, smooth=False, **kw)
            mp4 = DATA / f"{name}_{kind}.mp4"
            mp4.write_bytes(data)
            with av.open(io.BytesIO(data)) as c:
                st = c.streams.video[0]
                rows = [(p.pos, p.size, p.pts, p.dts, p.is_keyframe) for p in c.demux(st) if p.size]
                cc = st.codec_context
                extradata = cc.extradata or b""
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
            extra = {}
            packets = _packets(table, data)
            groups = _groups(packets)
            all_pts = np.sort(table["pts"])
            if kind == "identity":
                rng = np.random.default_rng(0)
                chosen = np.sort(rng.choice(all_pts, EXPECTED_FRAMES, replace=False))
                dec = PyAVDecoder(_config(table))
                frames = []
                for pts in chosen:
                    frames.append(dec.decode_group(_group_of(packets, groups, int(pts)), [int(pts)])[int(pts)].numpy())
                extra = dict(expected_pts=chosen, expected_rgb=np.stack(frames))
            else:
                extra = {f"cpu_{k}": v for k, v in _speed(lambda cfg: PyAVDecoder(cfg), table, packets).items()}
            np.savez_compressed(
                DATA / f"{name}_{kind}.npz",
                **{k: v for k, v in table.items() if k not in ("extradata", "codec")},
                codec=np.array(codec),
                extradata=np.frombuffer(extradata, np.uint8),
                **extra,
            )
            summary[f"{name}_{kind}"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"prepared": str(DATA), "seconds": summary}))


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


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def check(json_path: str | None) -> int:
    from videoloader.decoders._platform import platform_info
    from videoloader.decoders._registry import backend_availability, get_backend_class

    info = platform_info()
    ok, why = backend_availability()["nvdec"]
    device = f"{info.get('gpu_name')} (driver {info.get('driver_version')}, CUDA {info.get('cuda_version')})"
    rows, failures = [], []
    if not ok:
        print(f"NVDEC unavailable: {why}")
        if os.environ.get("VIDEOLOADER_REQUIRE_HW") == "1":
            return 2
    nv_cls = get_backend_class("nvdec") if ok else None
    try:
        from videoloader.decoders._pyav import PyAVDecoder
    except Exception:
        PyAVDecoder = None
    for name in CASES:
        ident = DATA / f"{name}_identity.npz"
        if not ident.exists():
            print(f"missing {ident}: run `python benchmarks/gpu_check.py --prepare` first")
            return 3
        result = {"case": name, "device": device}
        # Identity.
        mp4 = DATA / f"{name}_identity.mp4"
        table = _table_from_index(mp4) or _table_from_prepared(ident)
        z = np.load(ident)
        data = mp4.read_bytes()
        packets = _packets(table, data)
        groups = _groups(packets)
        if nv_cls is not None:
            from videoloader.decoders._base import OutputSpec

            dec = nv_cls(_config(table), output=OutputSpec(device="cuda"))
            psnrs = []
            for pts, want in zip(z["expected_pts"], z["expected_rgb"], strict=False):
                got = dec.decode_group(_group_of(packets, groups, int(pts)), [int(pts)])
                if int(pts) not in got:
                    failures.append(f"{name}: NVDEC did not return pts {int(pts)}")
                    psnrs.append(0.0)
                    continue
                psnrs.append(_psnr(got[int(pts)].cpu().numpy(), want))
            dec.close()
            result["psnr_min_db"] = round(min(psnrs), 2)
            result["identity_ok"] = min(psnrs) >= PSNR_MIN_DB
            result["index_source"] = table["source"]
            if not result["identity_ok"]:
                failures.append(f"{name}: min PSNR {min(psnrs):.2f} dB < {PSNR_MIN_DB}")
        # Speed.
        speed_mp4 = DATA / f"{name}_speed.mp4"
        speed_npz = np.load(DATA / f"{name}_speed.npz")
        stable = _table_from_index(speed_mp4) or _table_from_prepared(DATA / f"{name}_speed.npz")
        spackets = _packets(stable, speed_mp4.read_bytes())
        if nv_cls is not None:
            from videoloader.decoders._base import OutputSpec

            result["nvdec"] = _speed(lambda cfg: nv_cls(cfg, output=OutputSpec(device="cuda")), stable, spackets)
        if PyAVDecoder is not None:
            result["cpu"] = _speed(lambda cfg: PyAVDecoder(cfg), stable, spackets)
            result["cpu_source"] = "live"
        else:
            result["cpu"] = {
                "sequential_fps": float(speed_npz["cpu_sequential_fps"]),
                "random_fps": float(speed_npz["cpu_random_fps"]),
            }
            result["cpu_source"] = "prepared (other machine)"
        rows.append(result)
    print(f"\nNVDEC check on {device}; videos {SPEED_SIZE[0]}x{SPEED_SIZE[1]}, {NUM_FRAMES} frames, GOP {GOP}")
    print(
        f"{'case':8} {'PSNR min':>9} {'ok':>4} {'NVDEC seq':>10} {'NVDEC rnd':>10} {'CPU seq':>9} {'CPU rnd':>9}  cpu"
    )
    for r in rows:
        nvs = r.get("nvdec", {})
        print(
            f"{r['case']:8} {r.get('psnr_min_db', float('nan')):>9} {str(r.get('identity_ok', '-')):>4} "
            f"{nvs.get('sequential_fps', '-'):>10} {nvs.get('random_fps', '-'):>10} "
            f"{r['cpu']['sequential_fps']:>9} {r['cpu']['random_fps']:>9}  {r['cpu_source']}"
        )
    for r in rows:
        print(json.dumps(r))
    if json_path:
        Path(json_path).write_text(json.dumps({"platform": info, "results": rows, "failures": failures}, indent=1))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepare", action="store_true", help="encode videos and store CPU reference frames (needs PyAV)")
    ap.add_argument("--json", help="also write the full result to this file")
    args = ap.parse_args()
    if args.prepare:
        prepare()
        return 0
    return check(args.json)


if __name__ == "__main__":
    sys.exit(main())
