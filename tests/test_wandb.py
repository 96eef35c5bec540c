"""W&B logging: what run_inference sends to a sink (fake), and one offline wandb smoke test."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from videoloader.cli import main
from videoloader.job import _wandb as wb
from videoloader.job import run_inference

from app_helpers import CLASS_NAMES, TinyNet, serve_videos

FAST = dict(model=TinyNet(), weights=None, device="cpu", class_names=CLASS_NAMES, num_workers=2)


class FakeSink:
    """Records every call; stands in for WandbSink."""

    instances: list[FakeSink] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.config: dict = {}
        self.metrics: list[dict] = []
        self.tables: dict[str, tuple] = {}
        self.images: dict[str, list] = {}
        self.finished = False
        FakeSink.instances.append(self)

    def log_config(self, config):
        self.config.update(config)

    def log_metrics(self, metrics):
        self.metrics.append(dict(metrics))

    def log_table(self, name, columns, rows):
        self.tables[name] = (list(columns), rows)

    def log_images(self, name, images):
        self.images[name] = list(images)

    def finish(self):
        self.finished = True


@pytest.fixture(autouse=True)
def _fresh_wandb_session():
    """wandb keeps one session per process and then ignores WANDB_* changes: reset it around each test."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


@pytest.fixture
def served(http_server, corpus):
    return serve_videos(http_server, corpus, ["h264_faststart", "h264_bframes", "vp9_mp4"])


def test_sink_receives_config_metrics_table_and_frames(served):
    sink = FakeSink()
    assert isinstance(sink, wb.MetricsSink)
    result = run_inference(
        video_urls=served.url_list(), frames_per_video=2, random_seed=4, wandb=sink, wandb_max_images=2, **FAST
    )
    assert sink.finished
    assert set(sink.config) == set(wb.CONFIG_KEYS)
    assert sink.config["random_seed"] == 4 and sink.config["num_videos"] == 4 and sink.config["device"] == "cpu"
    (metrics,) = sink.metrics
    assert set(metrics) == set(wb.METRIC_KEYS)
    for key in wb.METRIC_KEYS:
        assert metrics[key] == result[key]
    assert metrics["num_failed"] == 1
    columns, rows = sink.tables["videos"]
    assert columns == list(wb.TABLE_COLUMNS) and len(rows) == 4
    row = dict(zip(columns, rows[0], strict=True))
    v0 = result["videos"][0]
    assert row["url"] == v0["url"] and "SECRET123" not in row["url"]
    assert row["top_class"] == v0["top_classes"][0] and row["upstream_bytes"] == v0["bandwidth_upstream_bytes"]
    bad = dict(zip(columns, rows[3], strict=True))
    assert bad["status"] == "failed" and bad["error"].startswith(result["videos"][3]["error"]["type"])
    images = sink.images["frames"]
    assert len(images) == 2
    for (arr, caption), v in zip(images, result["videos"][:2], strict=False):
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert arr.shape[:2] == (v["height"], v["width"])
        assert caption.startswith(f"video {v['index']} @") and v["top_classes"][0] in caption


def test_wandb_is_off_by_default(served, monkeypatch):
    def boom(**kwargs):
        raise AssertionError("wandb must not be touched unless asked")

    monkeypatch.setattr(wb, "WandbSink", boom)
    run_inference(served.urls["h264_faststart"], random_seed=0, **FAST)


def test_wandb_true_and_dict_build_a_wandbsink(served, monkeypatch):
    FakeSink.instances.clear()
    monkeypatch.setattr(wb, "WandbSink", FakeSink)
    run_inference(served.urls["h264_faststart"], random_seed=0, wandb=True, **FAST)
    run_inference(served.urls["h264_faststart"], random_seed=0, wandb={"project": "p1", "group": "g"}, **FAST)
    assert [s.kwargs for s in FakeSink.instances] == [{}, {"project": "p1", "group": "g"}]
    assert all(s.finished for s in FakeSink.instances)


def test_cli_wandb_flag(served, monkeypatch, capsys):
    FakeSink.instances.clear()
    monkeypatch.setattr(wb, "WandbSink", FakeSink)
    rc = main(
        [
            "infer",
            served.urls["h264_faststart"],
            "--weights",
            "none",
            "--device",
            "cpu",
            "--no-progress",
            "--wandb",
            "--wandb-project",
            "proj-x",
        ]
    )
    assert rc == 0
    (sink,) = FakeSink.instances
    assert sink.kwargs == {"project": "proj-x"} and sink.tables["videos"][1]


def test_wandbsink_project_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    sink = wb.WandbSink(dir=tmp_path)
    try:
        assert sink.project == "from-env"
    finally:
        sink.finish()


def test_offline_run_writes_a_run_file(served, monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    result = run_inference(
        video_urls=served.url_list()[:2],
        frames_per_video=2,
        random_seed=1,
        wandb={"project": "videoloader-test", "name": "smoke", "mode": "offline", "dir": str(tmp_path)},
        **FAST,
    )
    assert result["status"] == "ok"
    run_files = list(tmp_path.rglob("run-*.wandb"))
    assert len(run_files) == 1, list(tmp_path.rglob("*"))
    assert run_files[0].stat().st_size > 0
    # The run file is protobuf records; metric and table names are stored verbatim.
    data = run_files[0].read_bytes()
    for key in (
        b"bandwidth_total_upstream_bytes",
        b"frame_extraction_time_seconds",
        b"videos",
        b"frames",
        b"random_seed",
    ):
        assert key in data, key
    assert b"SECRET123" not in data
    assert "offline-run-" in str(run_files[0])


def test_sink_is_finished_when_the_job_cannot_start():
    sink = FakeSink()
    with pytest.raises(ValueError, match="unknown torchvision model"):
        run_inference("x.mp4", model="no_such_net", weights=None, wandb=sink)
    assert sink.finished and not sink.metrics


def test_sink_fields_hold_no_credentials(served, http_server):
    def signed(url):
        return url.replace("://", "://user:pass-7f3@", 1).split("?", 1)[0] + "?X-Amz-Signature=SECRET"

    sink = FakeSink()
    urls = [signed(served.urls["h264_faststart"]), signed(http_server.url("missing.mp4"))]
    run_inference(video_urls=urls, frames_per_video=1, random_seed=0, wandb=sink, wandb_max_images=2, **FAST)
    recorded = repr((sink.config, sink.metrics, sink.tables, [caption for _, caption in sink.images["frames"]]))
    assert "127.0.0.1" in recorded and "missing.mp4" in recorded
    assert "SECRET" not in recorded and "pass-7f3" not in recorded
