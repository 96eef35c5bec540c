"""Fuzz: seeded mutants of small generated MP4, Matroska and WebM files never escape the error tree.

Each mutant (bit flips in box headers and tables, huge counts and sizes,
zero-size boxes, pointers aimed back at earlier boxes, truncations,
duplicated, removed and retyped boxes, payload bit flips; for Matroska the
same on EBML elements plus unknown sizes, block headers and Cues positions
aimed anywhere) is opened with
``VideoReader`` and one to three frames are decoded, in a worker process
under an address-space limit and a per-case timeout. Every case must end in
a ``VideoLoaderError`` or in frames: exact frames whenever the mutant's index
equals the original's and its sample bytes are intact. The mutation code is
``tests/fuzzing.py`` (also behind ``benchmarks/fuzz.py``); replay one case
with ``python tests/fuzzing.py --replay NAME SEED``.
"""

from __future__ import annotations

import collections
import os
import time

import pytest

import fuzzing

NUM_CASES = 600
SEED = int(os.environ.get("VIDEOLOADER_FUZZ_SEED", "0"))


@pytest.fixture(scope="module")
def fuzz_corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz-corpus")
    fuzzing.make_corpus(directory)
    return directory


def test_mutants_raise_our_errors_or_give_frames(fuzz_corpus):
    t0 = time.monotonic()
    results = fuzzing.run_cases(
        fuzz_corpus, fuzzing.cases(NUM_CASES, seed=SEED), workers=2, timeout=10.0, headroom=1 << 30
    )
    elapsed = time.monotonic() - t0
    counts = collections.Counter(r["outcome"] for r in results)
    failures = [r for r in results if r["outcome"] in fuzzing.FAILURES]
    assert not failures, (
        f"{len(failures)} of {NUM_CASES} mutants escaped the error tree (outcomes {dict(counts)}):\n"
        + "\n".join(fuzzing.describe(r) for r in failures[:40])
    )
    # The run exercised both ends: clean refusals and exact frames.
    assert counts["ok-exact"] > NUM_CASES // 20 and counts["MP4ParseError"] > NUM_CASES // 20, dict(counts)
    assert counts["MatroskaParseError"] > NUM_CASES // 20, dict(counts)
    mkv = [r for r in results if fuzzing.RECIPES[r["name"]][0].get("container") in ("mkv", "webm")]
    assert sum(r["outcome"] == "ok-exact" for r in mkv) > len(mkv) // 10, dict(counts)
    assert elapsed < 60, f"{NUM_CASES} cases took {elapsed:.1f} s"


@pytest.mark.parametrize("name", ["frag_sidx.mp4", "mkv_audio.mkv"])
def test_mutants_are_reproducible(fuzz_corpus, name):
    original = (fuzz_corpus / name).read_bytes()
    for seed in range(20):
        assert fuzzing.mutant(original, seed) == fuzzing.mutant(original, seed)
    assert len({fuzzing.mutant(original, seed)[0] for seed in range(20)}) > 15


def test_matroska_element_tree_lists_every_cluster_and_block(fuzz_corpus):
    import av

    data = (fuzz_corpus / "mkv_audio.mkv").read_bytes()
    tree = fuzzing.ebml_tree(data)
    with av.open(str(fuzz_corpus / "mkv_audio.mkv")) as c:
        packets = sum(1 for p in c.demux() if p.size)
    assert sum(e.name == "SimpleBlock" for e in tree) + sum(e.name == "Block" for e in tree) == packets
    assert sum(e.name == "Cluster" for e in tree) >= 2


def _one_byte_sps(src, dst):
    """The moov-at-end file with an avcC whose only SPS is 1 byte long (then one
    valid-looking PPS and a high-profile extension), padded to its old size."""
    import struct

    data = bytearray(src.read_bytes())
    at = data.find(b"avcC") - 4
    size = struct.unpack_from(">I", data, at)[0]
    record = bytes.fromhex("0164000affe100016701000468ee3c80fdf8f800")
    data[at + 8 : at + size] = record + bytes(size - 8 - len(record))
    dst.write_bytes(bytes(data))
    return dst


def test_avcc_with_a_one_byte_sps_is_our_error(fuzz_corpus, tmp_path):
    import videoloader

    path = _one_byte_sps(fuzz_corpus / "h264_moov_end.mp4", tmp_path / "sps1.mp4")
    with pytest.raises(videoloader.VideoLoaderError):
        with videoloader.VideoReader(str(path), index_cache=False) as reader:
            reader.get_frames_at([0])
