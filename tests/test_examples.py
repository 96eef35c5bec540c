"""The scripts in examples/ run end to end against the loopback server, each as its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from media import make_video

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    """Two small H.264 MP4s of different sizes (the examples must not care)."""
    d = tmp_path_factory.mktemp("example_media")
    return [
        make_video(d / "a.mp4", width=160, height=120, num_frames=40, gop=10),
        make_video(d / "b.mp4", width=128, height=96, num_frames=30, gop=15, seed=1),
    ]


@pytest.fixture
def urls(http_server, videos) -> list[str]:
    return [http_server.add(p.name, p) for p in videos]


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("LOGGER_LEVEL", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    return proc


def test_random_frames(urls, videos, tmp_path):
    out_dir = tmp_path / "frames"
    proc = run_example(
        "random_frames.py", urls[0], "--frames", "3", "--seed", "1", "--out-dir", str(out_dir), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "h264 160x120, 40 frames" in lines[0] and "read via index" in lines[0]
    assert "tensor (3, 3, 120, 160) torch.uint8" in proc.stdout
    received = int(proc.stdout.split("transferred ")[1].split(" bytes")[0])
    size = videos[0].stat().st_size
    assert 0 < received <= size and f"of a {size}-byte file" in proc.stdout
    assert len(list(out_dir.glob("frame*.png"))) == 3


def test_train_loop(urls, tmp_path):
    proc = run_example(
        "train_loop.py",
        *urls,
        urls[0],
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--clip",
        "4",
        "--size",
        "32",
        "48",
        "--seed",
        "0",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(steps) == 4  # 3 videos, batches of 2, 2 epochs
    assert "clips (2, 4, 3, 32, 48)" in steps[0] and "clips (1, 4, 3, 32, 48)" in proc.stdout
    assert all(int(s.split("fetched ")[1].split()[0]) > 0 for s in steps)
    assert "done: 4 steps over 3 videos" in proc.stdout


def test_batch_inference(urls, http_server, tmp_path):
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text(
        "# two videos and one that is missing\n" + "\n".join(urls) + "\n" + http_server.url("missing.mp4") + "\n"
    )
    out = tmp_path / "result.json"
    proc = run_example(
        "batch_inference.py",
        "--urls-file",
        str(urls_file),
        "--frames",
        "2",
        "--seed",
        "0",
        "--weights",
        "none",
        "--device",
        "cpu",
        "--workers",
        "2",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # one video failed; the others went through
    assert "2/3 videos ok" in proc.stdout and "FAILED SourceNotFoundError" in proc.stdout
    result = json.loads(out.read_text())
    assert result["weights"] is None and result["frames_per_video"] == 2
    assert [v["ok"] for v in result["videos"]] == [True, True, False]
    assert all(len(v["top_classes"]) == 2 for v in result["videos"][:2])
