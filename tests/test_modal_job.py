"""The Modal app without credentials or network: imports, constants, and the body run locally."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("modal")

import modal_jobs.inference_app as job  # noqa: E402
from videoloader.cli import SAMPLE_VIDEO  # noqa: E402
from videoloader.job import run_inference  # noqa: E402

from app_helpers import TOP_LEVEL_KEYS, check_result_schema, decode_png, serve_videos  # noqa: E402

CPU = {"weights": None, "device": "cpu", "model": "mobilenet_v3_small", "num_workers": 2}


def test_constants(monkeypatch):
    # Read with the override variables unset (they are read at import).
    for var in ("VIDEOLOADER_MODAL_GPU", "VIDEOLOADER_MODAL_TIMEOUT", "VIDEOLOADER_MODAL_WANDB"):
        monkeypatch.delenv(var, raising=False)
    mod = importlib.reload(job)
    assert mod.GPU == "B200"
    assert mod.TIMEOUT_SECONDS == 3600
    assert mod.VOLUME_NAME == "videoloader-weights"
    assert mod.WEIGHTS_MOUNT == "/weights" and mod.TORCH_HOME.startswith(mod.WEIGHTS_MOUNT + "/")
    assert mod.IMAGE_ENV["TORCH_HOME"] == mod.TORCH_HOME
    assert "video" in mod.IMAGE_ENV["NVIDIA_DRIVER_CAPABILITIES"]
    assert mod.WANDB_SECRET_NAME == "wandb-secret" and mod.USE_WANDB is False and mod._secrets() == []
    assert mod.CUDA_IMAGE.startswith("nvidia/cuda:13.")
    assert "cudnn" in mod.CUDA_IMAGE and "ubuntu24.04" in mod.CUDA_IMAGE
    assert mod.PYTHON_VERSION == "3.12"
    assert mod.app.name == "videoloader-inference"
    import modal

    assert isinstance(mod.infer_shard, modal.Function)
    assert type(mod.main).__name__ == "LocalEntrypoint"


def test_overrides_from_environment(monkeypatch):
    monkeypatch.setenv("VIDEOLOADER_MODAL_GPU", "H100")
    monkeypatch.setenv("VIDEOLOADER_MODAL_TIMEOUT", "120")
    monkeypatch.setenv("VIDEOLOADER_MODAL_WANDB", "1")
    try:
        mod = importlib.reload(job)
        assert (mod.GPU, mod.TIMEOUT_SECONDS, mod.USE_WANDB) == ("H100", 120, True)
        assert len(mod._secrets()) == 1
    finally:
        for var in ("VIDEOLOADER_MODAL_GPU", "VIDEOLOADER_MODAL_TIMEOUT", "VIDEOLOADER_MODAL_WANDB"):
            monkeypatch.delenv(var)
        importlib.reload(job)


@pytest.mark.filterwarnings("ignore:The infer_shard function is executing locally")
def test_function_body_runs_locally_on_the_sample():
    result = job.infer_shard.local([str(SAMPLE_VIDEO)], dict(CPU, frames_per_video=2, random_seed=0))
    check_result_schema(result)
    assert set(TOP_LEVEL_KEYS) <= set(result)
    assert result["status"] == "ok" and len(result["top_classes"]) == 2
    # NVDEC was checked at start-up and the answer recorded (no NVDEC here: CPU decoding, no failure).
    status = result["platform_info"]
    assert status["nvdec_available"] is False and status["nvdec_reason"]
    assert set(status) >= {"libnvcuvid", "libnvidia_encode", "platform_info"}
    assert status["platform_info"]["backends"]["nvdec"]["available"] is False
    json.dumps(result)  # plain data: returns over Modal's wire as is


@pytest.mark.filterwarnings("ignore:The infer_shard function is executing locally")
def test_explicit_nvdec_falls_back_to_cpu_when_the_container_lacks_it(caplog):
    with caplog.at_level("WARNING", logger="videoloader.modal"):
        result = job.infer_shard.local([str(SAMPLE_VIDEO)], dict(CPU, frames_per_video=1, backend="nvdec"))
    assert result["status"] == "ok" and result["platform_info"]["nvdec_available"] is False
    assert any("NVDEC is not available" in r.getMessage() for r in caplog.records)


def test_image_installs_dependencies_before_the_source():
    reqs = job.pip_requirements()
    assert any(r.startswith("torch") for r in reqs)
    assert "pynvvideocodec>=2.2.4,<3" in reqs
    src = Path(job.__file__).read_text()
    # pip layers first: a source edit must not reinstall torch.
    assert src.index(".pip_install(*pip_requirements())") < src.index(".add_local_dir(REPO_ROOT")
    assert "--no-deps" in src and '"A10G"' not in src


def test_split_shards():
    urls = [f"u{i}" for i in range(7)]
    assert job.split_shards(urls, 3) == [(0, ["u0", "u1", "u2"]), (3, ["u3", "u4", "u5"]), (6, ["u6"])]
    assert job.split_shards([], 3) == []
    with pytest.raises(ValueError):
        job.split_shards(urls, 0)


def test_fan_out_locally_merges_like_one_call(http_server, corpus, tmp_path):
    served = serve_videos(http_server, corpus, ["h264_faststart", "h264_moov_end", "h264_bframes"])
    urls = served.url_list()
    options = dict(CPU, frames_per_video=2, random_seed=9, return_frame_png=True)
    http_server.reset_counts()
    merged = job.fan_out(urls, options, shard_size=3, local=True)
    assert merged["bandwidth_total_upstream_bytes"] == http_server.bytes_sent
    single = run_inference(video_urls=urls, **options)
    check_result_schema(merged)
    assert merged["shards"] == 2 and merged["num_videos"] == 4 and merged["num_failed"] == 1
    assert merged["status"] == "partial"
    assert [v["index"] for v in merged["videos"]] == [0, 1, 2, 3]
    for a, b in zip(merged["videos"], single["videos"], strict=True):
        assert a["selected_frame_indices"] == b["selected_frame_indices"]
        assert a["top_classes"] == b["top_classes"]
    assert merged["selected_timestamps_seconds"] == single["selected_timestamps_seconds"]
    assert merged["frame_png_bytes_list"] == single["frame_png_bytes_list"]
    assert merged["bandwidth_total_downstream_bytes"] == single["bandwidth_total_downstream_bytes"]

    path = job.write_outputs(merged, tmp_path / "out")
    doc = json.loads(path.read_text())
    assert doc["num_videos"] == 4 and "frame_png_bytes_list" not in doc
    pngs = [p for v in doc["videos"] for p in v.get("frame_png_paths", [])]
    assert len(pngs) == 6
    for rel, data in zip(pngs, merged["frame_png_bytes_list"], strict=True):
        assert (tmp_path / "out" / rel).read_bytes() == data
        decode_png(data)


def test_merge_results_sums_and_concatenates():
    def shard(n_ok, n_failed, up, t):
        return {
            "num_videos": n_ok + n_failed,
            "num_succeeded": n_ok,
            "num_failed": n_failed,
            "status": "x",
            "model_load_time_seconds": 1.0,
            "frame_extraction_time_seconds": t,
            "preprocess_time_seconds": t,
            "inference_time_seconds": t,
            "total_pipeline_time_seconds": 10 * t,
            "bandwidth_total_upstream_bytes": up,
            "bandwidth_total_downstream_bytes": up // 2,
            "bandwidth_num_requests": 2,
            "top_classes": ["a"] * n_ok,
            "confidences": [0.5] * n_ok,
            "selected_timestamps_seconds": [0.0] * n_ok,
            "videos": [{}] * (n_ok + n_failed),
            "gpu_name": "B200",
            "device": "cuda:0",
        }

    m = job.merge_results([shard(2, 0, 1000, 1.0), shard(1, 1, 3000, 2.0)])
    assert m["num_videos"] == 4 and m["num_failed"] == 1 and m["status"] == "partial"
    assert m["bandwidth_total_upstream_bytes"] == 4000 and m["bandwidth_total_upstream_mb"] == 0.004
    assert m["frame_extraction_time_seconds"] == 3.0 and m["model_load_time_seconds"] == 2.0
    assert m["total_pipeline_time_seconds"] == 20.0 and m["shards"] == 2 and m["gpu_names"] == ["B200"]
    assert len(m["videos"]) == 4 and m["top_classes"] == ["a"] * 3
    assert "bandwidth_num_proxy_requests" not in m  # only summed when the shards report it
    a, b = shard(1, 0, 10, 1.0), shard(1, 0, 10, 1.0)
    a.update(bandwidth_num_proxy_requests=3, num_videos_with_fewer_frames=1)
    b.update(bandwidth_num_proxy_requests=4, num_videos_with_fewer_frames=0)
    m = job.merge_results([a, b])
    assert m["bandwidth_num_proxy_requests"] == 7 and m["num_videos_with_fewer_frames"] == 1
    with pytest.raises(ValueError):
        job.merge_results([])


def test_importable_without_side_effects():
    # Importing the app module must not need a token or network (done above); nothing is deployed.
    assert "modal_jobs.inference_app" in sys.modules
    assert Path(job.__file__).parent.name == "modal_jobs"
