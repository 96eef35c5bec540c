"""Decode-time transforms: geometry planning, frames against torchvision / torchcodec, rotation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videoloader import VideoDecoder, VideoReader
from videoloader.transforms import CenterCrop, Geometry, RandomCrop, Resize, apply_geometry, plan_geometry

import media

TESTS = Path(__file__).resolve().parent
# Scaling happens in YUV inside swscale (one pass, chroma interpolated at full
# resolution) where torchvision and torchcodec scale the RGB frame: on the
# synthetic media's sharp barcode edges single values differ by up to ~60,
# the mean absolute difference stays below this.
MEAN_TOLERANCE = 3.5


def _mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a.int() - b.int()).abs().float().mean())


def test_plan_geometry_reduces_a_pipeline_to_one_pass():
    assert plan_geometry(None, 120, 160) == Geometry(output_hw=(120, 160))
    g = plan_geometry([CenterCrop((100, 100)), CenterCrop((50, 60)), Resize((20, 30)), CenterCrop((10, 10))], 120, 160)
    assert g.pre_crop == (10 + 25, 30 + 20, 50, 60) and g.size == (20, 30) and g.post_crop == (5, 10, 10, 10)
    assert g.output_hw == (10, 10)
    assert plan_geometry([Resize(60)], 120, 160).size == (60, 80)  # short side, aspect kept
    assert plan_geometry([Resize(60)], 160, 120).size == (80, 60)
    with pytest.raises(ValueError, match="one Resize"):
        plan_geometry([Resize((10, 10)), Resize((5, 5))], 120, 160)
    with pytest.raises(ValueError, match="does not fit"):
        plan_geometry([CenterCrop((130, 10))], 120, 160)
    with pytest.raises(TypeError):
        plan_geometry(["resize"], 120, 160)
    with pytest.raises(ValueError):
        Resize((0, 3))


def test_random_crop_draws_like_torchvision():
    from torchvision.transforms import v2

    frame = torch.arange(120 * 160, dtype=torch.int32).reshape(1, 120, 160)
    torch.manual_seed(3)
    expect = v2.RandomCrop((50, 70))(frame)
    torch.manual_seed(3)
    t, left, h, w = RandomCrop((50, 70)).window(120, 160)
    assert torch.equal(frame[:, t : t + h, left : left + w], expect)


def test_crops_are_exact_and_resizes_close_to_torchvision(corpus):
    from torchvision.transforms.v2 import functional as F

    path = corpus["h264_faststart"]
    full = VideoReader(path).get_frames_at([0, 7, 20]).data
    crop = VideoDecoder(path, transforms=[CenterCrop((64, 96))]).get_frames_at([0, 7, 20]).data
    assert torch.equal(crop, F.center_crop(full, [64, 96]))  # even offsets: the same pixels
    resized = VideoDecoder(path, transforms=[Resize((60, 80))]).get_frames_at([0, 7, 20]).data
    assert _mean_abs(resized, F.resize(full, [60, 80], antialias=True)) < MEAN_TOLERANCE
    both = VideoDecoder(path, transforms=[CenterCrop((96, 96)), Resize((48, 48))]).get_frames_at([0, 7, 20]).data
    ref = F.resize(F.center_crop(full, [96, 96]), [48, 48], antialias=True)
    assert _mean_abs(both, ref) < MEAN_TOLERANCE
    # The torch fallback (backends that cannot crop) computes the same geometry.
    g = plan_geometry([CenterCrop((96, 96)), Resize((48, 48))], 120, 160)
    assert _mean_abs(torch.stack([apply_geometry(f, g) for f in full]), both) < MEAN_TOLERANCE


def test_torchvision_objects_are_accepted(corpus):
    from torchvision.transforms import v2

    path = corpus["h264_faststart"]
    ours = VideoDecoder(path, transforms=[CenterCrop((80, 100)), Resize((40, 50))])[3]
    theirs = VideoDecoder(path, transforms=[v2.CenterCrop((80, 100)), v2.Resize((40, 50))])[3]
    assert torch.equal(ours, theirs)
    with pytest.raises(ValueError, match="bilinear"):
        VideoDecoder(path, transforms=[v2.Resize((40, 50), interpolation=v2.InterpolationMode.NEAREST)])
    with pytest.raises(TypeError):
        VideoDecoder(path, transforms=[v2.RandomHorizontalFlip()])
    with pytest.raises(ValueError, match="not both"):
        VideoReader(path, transforms=[Resize((4, 4))], width=8)


def test_transforms_on_a_rotated_video_use_displayed_coordinates(corpus, tmp_path):
    from torchvision.transforms.v2 import functional as F

    path = media.rotated_copy(corpus["h264_faststart"], tmp_path / "r90.mp4", 90)
    full = VideoDecoder(path).get_frames_at([2, 9]).data  # 160 x 120 displayed
    assert full.shape[2:] == (160, 120)
    crop = VideoDecoder(path, transforms=[CenterCrop((100, 60))]).get_frames_at([2, 9]).data
    assert torch.equal(crop, F.center_crop(full, [100, 60]))
    sized = VideoDecoder(path, transforms=[Resize((80, 60)), CenterCrop((40, 40))]).get_frames_at([2, 9]).data
    ref = F.center_crop(F.resize(full, [80, 60], antialias=True), [40, 40])
    assert sized.shape == ref.shape and _mean_abs(sized, ref) < MEAN_TOLERANCE
    empty = VideoDecoder(path, transforms=[Resize((80, 60)), CenterCrop((40, 30))]).get_frames_at([])
    assert tuple(empty.data.shape) == (0, 3, 40, 30)


def test_transforms_match_torchcodec(corpus, tmp_path):
    import _tc_script
    from test_torchcodec_compat import _torchcodec_env

    import videoloader.transforms

    env = _torchcodec_env(tmp_path)
    if isinstance(env, str):
        pytest.skip(env)
    path = str(corpus["h264_faststart"])
    out = tmp_path / "tc.pt"
    run = subprocess.run(
        [sys.executable, str(TESTS / "_tc_script.py"), "--transforms", str(out), path],
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode:
        pytest.skip(f"torchcodec does not run here: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
    theirs = torch.load(out)[path]
    ours = _tc_script.run_transforms(VideoDecoder, videoloader.transforms, path)
    for name in theirs:
        assert ours[name].shape == theirs[name].shape, name
        if "resize" in name:
            assert _mean_abs(ours[name], theirs[name]) < MEAN_TOLERANCE, name
        else:  # crops only: the same window, the same pixels
            assert torch.equal(ours[name], theirs[name]), name
