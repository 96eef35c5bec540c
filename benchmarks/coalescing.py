"""Coalescing by cost: bytes and round trips per corpus kind, the old fixed 8 KiB gap against the cost model.

    .venv/bin/python benchmarks/coalescing.py                      # every MP4 and Matroska kind (~1 min)
    .venv/bin/python benchmarks/coalescing.py --kinds audio_first mkv_audio

For each kind, on the loopback server, the same 16 random frames are read
under each setting of ``source_options`` (each on its own URL, no index
cache): the open, one fresh ``get_frames_at([i])`` call per frame, then one
batched call. Bytes are what the server sent; the minimum is computed from
PyAV's packet list as in benchmarks/bandwidth.py; rounds are concurrent waves:
``ceil(requests / max_concurrency)`` per ``read_ranges`` batch that reached the
HTTP backend (a HEAD or the open's first GET counts one). Frames of every
setting must equal the first setting's.

Target: the audio-interleaved MP4 at <= 1.05x the minimal bytes (open plus the
batched call, as tests/test_bandwidth.py counts them) with no more rounds than
the old 8 KiB gap; no kind costs more bytes or rounds.

Prints one JSON line per kind and setting, then a markdown table; writes
benchmarks/results/coalescing.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from bandwidth import MKV_KINDS, MP4_KINDS, PacketTable  # noqa: E402

import _common  # noqa: E402  (sets sys.path for videoloader and tests/)

SETTINGS: dict[str, dict[str, int]] = {
    "fixed 8 KiB gap (old default)": {"coalesce_gap_bytes": 8192, "round_trip_cost_bytes": 0},
    "cost model (default)": {},
    "no gap bridged": {"coalesce_gap_bytes": 0, "round_trip_cost_bytes": 0},
}


class RoundCounter:
    """Counts concurrent waves the HTTP backend sends (patched in for the run)."""

    def __init__(self) -> None:
        from videoloader.io import _http

        self.rounds = 0
        self._cls = _http.HttpBackend
        self._saved = (self._cls.read, self._cls.stat, self._cls.stat_and_read_head)
        read, stat, head = self._saved
        counter = self

        def counted_read(backend: Any, ranges: Any, identity: Any) -> Any:
            counter.rounds += math.ceil(len(ranges) / backend._max_concurrency)
            return read(backend, ranges, identity)

        def counted_stat(backend: Any) -> Any:
            counter.rounds += 1
            return stat(backend)

        def counted_head(backend: Any, nbytes: int) -> Any:
            counter.rounds += 1
            return head(backend, nbytes)

        self._cls.read, self._cls.stat, self._cls.stat_and_read_head = counted_read, counted_stat, counted_head

    def close(self) -> None:
        self._cls.read, self._cls.stat, self._cls.stat_and_read_head = self._saved


def measure(server, counter: RoundCounter, kind: str, path: Path, seed: int) -> list[dict[str, Any]]:
    import videoloader

    table = PacketTable(path)
    n = table.num_frames
    rng = np.random.default_rng(seed)
    frames = rng.choice(n, size=min(16, n), replace=False).tolist() if n >= 16 else rng.integers(0, n, 16).tolist()
    data = path.read_bytes()
    minimal = sum(table.minimal_bytes([f]) for f in frames)
    minimal_batch = table.minimal_bytes(frames)
    rows, reference = [], None
    for label, options in SETTINGS.items():
        name = f"{kind}-{len(rows)}{path.suffix}"
        url = server.add(name, data)

        def snap(name: str = name) -> tuple[int, int, int]:
            gets = sum(1 for r in server.requests if r[1] == "/" + name and r[0] == "GET")
            return server.bytes_sent_for("/" + name), gets, counter.rounds

        s0 = snap()
        reader = videoloader.VideoReader(url, backend="cpu", index_cache=False, source_options=options)
        s1 = snap()
        got = [reader.get_frames_at([f]).data[0].numpy() for f in frames]
        s2 = snap()
        reader.get_frames_at(frames)
        s3 = snap()
        reader.close()
        reference = got if reference is None else reference
        d = [[b - a for a, b in zip(x, y, strict=True)] for x, y in ((s0, s1), (s1, s2), (s2, s3))]
        row = {
            "kind": kind,
            "setting": label,
            "open bytes": d[0][0],
            "open rounds": d[0][2],
            "frames: bytes / minimal": d[1][0] / minimal if minimal else float("nan"),
            "frames: requests": d[1][1],
            "frames: rounds": d[1][2],
            "batch: bytes / minimal": d[2][0] / minimal_batch if minimal_batch else float("nan"),
            "batch: requests": d[2][1],
            "batch: rounds": d[2][2],
            "frames exact": all(np.array_equal(a, b) for a, b in zip(got, reference, strict=True)),
        }
        _common.emit({"bench": "coalescing", **row})
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="*", default=None, help="corpus kinds (default: every MP4 and Matroska kind)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="coalescing", help="results/<out>.json")
    args = ap.parse_args(argv)

    import media
    from server import LoopbackServer

    rows: list[dict[str, Any]] = []
    counter = RoundCounter()
    try:
        with tempfile.TemporaryDirectory(prefix="vl-bench-") as tmp, LoopbackServer() as server:
            corpus = media.make_corpus(Path(tmp) / "corpus", args.kinds or MP4_KINDS + MKV_KINDS)
            for i, (kind, path) in enumerate(corpus.items()):
                rows += measure(server, counter, kind, path, args.seed + i)
    finally:
        counter.close()
    print()
    print("## coalescing: 16 random frames per kind, loopback, 0 ms (bytes = body bytes the server sent)")
    print()
    print(_common.markdown_table(rows, list(rows[0])))
    print()
    print("rounds = concurrent waves of up to max_concurrency (16) requests; the open's rounds include its HEAD/GET.")
    payload = {"args": vars(args), "settings": SETTINGS, "device": _common.device_info(), "rows": rows}
    print(f"\nwrote {_common.write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
