"""Perfect reads: bytes and requests per random frame over HTTP, against the minimum.

    .venv/bin/python benchmarks/bandwidth.py --quick     # ~1 min: corpus + 10 s 720p files
    .venv/bin/python benchmarks/bandwidth.py             # full: corpus + 60 s 720p files

For every MP4 kind of tests/media.py's corpus, plus a long 720p H.264 file
(faststart) and a fragmented one, served by the loopback server
(tests/server.py), it measures:

* index cost to open: body bytes and HTTP requests (HEAD included) that
  ``read_index(url)`` and ``VideoReader(url)`` cost (each on its own URL, so
  the process-wide index cache never answers);
* per random frame: 16 random frames, each read with a fresh
  ``get_frames_at([i])`` call, then the same 16 in one batched call;
* the minimum: bytes of the video packets from the sync packet to the target
  in decode order, from PyAV's own packet list (an independent demuxer); for a
  leading frame of an open GOP (pts before its GOP's keyframe) from the keyframe
  before. The batched minimum is the union of those packet spans;
* peers, same frames, same run: PyAV on an fsspec HTTP file object
  (``fsspec.filesystem("http").open(url)``, default 5 MiB blocks; ``av.open``,
  seek to the keyframe before each frame, decode to it), and full download.

Bytes are what the server wrote to the socket (its per-path counter); the
reader's TransferStats are recorded beside them and must agree.

Matroska/WebM kinds (``MKV_KINDS``) are measured the same way and, for the
same frames, on the demux fallback (our Matroska index switched off, so
FFmpeg demuxes over the tracked file).

Last, the long 720p H.264 video (10 minutes by default, ``--long600-seconds``)
is stream-copied to Matroska and to fragmented MP4 with a global sidx, with
an mfra only, and with neither (``--long600-containers``; cached beside it,
each checked for those boxes), and 8 random frames (``--long600-frames``) are
read at 50 ms server latency (``--long600-latency-ms``) on fresh readers: by
index (``len(reader)`` counted in the open, then one call per frame), by time
(one call per frame) and batched (one call); Matroska also through the demux
fallback. Per row: open and per-frame bytes, requests and seconds, s/frame
with the open included, the ratio to the container's own minimum, and whether
the frames are the same (pts and pixels).

Targets: videoloader bytes/frame <= 1.10x minimal (index included) on every
MP4 and Matroska kind, >= 5x fewer bytes than PyAV over fsspec.

Prints one JSON line per measurement, then markdown tables; writes
benchmarks/results/bandwidth.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

import _common  # noqa: E402  (sets sys.path for videoloader and tests/)
import media  # noqa: E402

#: Every MP4 kind of the corpus.
MP4_KINDS = [name for name, kind in media.KINDS.items() if kind.container == "mp4"]
#: Matroska / WebM kinds (tests/media.py KINDS and MKV_KINDS), each also measured on the demux fallback.
MKV_KINDS = [
    "mkv_h264",
    "webm_vp9",
    "mkv_hevc_10bit",
    "webm_av1",
    "mkv_no_cues",
    "mkv_vfr",
    "mkv_audio",
    "webm_audio_first",
    "mkv_live",
    "mkv_cues_front",
]
MATROSKA_SUFFIXES = (".mkv", ".webm")


# --------------------------------------------------------------------------- the minimum, from PyAV


class PacketTable:
    """Video packets in decode order, as PyAV's demuxer lists them."""

    def __init__(self, path: Path) -> None:
        import av

        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            rows = [(p.pts, p.dts, p.size, p.is_keyframe, p.is_discard) for p in c.demux(vs) if p.size > 0]
            if vs.time_base is None:
                raise RuntimeError(f"{path}: the video stream has no time base")
            self.time_base: Fraction = vs.time_base
        self.pts = np.array([r[0] for r in rows], dtype=np.int64)
        self.sizes = np.array([r[2] for r in rows], dtype=np.int64)
        self.key = np.array([r[3] for r in rows], dtype=bool)
        discard = np.array([r[4] for r in rows], dtype=bool)
        shown = np.flatnonzero(~discard)
        self.frame_to_packet = shown[np.argsort(self.pts[shown], kind="stable")]
        self.keys = np.flatnonzero(self.key)

    @property
    def num_frames(self) -> int:
        return len(self.frame_to_packet)

    def frame_pts(self, frame: int) -> int:
        return int(self.pts[self.frame_to_packet[frame]])

    def span(self, frame: int) -> tuple[int, int]:
        """Packets [first, last] (decode order) a decoder needs for ``frame``."""
        t = int(self.frame_to_packet[frame])
        pos = int(np.searchsorted(self.keys, t, side="right")) - 1
        if pos < 0:
            return 0, t
        # Open GOP: a leading picture (pts before its keyframe) needs the GOP before.
        while pos > 0 and self.pts[self.keys[pos]] > self.pts[t]:
            pos -= 1
        return int(self.keys[pos]), t

    def minimal_bytes(self, frames: list[int]) -> int:
        need = np.zeros(len(self.sizes), dtype=bool)
        for f in frames:
            a, b = self.span(f)
            need[a : b + 1] = True
        return int(self.sizes[need].sum())


# --------------------------------------------------------------------------- server accounting


class Meter:
    """Body bytes and requests the loopback server served for one name."""

    def __init__(self, server, name: str) -> None:
        self.server, self.path = server, "/" + name

    def read(self) -> tuple[int, int, int]:
        reqs = [r for r in self.server.requests if r[1] == self.path]
        gets = sum(1 for r in reqs if r[0] == "GET")
        return self.server.bytes_sent_for(self.path), len(reqs), gets

    def delta(self, before: tuple[int, int, int]) -> dict[str, int]:
        b, n, g = self.read()
        return {"bytes": b - before[0], "requests": n - before[1], "gets": g - before[2]}


# --------------------------------------------------------------------------- one video


def measure_video(server, kind: str, path: Path, *, num_frames: int, seed: int, base: dict) -> dict[str, Any]:
    import av
    import fsspec

    import videoloader

    table = PacketTable(path)
    rng = np.random.default_rng(seed)
    n = table.num_frames
    frames = (
        rng.choice(n, size=min(num_frames, n), replace=False).tolist()
        if n >= num_frames
        else rng.integers(0, n, size=num_frames).tolist()
    )
    file_size = path.stat().st_size
    data = path.read_bytes()
    out: dict[str, Any] = {"kind": kind, "file_bytes": file_size, "num_frames": n, "frames": frames}
    rec = dict(base, bench="bandwidth", video=kind, file_bytes=file_size)

    # -- index: read_index on its own URL (process cache cannot answer)
    name_ri = f"{kind}-read_index{path.suffix}"
    url = server.add(name_ri, data)
    m = Meter(server, name_ri)
    before = m.read()
    t0 = time.perf_counter()
    if path.suffix in MATROSKA_SUFFIXES:  # read_index is MP4's; the reader's container dispatch reads Matroska
        from videoloader._containers import load_container_index
        from videoloader.io import RangeSource

        with RangeSource(url) as source:
            idx = load_container_index(source, track=None, cache=None)[1]
    else:
        idx = videoloader.read_index(url)
    dt = time.perf_counter() - t0
    d = m.delta(before)
    out["read_index"] = dict(d, index_nbytes=idx.index_nbytes, index_requests=idx.index_requests, seconds=dt)
    emit(
        rec,
        reader="videoloader",
        op="read_index",
        seconds=dt,
        bytes_received=d["bytes"],
        bytes_requested=idx.index_nbytes,
        requests=d["requests"],
        frames=0,
    )

    # -- VideoReader open
    name_vl = f"{kind}-videoloader{path.suffix}"
    url = server.add(name_vl, data)
    m = Meter(server, name_vl)
    before = m.read()
    t0 = time.perf_counter()
    reader = videoloader.VideoReader(url, backend="cpu")
    # The open includes the complete index (a lazy Matroska reader builds it on first use).
    num_frames = reader.metadata.num_frames
    dt = time.perf_counter() - t0
    d = m.delta(before)
    st = reader.transfer_stats
    out["open"] = dict(
        d,
        stats_bytes_received=st.bytes_received,
        stats_requests=st.num_requests,
        index_nbytes=reader.index.index_nbytes if reader.index is not None else None,
        index_requests=reader.index.index_requests if reader.index is not None else None,
        seconds=dt,
        access_path=reader.access_path,
    )
    emit(
        rec,
        reader="videoloader",
        op="open",
        seconds=dt,
        bytes_received=d["bytes"],
        bytes_requested=st.bytes_requested,
        stats_bytes_received=st.bytes_received,
        requests=d["requests"],
        frames=0,
    )
    if num_frames != n:
        out["frame_count_mismatch"] = [num_frames, n]

    # -- per frame, one fresh call each
    per_frame = []
    vl_frames = {}
    for f in frames:
        snap = st.snapshot()
        before = m.read()
        t0 = time.perf_counter()
        batch = reader.get_frames_at([f])
        dt = time.perf_counter() - t0
        d = m.delta(before)
        delta = st.since(snap)
        vl_frames[f] = batch.data[0].permute(1, 2, 0).numpy()
        row = dict(
            frame=f,
            bytes=d["bytes"],
            gets=d["gets"],
            seconds=dt,
            plan_nbytes=reader.plan([f]).nbytes,
            stats_bytes_received=delta.bytes_received,
            stats_bytes_requested=delta.bytes_requested,
            minimal=table.minimal_bytes([f]),
        )
        per_frame.append(row)
        emit(
            rec,
            reader="videoloader",
            op="frame",
            frame=f,
            seconds=dt,
            frames_per_s=1 / dt,
            mb_per_s=d["bytes"] / dt / 1e6,
            bytes_received=d["bytes"],
            bytes_requested=delta.bytes_requested,
            stats_bytes_received=delta.bytes_received,
            requests=d["gets"],
            plan_nbytes=row["plan_nbytes"],
            minimal_bytes=row["minimal"],
        )
    out["per_frame"] = per_frame

    # -- one batched call of the same frames
    snap = st.snapshot()
    before = m.read()
    t0 = time.perf_counter()
    reader.get_frames_at(frames)
    dt = time.perf_counter() - t0
    d = m.delta(before)
    delta = st.since(snap)
    out["batched"] = dict(
        d,
        seconds=dt,
        plan_nbytes=reader.plan(frames).nbytes,
        stats_bytes_received=delta.bytes_received,
        minimal=table.minimal_bytes(frames),
    )
    emit(
        rec,
        reader="videoloader",
        op="batch",
        frames=len(frames),
        seconds=dt,
        frames_per_s=len(frames) / dt,
        mb_per_s=d["bytes"] / dt / 1e6,
        bytes_received=d["bytes"],
        bytes_requested=delta.bytes_requested,
        stats_bytes_received=delta.bytes_received,
        requests=d["gets"],
        plan_nbytes=out["batched"]["plan_nbytes"],
        minimal_bytes=out["batched"]["minimal"],
    )
    reader.close()

    if path.suffix in MATROSKA_SUFFIXES:
        out["demux"] = measure_demux(server, kind, path, frames, table, rec)

    # -- PyAV over an fsspec HTTP file object (default block size)
    name_fs = f"{kind}-pyav_fsspec{path.suffix}"
    url = server.add(name_fs, data)
    m = Meter(server, name_fs)
    before = m.read()
    t0 = time.perf_counter()
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    equal, differ = 0, []
    with fs.open(url, "rb") as fobj, av.open(fobj) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        d_open = m.delta(before)
        t_open = time.perf_counter() - t0
        for f in frames:
            target = table.frame_pts(f)
            container.seek(target, stream=vs, backward=True, any_frame=False)
            got = None
            for fr in container.decode(vs):
                if fr.pts is not None and fr.pts >= target:
                    got = fr if fr.pts == target else None
                    break
            if got is not None and np.array_equal(got.to_ndarray(format="rgb24"), vl_frames[f]):
                equal += 1
            else:
                differ.append(f)
    dt = time.perf_counter() - t0
    d = m.delta(before)
    out["pyav_fsspec"] = dict(
        d,
        open_bytes=d_open["bytes"],
        open_requests=d_open["requests"],
        seconds=dt,
        open_seconds=t_open,
        frames_equal_to_videoloader=equal,
        frames_differing=differ,
    )
    emit(
        rec,
        reader="pyav_fsspec",
        op="open+frames",
        frames=len(frames),
        seconds=dt,
        frames_per_s=len(frames) / dt,
        mb_per_s=d["bytes"] / dt / 1e6,
        bytes_received=d["bytes"],
        requests=d["requests"],
        frames_equal_to_videoloader=equal,
    )
    return out


class matroska_index_off:  # noqa: N801 - used as a context manager
    """Within: Matroska/WebM skip our index and go to the demux fallback (FFmpeg)."""

    def __enter__(self) -> None:
        from videoloader import _containers

        self._mod, self._was = _containers, _containers._MATROSKA_INDEX
        _containers._MATROSKA_INDEX = False

    def __exit__(self, *exc: object) -> None:
        self._mod._MATROSKA_INDEX = self._was


def measure_demux(server, kind: str, path: Path, frames: list[int], table: PacketTable, rec: dict) -> dict[str, Any]:
    """Open and per-frame bytes of the same frames through the demux fallback (own URL)."""
    import videoloader

    name = f"{kind}-demux{path.suffix}"
    url = server.add(name, path.read_bytes())
    m = Meter(server, name)
    before = m.read()
    t0 = time.perf_counter()
    with matroska_index_off():
        reader = videoloader.VideoReader(url, backend="cpu", index_cache=False)
    d_open = m.delta(before)
    t_open = time.perf_counter() - t0
    assert reader.access_path == "demux", reader.access_path
    per_frame = []
    for f in frames:
        before = m.read()
        t1 = time.perf_counter()
        reader.get_frames_at([f])
        dt = time.perf_counter() - t1
        d = m.delta(before)
        per_frame.append(dict(frame=f, bytes=d["bytes"], gets=d["gets"], seconds=dt, minimal=table.minimal_bytes([f])))
        emit(rec, reader="videoloader-demux", op="frame", frame=f, seconds=dt, bytes_received=d["bytes"])
    reader.close()
    return dict(
        open_bytes=d_open["bytes"],
        open_requests=d_open["requests"],
        open_seconds=t_open,
        per_frame=per_frame,
        seconds=time.perf_counter() - t0,
    )


#: Movie flags of the fragmented copies: a fragment per keyframe, no samples in the moov, offsets from the moof.
FRAG_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
#: Containers the long file is copied to (``--long600-containers``), with the
#: top-level boxes each fragmented copy must have and must not have.
LONG_CONTAINERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mkv": (frozenset(), frozenset()),
    "fmp4_sidx": (frozenset({"moof", "sidx"}), frozenset()),  # FFmpeg writes an mfra too; our index reads the sidx
    "fmp4_mfra": (frozenset({"moof", "mfra"}), frozenset({"sidx"})),
    "fmp4_none": (frozenset({"moof"}), frozenset({"sidx", "mfra"})),
}


def long_copy(src: Path, container: str) -> Path:
    """``src`` stream-copied to ``container`` (a ``LONG_CONTAINERS`` key), cached beside it.

    The copy is remade when it is older than ``src``, written under a
    temporary name first (an interrupted run leaves no half file behind),
    and its top-level boxes are checked against what its name promises.

    Raises:
        RuntimeError: a fragmented copy lacks a box it must have, or has one it must not.
    """
    dst = src.with_suffix(".mkv") if container == "mkv" else src.with_name(f"{src.stem}_{container}.mp4")
    if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
        part = dst.with_name(f"{dst.stem}.partial{dst.suffix}")
        if container == "mkv":
            media.remux(src, part)
        elif container == "fmp4_sidx":
            media.remux(src, part, options={"movflags": FRAG_MOVFLAGS + "+global_sidx"})
        elif container == "fmp4_mfra":
            media.remux(src, part, options={"movflags": FRAG_MOVFLAGS})
        elif container == "fmp4_none":
            part.write_bytes(media._strip_top_level(long_copy(src, "fmp4_mfra").read_bytes(), {"mfra"}))
        else:
            raise ValueError(f"unknown container {container!r}; choose from {sorted(LONG_CONTAINERS)}")
        part.replace(dst)
    need, forbid = LONG_CONTAINERS[container]
    if need or forbid:
        boxes = set(media.top_level_boxes(dst.read_bytes()))
        if not need <= boxes or boxes & forbid:
            raise RuntimeError(
                f"{dst}: top-level boxes {sorted(boxes)}; {container} must have {sorted(need)} "
                f"and none of {sorted(forbid)}"
            )
    return dst


#: The reads of each long-file row: by index (``len(reader)`` in the open, then
#: one call per frame), by time (one call per frame) and batched (one call).
LONG_MODES = ("by index", "by time", "batched")


def measure_long(
    src: Path, *, containers: list[str], num_frames: int, latency_ms: float, seed: int, base: dict
) -> dict[str, Any]:
    """Random frames of the long 720p video in several containers, at ``latency_ms`` per request.

    Each container's copy (``long_copy``) is served on its own URLs; each row
    is a fresh ``VideoReader(url, backend="cpu", index_cache=False)`` reading
    the same random frames by index, by time (each frame's start time from
    that container's own packet table, a little inside the frame) or in one
    batched call. Matroska is also read through the demux fallback (our
    index switched off). Bytes and requests are the server's, seconds
    wall-clock; the minimum is from each container's own packet table
    (PyAV's demuxer). Frames are checked against that container's by-index
    row (pts and pixels) and against the first container's (pixels).
    """
    import torch

    import videoloader

    from server import LoopbackServer

    frames: list[int] | None = None
    first_pixels: torch.Tensor | None = None
    out: dict[str, Any] = {"source": src.name, "latency_ms": latency_ms, "containers": {}}
    with LoopbackServer(latency_seconds=latency_ms / 1000) as server:
        for container in containers:
            path = long_copy(src, container)
            table = PacketTable(path)
            if frames is None:
                frames = np.random.default_rng(seed).choice(table.num_frames, size=num_frames, replace=False).tolist()
                out.update(frames=frames, num_frames=table.num_frames)
            elif table.num_frames != out["num_frames"]:
                raise RuntimeError(f"{path}: {table.num_frames} frames, the first container has {out['num_frames']}")
            data = path.read_bytes()
            ffmpeg_pts = [float(table.frame_pts(f) * table.time_base) for f in frames]
            times = [t + 1e-4 for t in ffmpeg_pts]
            minimal = {
                "one call per frame": sum(table.minimal_bytes([f]) for f in frames),
                "batched": table.minimal_bytes(frames),
            }
            c_out: dict[str, Any] = {
                "file": path.name,
                "file_bytes": len(data),
                "top_level_boxes": list(dict.fromkeys(media.top_level_boxes(data))) if path.suffix == ".mp4" else None,
                "ffmpeg_pts_seconds": ffmpeg_pts,
                "minimal_bytes": minimal,
                "rows": [],
            }
            rec = dict(base, bench="bandwidth", video=path.stem, file_bytes=len(data), latency_ms=latency_ms)
            ref: dict[str, Any] = {}
            for access in ("index", "demux") if container == "mkv" else ("index",):
                for mode in LONG_MODES:
                    name = f"long-{container}-{access}-{mode.replace(' ', '_')}{path.suffix}"
                    url = server.add(name, data)
                    m = Meter(server, name)
                    before = m.read()
                    t0 = time.perf_counter()
                    if access == "demux":
                        with matroska_index_off():
                            reader = videoloader.VideoReader(url, backend="cpu", index_cache=False)
                    else:
                        reader = videoloader.VideoReader(url, backend="cpu", index_cache=False)
                    if mode == "by index":
                        len(reader)  # the complete index, as a by-index reader needs it
                    t_open = time.perf_counter() - t0
                    d_open = m.delta(before)
                    per: list[dict[str, Any]] = []
                    pts: list[float] = []
                    pixels: list[torch.Tensor] = []
                    calls: list[list[int]] = [list(frames)] if mode == "batched" else [[f] for f in frames]
                    for j, call in enumerate(calls):
                        b = m.read()
                        t1 = time.perf_counter()
                        if mode == "by time":
                            got = reader.get_frames_played_at([times[j]])
                        else:
                            got = reader.get_frames_at(call)
                        per.append(dict(frames=call, seconds=time.perf_counter() - t1, **m.delta(b)))
                        pts.extend(float(x) for x in got.pts_seconds)
                        pixels.append(got.data)
                    total = time.perf_counter() - t0
                    reader.close()
                    server.remove(name)
                    stacked = torch.cat(pixels)
                    if not ref:
                        ref = {"pts": pts, "pixels": stacked}
                    if first_pixels is None:
                        first_pixels = stacked
                    row: dict[str, Any] = dict(
                        access_path=access,
                        mode=mode,
                        open_bytes=d_open["bytes"],
                        open_requests=d_open["requests"],
                        open_seconds=t_open,
                        frame_bytes=sum(r["bytes"] for r in per),
                        frame_requests=sum(r["requests"] for r in per),
                        frame_seconds=sum(r["seconds"] for r in per),
                        total_seconds=total,
                        minimal_bytes=minimal["batched" if mode == "batched" else "one call per frame"],
                        pts_seconds=pts,
                        same_pts=_same_pts(pts, ref["pts"]),
                        same_pixels=bool(torch.equal(stacked, ref["pixels"])),
                        pts_equal_ffmpeg=_same_pts(pts, ffmpeg_pts),
                        pixels_equal_first_container=bool(torch.equal(stacked, first_pixels)),
                        per_call=per,
                    )
                    c_out["rows"].append(row)
                    emit(
                        rec,
                        reader=f"videoloader-{access}",
                        op=f"open+frames {mode}",
                        frames=len(frames),
                        seconds=total,
                        open_seconds=t_open,
                        bytes_received=row["open_bytes"] + row["frame_bytes"],
                        requests=row["open_requests"] + row["frame_requests"],
                        minimal_bytes=row["minimal_bytes"],
                    )
            out["containers"][container] = c_out
    return out


def long_rows(v: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per container, access path and mode of ``measure_long``'s result."""
    k = len(v["frames"])
    return [
        {
            "container": c,
            "path": f"{r['access_path']}, {r['mode']}",
            "open bytes": r["open_bytes"],
            "open requests": r["open_requests"],
            "open s": r["open_seconds"],
            "bytes/frame": r["frame_bytes"] / k,
            "minimal bytes/frame": r["minimal_bytes"] / k,
            "ratio incl. open": (r["open_bytes"] + r["frame_bytes"]) / r["minimal_bytes"],
            "requests/frame": r["frame_requests"] / k,
            "s/frame excl. open": r["frame_seconds"] / k,
            "s/frame incl. open": r["total_seconds"] / k,
            "total s": r["total_seconds"],
            "same frames": r["same_pts"] and r["same_pixels"],
            "pts = FFmpeg": r["pts_equal_ffmpeg"],
            "pixels = first": r["pixels_equal_first_container"],
        }
        for c, cv in v["containers"].items()
        for r in cv["rows"]
    ]


def _same_pts(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


LONG_COLUMNS = [
    "container",
    "path",
    "open bytes",
    "open requests",
    "open s",
    "bytes/frame",
    "minimal bytes/frame",
    "ratio incl. open",
    "requests/frame",
    "s/frame excl. open",
    "s/frame incl. open",
    "total s",
    "same frames",
    "pts = FFmpeg",
    "pixels = first",
]


def emit(base: dict, **kw: Any) -> None:
    _common.emit({**base, **kw})


# --------------------------------------------------------------------------- summary


def summarise(v: dict[str, Any]) -> dict[str, Any]:
    k = len(v["per_frame"])
    vl = sum(r["bytes"] for r in v["per_frame"])
    mn = sum(r["minimal"] for r in v["per_frame"])
    idx_bytes = v["open"]["bytes"]
    pf = v["pyav_fsspec"]
    vl_total = idx_bytes + vl
    dm = v.get("demux")
    dm_total = dm["open_bytes"] + sum(r["bytes"] for r in dm["per_frame"]) if dm else None
    return {
        "kind": v["kind"],
        "index bytes": idx_bytes,
        "index requests": v["open"]["requests"],
        "videoloader bytes/frame": vl / k,
        "minimal bytes/frame": mn / k,
        "ratio": vl / mn if mn else float("nan"),
        "ratio incl. index": vl_total / mn if mn else float("nan"),
        "batch ratio": v["batched"]["bytes"] / v["batched"]["minimal"] if v["batched"]["minimal"] else float("nan"),
        "PyAV-fsspec bytes/frame": pf["bytes"] / k,
        "PyAV-fsspec / videoloader": pf["bytes"] / vl_total if vl_total else float("nan"),
        "demux open bytes": dm["open_bytes"] if dm else "",
        "demux bytes/frame": sum(r["bytes"] for r in dm["per_frame"]) / k if dm else "",
        "demux ratio incl. open": dm_total / mn if dm_total is not None and mn else "",
        "full download bytes": v["file_bytes"],
        "requests/frame": sum(r["gets"] for r in v["per_frame"]) / k,
        "PyAV frames equal": f"{pf['frames_equal_to_videoloader']}/{k}",
        "stats==server": all(r["bytes"] == r["stats_bytes_received"] for r in v["per_frame"])
        and v["open"]["bytes"] == v["open"]["stats_bytes_received"],
    }


COLUMNS = [
    "kind",
    "index bytes",
    "index requests",
    "videoloader bytes/frame",
    "minimal bytes/frame",
    "ratio",
    "ratio incl. index",
    "batch ratio",
    "PyAV-fsspec bytes/frame",
    "PyAV-fsspec / videoloader",
    "demux open bytes",
    "demux bytes/frame",
    "demux ratio incl. open",
    "full download bytes",
    "requests/frame",
    "PyAV frames equal",
    "stats==server",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="10 s long files instead of 60 s")
    ap.add_argument("--long-seconds", type=float, default=None, help="length of the 720p files (default 60, quick 10)")
    ap.add_argument("--frames", type=int, default=16, help="random frames per video")
    ap.add_argument("--kinds", nargs="*", default=None, help="corpus kinds (default: every MP4 and Matroska kind)")
    ap.add_argument("--no-long", action="store_true", help="skip the 720p files")
    ap.add_argument(
        "--long600-seconds",
        "--mkv-long-seconds",
        type=float,
        default=600.0,
        help="length of the long 720p file read in several containers (0: skip; default 600)",
    )
    ap.add_argument(
        "--long600-frames", "--mkv-long-frames", type=int, default=8, help="random frames on the long file (default 8)"
    )
    ap.add_argument(
        "--long600-latency-ms",
        "--mkv-long-latency-ms",
        type=float,
        default=50.0,
        help="server latency per request for the long file (default 50)",
    )
    ap.add_argument(
        "--long600-containers",
        nargs="+",
        choices=list(LONG_CONTAINERS),
        default=list(LONG_CONTAINERS),
        help="containers of the long file (default: all)",
    )
    ap.add_argument("--latency-ms", type=float, default=0.0, help="server latency per request")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bandwidth", help="results/<out>.json")
    args = ap.parse_args(argv)
    long_seconds = args.long_seconds or (10.0 if args.quick else 60.0)

    import videoloader

    import media
    from server import LoopbackServer

    print(f"# videoloader from {Path(videoloader.__file__).parent}, media from {Path(media.__file__)}", file=sys.stderr)
    base = {**_common.device_info(), "backend": "cpu"}
    videos: list[tuple[str, Path]] = []
    gen: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vl-bench-") as tmp:
        t0 = time.perf_counter()
        corpus = media.make_corpus(Path(tmp) / "corpus", args.kinds or MP4_KINDS + MKV_KINDS)
        gen["corpus"] = time.perf_counter() - t0
        videos += list(corpus.items())
        if not args.no_long:
            tag = f"{int(long_seconds)}s"
            p, gen[f"h264_720p_{tag}"] = _common.media_path(
                f"bw_h264_720p_{tag}", **_common.recipe("h264_720p", long_seconds)
            )
            videos.append((f"h264_720p_{tag}", p))
            p, gen[f"h264_720p_{tag}_frag"] = _common.media_path(
                f"bw_h264_720p_{tag}_frag", **_common.recipe("h264_720p", long_seconds, movflags=FRAG_MOVFLAGS)
            )
            videos.append((f"h264_720p_{tag}_frag", p))

        results = []
        with LoopbackServer(latency_seconds=args.latency_ms / 1000) as server:
            for i, (kind, path) in enumerate(videos):
                results.append(measure_video(server, kind, path, num_frames=args.frames, seed=args.seed + i, base=base))
        long600 = None
        if args.long600_seconds > 0:
            tag = f"{int(args.long600_seconds)}s"
            p, gen[f"h264_720p_{tag}"] = _common.media_path(
                f"bw_h264_720p_{tag}", **_common.recipe("h264_720p", args.long600_seconds)
            )
            long600 = measure_long(
                p,
                containers=args.long600_containers,
                num_frames=args.long600_frames,
                latency_ms=args.long600_latency_ms,
                seed=args.seed,
                base=base,
            )

    rows = [summarise(v) for v in results]
    table = _common.markdown_table(rows, COLUMNS)
    worst = max(rows, key=lambda r: r["ratio"] if r["ratio"] == r["ratio"] else 0)
    fs_ratios = [r["PyAV-fsspec / videoloader"] for r in rows]
    verdict = {
        "max_ratio_vs_minimal": worst["ratio"],
        "max_ratio_kind": worst["kind"],
        "kinds_over_1.10": [r["kind"] for r in rows if r["ratio"] > 1.10],
        "kinds_over_1.10_incl_index": [r["kind"] for r in rows if r["ratio incl. index"] > 1.10],
        "min_pyav_fsspec_over_videoloader": min(fs_ratios),
        "kinds_under_5x_vs_pyav_fsspec": [r["kind"] for r in rows if r["PyAV-fsspec / videoloader"] < 5],
    }
    print()
    print(
        f"## bandwidth ({'quick' if args.quick else 'full'}; {args.frames} random frames per video, "
        f"latency {args.latency_ms:g} ms; bytes = body bytes the server sent)"
    )
    print()
    print(table)
    print()
    print(
        "ratio = videoloader/minimal per-frame bytes (fresh call per frame); 'incl. index' adds the open's "
        "bytes amortised over the frames; batch ratio = one call of all frames vs the union minimum; "
        "PyAV-fsspec / videoloader = total bytes (open + frames) of each."
    )
    print()
    for k, v in verdict.items():
        print(f"- {k}: {v}")
    if long600 is not None:
        sizes = ", ".join(
            f"{c} {cv['file_bytes']:,} bytes"
            + (f" ({'+'.join(cv['top_level_boxes'])})" if cv["top_level_boxes"] else "")
            for c, cv in long600["containers"].items()
        )
        print()
        print(
            f"## {args.long600_seconds:g} s 720p H.264 ({long600['source']}, {long600['num_frames']} frames) "
            f"stream-copied to each container: {len(long600['frames'])} random frames, "
            f"latency {args.long600_latency_ms:g} ms"
        )
        print()
        print(_common.markdown_table(long_rows(long600), LONG_COLUMNS))
        print()
        print(
            "Files: " + sizes + ". Each row is a fresh reader; 'by index' counts len(reader) in the open, then "
            "one get_frames_at([i]) per frame; 'by time' one get_frames_played_at([t]) per frame at the same "
            "frames' times; 'batched' one get_frames_at of all frames. s/frame incl. open = (open + frames) / "
            "frames (close excluded); minimal = packets from each frame's sync sample, from the container's own "
            "packet table (the union for 'batched'). same frames: pts and pixels equal to the container's "
            "'index, by index' row; pts = FFmpeg: equal to PyAV's frame times; pixels = first: equal to the "
            "first container's."
        )
    payload = {
        "args": vars(args),
        "long_seconds": long_seconds,
        "generation_seconds": gen,
        "device": _common.device_info(),
        "versions": _common.versions(),
        "summary": rows,
        "verdict": verdict,
        "videos": results,
        "long600": long600,
    }
    print(f"\nwrote {_common.write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
