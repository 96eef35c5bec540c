"""Fuzz run: thousands of seeded MP4 mutants, counts per outcome.

    .venv/bin/python benchmarks/fuzz.py                 # 5000 mutants, 2 workers
    .venv/bin/python benchmarks/fuzz.py --cases 2000 --seed 7

The mutants, the sandbox (one worker process per core, an address-space
limit, a per-case timeout) and the outcomes are those of the fuzz test
(tests/fuzzing.py, one copy of the code): ``ok-exact`` (frames equal the
unmutated file's), ``ok-frames`` (frames, payload or index touched), each
``VideoLoaderError`` subclass, and the failures ``wrong-frames``,
``bad-batch``, ``empty-video``, ``other-exception``, ``memory``, ``timeout``,
``crash``.

Prints one JSON line per failure and one for the totals, then markdown tables
(per outcome; per corpus file); writes benchmarks/results/fuzz.json with every
failing case (replay one with ``python tests/fuzzing.py --replay NAME SEED``).
Exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (sets sys.path for videoloader and tests/)
import fuzzing  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=5000, help="number of mutants (default 5000)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (case i uses seed + i)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    ap.add_argument(
        "--memory-mib", type=int, default=1024, help="address space a worker may add after start-up, MiB (default 1024)"
    )
    ap.add_argument("--out", default="fuzz", help="results/<out>.json")
    args = ap.parse_args()

    corpus_dir = _common.RESULTS / "fuzz-corpus"
    corpus = fuzzing.make_corpus(corpus_dir)
    t0 = time.monotonic()
    results = fuzzing.run_cases(
        corpus_dir,
        fuzzing.cases(args.cases, seed=args.seed),
        workers=args.workers,
        timeout=args.timeout,
        headroom=args.memory_mib << 20,
        progress=lambda r: (
            r["outcome"] in fuzzing.FAILURES and _common.emit({"bench": "fuzz", "failure": fuzzing.describe(r)})
        ),
    )
    elapsed = time.monotonic() - t0

    counts = collections.Counter(r["outcome"] for r in results)
    order = (
        ["ok-exact", "ok-frames"]
        + sorted(o for o in counts if o not in fuzzing.FAILURES and not o.startswith("ok-"))
        + sorted(fuzzing.FAILURES)
    )
    rows = [
        {
            "outcome": o,
            "cases": counts.get(o, 0),
            "share %": 100.0 * counts.get(o, 0) / max(len(results), 1),
            "failure": o in fuzzing.FAILURES,
        }
        for o in order
    ]
    per_file = []
    for name in corpus:
        c = collections.Counter(r["outcome"] for r in results if r["name"] == name)
        per_file.append(
            {
                "file": name,
                "cases": sum(c.values()),
                "ok-exact": c["ok-exact"],
                "ok-frames": c["ok-frames"],
                "our errors": sum(v for k, v in c.items() if k not in fuzzing.FAILURES and not k.startswith("ok-")),
                "failures": sum(v for k, v in c.items() if k in fuzzing.FAILURES),
            }
        )
    failures = [r for r in results if r["outcome"] in fuzzing.FAILURES]
    slowest = max((r.get("seconds", 0.0) for r in results), default=0.0)
    peak_rss = max((r.get("worker_peak_rss_mb", 0.0) for r in results), default=0.0)
    _common.emit(
        {
            "bench": "fuzz",
            "cases": len(results),
            "seconds": round(elapsed, 1),
            "slowest_case_s": slowest,
            "worker_peak_rss_mb": peak_rss,
            "failures": len(failures),
            "outcomes": dict(counts),
        }
    )
    print()
    print(_common.markdown_table(rows, ["outcome", "cases", "share %", "failure"]))
    print()
    print(_common.markdown_table(per_file, ["file", "cases", "ok-exact", "ok-frames", "our errors", "failures"]))
    print(
        f"\n{len(results)} cases in {elapsed:.1f} s on {args.workers} workers; slowest case {slowest:.2f} s; "
        f"largest worker peak RSS {peak_rss:.0f} MB"
    )
    payload = {
        "device": _common.device_info(),
        "versions": _common.versions(),
        "args": vars(args),
        "seconds": elapsed,
        "worker_peak_rss_mb": peak_rss,
        "outcomes": dict(counts),
        "per_file": per_file,
        "failures": failures,
    }
    print(f"wrote {_common.write_json(args.out, payload)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
