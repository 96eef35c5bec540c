"""The ``videoloader`` command: infer (in process and as a subprocess), inspect, info, exit codes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from videoloader import VideoReader
from videoloader.cli import SAMPLE_VIDEO, main

from app_helpers import check_result_schema, decode_png, serve_videos

REPO = Path(__file__).resolve().parent.parent
INFER = ["infer", "--weights", "none", "--device", "cpu", "--no-progress", "--workers", "2"]


@pytest.fixture
def served(http_server, corpus):
    return serve_videos(http_server, corpus, ["h264_faststart", "h264_moov_end"])


def test_sample_clip_is_small_and_valid():
    assert SAMPLE_VIDEO.is_file() and SAMPLE_VIDEO.stat().st_size < 300_000
    with VideoReader(SAMPLE_VIDEO, backend="cpu") as r:
        m = r.metadata
        assert m.codec == "h264" and (m.width, m.height) == (320, 240)
        assert 3.0 <= m.duration_seconds <= 5.0 and r.access_path == "index"


def test_infer_in_process_with_a_broken_video(served, tmp_path, capsys):
    out_json, frames_dir = tmp_path / "out.json", tmp_path / "frames"
    served.server.reset_counts()
    rc = main(
        [
            *INFER,
            *served.url_list(),
            "--frames",
            "2",
            "--seed",
            "3",
            "--json",
            str(out_json),
            "--save-frames",
            str(frames_dir),
        ]
    )
    assert rc == 1  # one video failed
    text = capsys.readouterr().out
    assert "videoloader infer" in text and "FAILED" in text and "2/3 videos ok, 1 failed" in text
    assert "broken.mp4" in text and "SECRET123" not in text
    result = json.loads(out_json.read_text())
    check_result_schema(result)
    assert "frame_png_bytes_list" not in result
    assert result["num_failed"] == 1 and result["status"] == "partial"
    assert result["bandwidth_total_upstream_bytes"] == served.server.bytes_sent
    assert result["random_seed"] == 3 and result["frames_per_video"] == 2
    assert result["weights"] is None and result["model"] == "mobilenet_v3_small"
    assert "SECRET123" not in out_json.read_text()
    # Saved PNGs decode and equal the frames at the reported indices.
    for name, v in zip(["h264_faststart", "h264_moov_end"], result["videos"], strict=False):
        assert len(v["frame_png_paths"]) == 2
        with VideoReader(served.paths[name], backend="cpu") as r:
            frames = r.get_frames_at(v["selected_frame_indices"]).data
        for path, frame in zip(v["frame_png_paths"], frames, strict=True):
            np.testing.assert_array_equal(decode_png(Path(path).read_bytes()), frame.permute(1, 2, 0).numpy())
    assert result["videos"][2]["error"]["type"] and "frame_png_paths" not in result["videos"][2]
    assert len(list(frames_dir.glob("*.png"))) == 4


def test_infer_defaults_to_the_sample_clip(tmp_path, capsys):
    out_json = tmp_path / "out.json"
    rc = main([*INFER, "--json", str(out_json), "--seed", "0"])
    assert rc == 0
    assert "bundled sample clip" in capsys.readouterr().out
    result = json.loads(out_json.read_text())
    check_result_schema(result)
    assert result["videos"][0]["url"].endswith("sample.mp4") and result["status"] == "ok"


def test_urls_file_and_offset(served, tmp_path, capsys):
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("# test list\n" + served.urls["h264_faststart"] + "\n\n" + served.urls["h264_moov_end"] + "\n")
    out_json = tmp_path / "o.json"
    rc = main(
        [
            *INFER,
            "--urls-file",
            str(urls_file),
            "--frames",
            "3",
            "--offset-max-seconds",
            "0.5",
            "--seed",
            "1",
            "--json",
            str(out_json),
        ]
    )
    assert rc == 0
    result = json.loads(out_json.read_text())
    assert result["num_videos"] == 2 and result["offset_max_seconds"] == 0.5
    assert all(t < 0.5 for t in result["selected_timestamps_seconds"])


def test_infer_subprocess_json_on_stdout(served):
    env = dict(os.environ, PYTHONPATH=str(REPO), LOGGER_LEVEL="DEBUG")
    # Through fsspec's HTTP filesystem (a chained URL), with user-info: fsspec logs raw URLs at DEBUG.
    chained = "simplecache::" + served.urls["h264_moov_end"].replace("://", "://user:pass-7f3@", 1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoloader.cli",
            *INFER,
            served.urls["h264_faststart"],
            served.urls["broken"],
            chained,
            "--frames",
            "2",
            "--seed",
            "5",
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout holds only the JSON; the table went to stderr
    check_result_schema(result)
    assert result["num_failed"] == 1
    assert "videoloader infer" in proc.stderr and "FAILED" in proc.stderr
    assert "DEBUG" in proc.stderr or "INFO" in proc.stderr  # LOGGER_LEVEL took effect
    assert "DEBUG fsspec" in proc.stderr  # the library logged the URL, redacted
    for secret in ("SECRET123", "pass-7f3"):
        assert secret not in proc.stderr and secret not in proc.stdout
    # Same seed in process: same frames (reproducible across processes).
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "videoloader.cli",
            *INFER,
            served.urls["h264_faststart"],
            "--frames",
            "2",
            "--seed",
            "5",
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        env=dict(env, LOGGER_LEVEL="WARNING"),
        cwd=REPO,
        timeout=240,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    first = result["videos"][0]["selected_frame_indices"]
    assert json.loads(again.stdout)["videos"][0]["selected_frame_indices"] == first


def test_weights_unavailable_exit_code(served, capsys, monkeypatch, tmp_path):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    rc = main(
        [
            "infer",
            served.urls["h264_faststart"],
            "--weights",
            "DEFAULT",
            "--weights-dir",
            str(tmp_path),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 3
    out = capsys.readouterr().out
    assert "--weights none" in out and "weights=None" in out


def test_usage_errors(capsys):
    assert main([]) == 2
    assert main(["infer", "--frames", "zero"]) == 2
    assert main(["infer", "--frames", "0", "--weights", "none", "--no-progress", "--device", "cpu"]) == 2
    assert "frames_per_video" in capsys.readouterr().out


def test_inspect(served, tmp_path, capsys):
    out_json = tmp_path / "inspect.json"
    rc = main(["inspect", served.urls["h264_faststart"], "--frames", "0", "20", "59", "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "access path: index" in text and "planned reads per frame" in text and "SECRET123" not in text
    info = json.loads(out_json.read_text())
    assert info["access_path"] == "index" and info["metadata"]["num_frames"] == 60
    size = served.paths["h264_faststart"].stat().st_size
    assert info["file_size_bytes"] == size
    ix = info["index"]
    assert ix["num_keyframes"] == 4 and ix["gop_length_min"] == ix["gop_length_max"] == 15 and not ix["fragmented"]
    with VideoReader(served.paths["h264_faststart"], backend="cpu") as r:
        for p in info["plans"]:
            plan = r.plan([p["frame"]])
            assert p["nbytes"] == plan.nbytes and p["ranges"] == [[x.start, x.stop] for x in plan.ranges]
            assert p["fraction_of_file"] == pytest.approx(plan.nbytes / size)
    assert [p["frame"] for p in info["plans"]] == [0, 20, 59]


def test_inspect_fragmented_and_demux(http_server, corpus, capsys):
    url = http_server.add("frag.mp4", corpus["frag_sidx"])
    assert main(["inspect", url]) == 0
    assert "fragmented=True" in capsys.readouterr().out
    url = http_server.add("v.ts", corpus["ts_h264"])
    assert main(["inspect", url]) == 0
    assert "access path: demux" in capsys.readouterr().out


def test_inspect_missing_video(http_server, capsys):
    assert main(["inspect", http_server.url("nope.mp4") + "?sig=SECRET123"]) == 1
    out = capsys.readouterr().out
    assert "SourceNotFoundError" in out and "SECRET123" not in out


def test_info(tmp_path, capsys):
    out_json = tmp_path / "info.json"
    assert main(["info", "--json", str(out_json)]) == 0
    info = json.loads(out_json.read_text())
    assert info["torch_version"] and "optional_modules" in info and "decoders" in info
    assert "torch" in capsys.readouterr().out


def test_progress_bar_on_stderr(served, capsys):
    rc = main(
        ["infer", served.urls["h264_faststart"], served.urls["h264_moov_end"], "--weights", "none", "--device", "cpu"]
    )
    assert rc == 0
    captured = capsys.readouterr()
    assert "decoding" in captured.err and "2/2" in captured.err
    assert "videoloader infer" in captured.out


def test_log_records_are_redacted(capsys, caplog):
    from videoloader.job._logging import configure_command_logging

    caplog.set_level(logging.DEBUG)
    configure_command_logging()  # installs the redacting filter on the root handlers (pytest's here)
    url = "http://user:pass-7f3@h.example/v.mp4?X-Amz-Signature=SECRET"
    logging.getLogger("fsspec.http").debug("Fetch %s", url)
    try:
        raise OSError(f"Cannot connect to {url}")
    except OSError:
        logging.getLogger("aiohttp.client").exception("request failed")
    text = caplog.text
    assert "Fetch http://h.example/v.mp4" in text and "Cannot connect to http://h.example/v.mp4" in text
    assert "SECRET" not in text and "pass-7f3" not in text


def test_frames_beyond_the_video_are_reported(served, tmp_path, capsys):
    out_json = tmp_path / "o.json"
    rc = main([*INFER, served.urls["h264_faststart"], "--frames", "500", "--seed", "0", "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "500 frames asked, it has 60: each taken once" in text
    v = json.loads(out_json.read_text())["videos"][0]
    assert v["frames_requested"] == 500 and v["frames_returned"] == 60
    assert v["selected_frame_indices"] == list(range(60))


def test_infer_via_proxy(served, tmp_path):
    out_json = tmp_path / "out.json"
    url = served.urls["h264_moov_end"]
    served.server.reset_counts()
    rc = main([*INFER, url, "--via", "proxy", "--frames", "2", "--seed", "0", "--json", str(out_json)])
    assert rc == 0
    result = json.loads(out_json.read_text())
    check_result_schema(result)
    assert result["via"] == "proxy" and result["videos"][0]["access_path"] == "proxy"
    assert result["bandwidth_num_proxy_requests"] >= 1
    assert result["bandwidth_total_upstream_bytes"] == served.server.bytes_sent_for("h264_moov_end.mp4")
