"""videoloader.VideoDecoder as a drop-in for torchcodec 0.17's VideoDecoder.

The torchcodec-side comparisons run the same script (tests/_tc_script.py)
against torchcodec in a subprocess (it needs FFmpeg under plain sonames on
LD_LIBRARY_PATH) and skip with the reason when torchcodec cannot run here;
the rest runs everywhere.
"""

from __future__ import annotations

import io
import numbers
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import videoloader
from videoloader import Frame, FrameBatch, VideoDecoder, VideoReader

import media

TESTS = Path(__file__).resolve().parent
TRICKY = ["h264_editlist", "h264_bframes", "vfr", "frag_sidx", "h264_open_gop", "av1"]
# Where torchcodec's answer is FFmpeg's header value and ours differs on purpose or for want of the box.
KNOWN_DIFFERENCES = {
    ("frag_sidx", "meta.bit_rate"),  # FFmpeg takes a fragmented file's rate from elsewhere than its samples
}


def _torchcodec_env(tmp: Path) -> dict[str, str] | str:
    """An environment in which ``import torchcodec`` loads PyAV's FFmpeg, or why there is none."""
    import importlib.util

    import av

    if importlib.util.find_spec("torchcodec") is None:
        return "torchcodec is not installed (pip install torchcodec==0.17.*)"
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    if not libs.is_dir():
        return f"PyAV's FFmpeg libraries are not in {libs}"
    links = tmp / "ffmpeg_sonames"
    links.mkdir(exist_ok=True)
    for f in libs.iterdir():
        m = re.match(r"^(lib(?:av\w+|sw\w+))-[0-9a-f]+\.so\.(\d+)", f.name)
        if m and not (links / f"{m.group(1)}.so.{m.group(2)}").exists():
            (links / f"{m.group(1)}.so.{m.group(2)}").symlink_to(f)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(links), str(libs), env.get("LD_LIBRARY_PATH", "")])
    return env


@pytest.fixture(scope="module")
def rotated_90(corpus, tmp_path_factory) -> Path:
    return media.rotated_copy(corpus["h264_faststart"], tmp_path_factory.mktemp("rotated") / "r90.mp4", 90)


@pytest.fixture(scope="module")
def torchcodec_answers(corpus, rotated_90, tmp_path_factory) -> dict[str, Any]:
    """The script's answers from torchcodec for each TRICKY file and ``"rotated_90"``."""
    tmp = tmp_path_factory.mktemp("torchcodec")
    env = _torchcodec_env(tmp)
    if isinstance(env, str):
        pytest.skip(env)
    out = tmp / "answers.pt"
    names = [*TRICKY, "rotated_90"]
    paths = [str(corpus[name]) for name in TRICKY] + [str(rotated_90)]
    run = subprocess.run(
        [sys.executable, str(TESTS / "_tc_script.py"), str(out), *paths], env=env, capture_output=True, text=True
    )
    if run.returncode:
        last = (run.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"torchcodec does not run here: {last}")
    return dict(zip(names, torch.load(out).values(), strict=True))


def _differences(ours: Any, theirs: Any) -> str:
    if isinstance(theirs, torch.Tensor):
        if ours.shape != theirs.shape:
            return f"shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
        if theirs.dtype == torch.uint8:
            return "" if torch.equal(ours, theirs) else "pixels differ"
        return "" if torch.allclose(ours.double(), theirs.double(), atol=1e-6) else f"{ours} vs {theirs}"
    if isinstance(theirs, tuple):
        return "; ".join(d for d in map(_differences, ours, theirs) if d)
    if isinstance(theirs, numbers.Real) and not isinstance(theirs, bool):
        return "" if ours is not None and abs(ours - theirs) <= 1e-9 * max(1.0, abs(theirs)) else f"{ours} vs {theirs}"
    return "" if ours == theirs else f"{ours!r} vs {theirs!r}"


@pytest.mark.parametrize("name", TRICKY)
def test_the_same_torchcodec_script_gets_the_same_answers(name, corpus, torchcodec_answers):
    import _tc_script

    ours = _tc_script.run(VideoDecoder, str(corpus[name]))
    theirs = torchcodec_answers[name]
    assert set(ours) == set(theirs)
    # torchcodec reports rotation None for a file without a display matrix; we report 0.
    assert theirs["meta.rotation"] is None and ours["meta.rotation"] == 0
    problems = {
        key: d
        for key in theirs
        if key != "meta.rotation"
        and (name, key) not in KNOWN_DIFFERENCES
        and (d := _differences(ours[key], theirs[key]))
    }
    assert problems == {}


# -- behaviour without torchcodec --------------------------------------------------------


def test_indexing_slicing_iteration_and_frames(corpus):
    path = corpus["h264_bframes"]
    ref = VideoReader(path).get_frames_in_range(0).data
    dec = VideoDecoder(path)
    n = len(dec)
    assert n == len(ref) == dec.metadata.num_frames
    assert torch.equal(dec[0], ref[0]) and dec[0].ndim == 3
    assert torch.equal(dec[-1], ref[-1]) and torch.equal(dec[-n], ref[0])
    assert torch.equal(dec[torch.tensor(5)], ref[5])
    assert torch.equal(dec[3:11:2], ref[3:11:2]) and dec[3:11:2].ndim == 4
    assert torch.equal(dec[-3:], ref[-3:])
    assert dec[5:5].shape == (0, *ref.shape[1:])
    assert torch.equal(torch.stack(list(dec)), ref)
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            dec[bad]
        with pytest.raises(IndexError):
            dec.get_frame_at(bad)
    with pytest.raises(TypeError):
        dec[1.0]  # type: ignore[index]

    f = dec.get_frame_at(-2)
    assert isinstance(f, Frame) and torch.equal(f.data, ref[-2])
    data, pts, duration = f
    assert isinstance(pts, float) and isinstance(duration, float) and duration > 0
    batch = dec.get_frames_at([-1, 0])
    assert isinstance(batch, FrameBatch) and torch.equal(batch.data, ref[[n - 1, 0]])
    assert (
        isinstance(batch[0], Frame)
        and len(batch[0:1]) == 1
        and [x.pts_seconds for x in batch] == batch.pts_seconds.tolist()
    )
    assert torch.equal(dec.get_frames_in_range(-4, 10_000).data, ref[-4:])


def test_times_and_metadata_names(corpus):
    dec = VideoDecoder(corpus["vfr"])
    m = dec.metadata
    assert m.average_fps == m.fps and m.end_stream_seconds == pytest.approx(m.begin_stream_seconds + m.duration_seconds)
    assert isinstance(m.bit_rate, int) and m.bit_rate > 0
    everything = dec.get_all_frames()
    assert len(everything) == len(dec)
    t = float(everything.pts_seconds[7]) + 1e-4
    f = dec.get_frame_played_at(t)
    assert f.pts_seconds == float(everything.pts_seconds[7]) and torch.equal(f.data, everything.data[7])
    got = dec.get_frames_played_in_range(float(everything.pts_seconds[3]), float(everything.pts_seconds[9]))
    assert got.pts_seconds.tolist() == everything.pts_seconds[3:9].tolist()
    resampled = dec.get_all_frames(fps=10)
    assert len(resampled) == int((m.end_stream_seconds - m.begin_stream_seconds) * 10 - 1e-9) + 1
    with pytest.raises(IndexError):
        dec.get_frame_played_at(m.end_stream_seconds + 0.5)
    with pytest.raises(ValueError):
        dec.get_frames_played_in_range(m.begin_stream_seconds, m.end_stream_seconds + 1)


def test_in_memory_sources_and_torchcodec_arguments(corpus):
    path = corpus["h264_faststart"]
    data = path.read_bytes()
    expect = VideoDecoder(path)[7]
    for source in (data, torch.frombuffer(bytearray(data), dtype=torch.uint8), io.BytesIO(data), open(path, "rb")):
        dec = VideoDecoder(source, seek_mode="approximate", num_ffmpeg_threads=0, stream_index=0, device="cpu")
        assert torch.equal(dec[7], expect)
        assert dec.access_path == "index" and dec.transfer_stats.bytes_received < len(data)
    with pytest.raises(ValueError, match="custom_frame_mappings"):
        VideoDecoder(path, custom_frame_mappings="mappings.json")
    with pytest.raises(ValueError, match="seek_mode"):
        VideoDecoder(path, seek_mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VideoDecoder(torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="stream_index"):
        VideoDecoder(path, stream_index=7)
    # FFmpeg's stream numbering: the audio_first file's video is stream 1.
    audio_first = corpus["audio_first"]
    assert torch.equal(VideoDecoder(audio_first, stream_index=1)[3], VideoDecoder(audio_first)[3])
    with pytest.raises(videoloader.TrackNotFoundError, match="not video"):
        VideoDecoder(audio_first, stream_index=0)


def test_two_same_size_in_memory_videos_never_share_an_index(corpus, tmp_path):
    """Bytes have no URL or validator: a cached index must not be reused for other bytes of the same size."""
    a = media.rotated_copy(corpus["h264_faststart"], tmp_path / "a.mp4", 0)
    b = media.rotated_copy(corpus["h264_faststart"], tmp_path / "b.mp4", 90)
    assert a.stat().st_size == b.stat().st_size
    assert VideoDecoder(a.read_bytes()).metadata.rotation == 0
    assert VideoDecoder(b.read_bytes()).metadata.rotation == 90


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_device_without_cuda_raises_instead_of_returning_cpu_tensors(corpus):
    with pytest.raises(videoloader.BackendUnavailableError, match="CUDA is not available"):
        VideoDecoder(corpus["h264_faststart"], device="cuda")


@pytest.mark.needs_cuda
def test_cuda_device_returns_cuda_tensors_whatever_the_backend(corpus):
    dec = VideoDecoder(corpus["h264_faststart"], device="cuda", backend="cpu")
    assert dec[3].device.type == "cuda" and dec.get_frames_at([1, 2]).data.device.type == "cuda"
    assert torch.equal(dec[3].cpu(), VideoDecoder(corpus["h264_faststart"])[3])


# -- rotation ---------------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [90, -90, -180])
def test_rotation_is_applied_like_torchcodec(corpus, tmp_path, degrees):
    """Frames come out turned counter-clockwise by ``rotation`` (torch.rot90), which
    is what torchcodec 0.17 returns for these files (checked against it by hand and
    in test_rotated_frames_match_torchcodec)."""
    path = media.rotated_copy(corpus["h264_faststart"], tmp_path / "r.mp4", degrees)
    plain = VideoReader(corpus["h264_faststart"]).get_frames_at([4, 9]).data
    dec = VideoDecoder(path)
    k = degrees // 90
    assert dec.metadata.rotation == degrees
    assert torch.equal(dec.get_frames_at([4, 9]).data, torch.rot90(plain, k, (2, 3)))
    h, w = plain.shape[2:]
    assert (dec.metadata.height, dec.metadata.width) == ((w, h) if k % 2 else (h, w))
    nhwc = VideoReader(path, dimension_order="NHWC").get_frames_at([4]).data
    assert torch.equal(nhwc, torch.rot90(plain[:1], k, (2, 3)).permute(0, 2, 3, 1)) and nhwc.is_contiguous()
    raw = VideoReader(path, apply_rotation=False)
    assert torch.equal(raw.get_frames_at([4, 9]).data, plain) and raw.metadata.rotation == degrees
    # An output size names the displayed frame's sides.
    sized = VideoReader(path, size=(40, 30)).get_frames_at([0]).data
    assert sized.shape[2:] == (40, 30)


def test_rotated_frames_match_torchcodec(rotated_90, torchcodec_answers):
    import _tc_script

    ours = _tc_script.run(VideoDecoder, str(rotated_90))
    theirs = torchcodec_answers["rotated_90"]
    assert theirs["meta.rotation"] == 90
    assert {key: d for key in theirs if (d := _differences(ours[key], theirs[key]))} == {}
