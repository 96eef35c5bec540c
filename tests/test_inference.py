"""run_inference end to end over the loopback server: keys, units, errors, seeds, PNGs, bandwidth."""

from __future__ import annotations

import json
import logging
import urllib.error

import numpy as np
import pytest
import torch

from videoloader import VideoReader
from videoloader.job import InferenceResult, WeightsUnavailableError, run_inference

from app_helpers import CLASS_NAMES, TinyNet, check_result_schema, decode_png, serve_videos

NAMES = ["h264_faststart", "h264_bframes", "mkv_h264"]
FAST = dict(model=TinyNet(), weights=None, device="cpu", class_names=CLASS_NAMES, num_workers=2)


@pytest.fixture
def served(http_server, corpus):
    return serve_videos(http_server, corpus, NAMES)


def test_end_to_end_with_one_broken_video(served, caplog):
    server = served.server
    server.reset_counts()
    caplog.set_level(logging.DEBUG, logger="videoloader")
    calls = []
    result = run_inference(
        video_urls=served.url_list(),
        frames_per_video=3,
        random_seed=7,
        return_frame_png=True,
        batch_size=4,
        progress=lambda done, total, info: calls.append((done, total, info["ok"])),
        **FAST,
    )
    check_result_schema(result)
    assert result["status"] == "partial" and result["num_failed"] == 1 and result["num_succeeded"] == 3
    assert calls == [(1, 4, True), (2, 4, True), (3, 4, True), (4, 4, False)]
    assert result["device"] == "cpu" and result["gpu_name"] is None
    assert result["torch_version"] == torch.__version__
    assert result["model"] == "TinyNet" and result["weights"] is None
    assert set(result["top_classes"]) <= set(CLASS_NAMES)

    videos = {name: v for name, v in zip(served.urls, result["videos"], strict=False)}
    assert [v["index"] for v in result["videos"]] == [0, 1, 2, 3]

    # The broken video: an error entry, nothing else stopped.
    bad = videos["broken"]
    assert not bad["ok"] and bad["top_classes"] == [] and bad["selected_frame_indices"] == []
    assert bad["error"]["type"] in (
        "MP4ParseError",
        "TruncatedFileError",
        "NotAVideoError",
        "ContainerError",
        "UnsupportedFormatError",
        "CorruptVideoError",
    )
    # Never a query string in results or logs.
    assert "SECRET123" not in json.dumps(result, default=str)
    assert "SECRET123" not in caplog.text

    # Upstream bytes are exactly what the server sent, per video and in total (broken one included).
    assert result["bandwidth_total_upstream_bytes"] == server.bytes_sent
    for name, v in videos.items():
        served_name = "broken.mp4" if name == "broken" else f"{name}{served.paths[name].suffix}"
        assert v["bandwidth_upstream_bytes"] == server.bytes_sent_for(served_name), name
    assert bad["bandwidth_upstream_bytes"] > 0

    for name in NAMES:
        v = videos[name]
        with VideoReader(served.paths[name], backend="cpu") as reader:
            expected = reader.get_frames_at(v["selected_frame_indices"])
            # downstream = the compressed bytes the reader fed its decoder for these frames
            assert v["bandwidth_downstream_bytes"] == reader.last_decode_nbytes
            if reader.index is not None:
                assert v["access_path"] == "index"
                assert 0 < reader.last_decode_nbytes <= reader.plan(v["selected_frame_indices"]).nbytes
            else:
                assert v["access_path"] == "demux"
        assert v["selected_timestamps_seconds"] == expected.pts_seconds.tolist()
        # PNGs decode and are exactly the decoded frames.
        assert len(v["frame_png_bytes_list"]) == 3
        for png, frame in zip(v["frame_png_bytes_list"], expected.data, strict=True):
            np.testing.assert_array_equal(decode_png(png), frame.permute(1, 2, 0).numpy())
        assert v["num_frames"] == expected.data.shape[0] or v["num_frames"] > 0
        assert v["width"] == expected.data.shape[-1] and v["height"] == expected.data.shape[-2]
    assert result["frame_png_bytes_list"] == [p for n in NAMES for p in videos[n]["frame_png_bytes_list"]]

    # The dict without PNG bytes is plain JSON.
    stripped = {k: v for k, v in result.items() if k != "frame_png_bytes_list"}
    stripped["videos"] = [{k: x for k, x in v.items() if k != "frame_png_bytes_list"} for v in result["videos"]]
    json.loads(json.dumps(stripped))


def test_predictions_match_the_model(served):
    url = served.urls["h264_faststart"]
    model = TinyNet(seed=3)
    result = run_inference(
        url,
        frames_per_video=2,
        random_seed=1,
        model=model,
        weights=None,
        device="cpu",
        class_names=CLASS_NAMES,
        top_k=3,
    )
    v = result["videos"][0]
    with VideoReader(served.paths["h264_faststart"], backend="cpu") as reader:
        frames = reader.get_frames_at(v["selected_frame_indices"]).data
    from videoloader.job import ImageNetPreprocess

    with torch.no_grad():
        probs = torch.softmax(model(ImageNetPreprocess()(frames)), dim=-1)
    top_p, top_i = probs.topk(3, dim=-1)
    assert v["top_class_indices"] == top_i[:, 0].tolist()
    assert v["top_classes"] == [CLASS_NAMES[i] for i in top_i[:, 0].tolist()]
    np.testing.assert_allclose(v["confidences"], top_p[:, 0].tolist(), rtol=1e-5)
    assert [len(p) for p in v["predictions"]] == [3, 3]


def test_seed_is_reproducible_and_position_based(served):
    urls = served.url_list()[:3]
    a = run_inference(video_urls=urls, frames_per_video=4, random_seed=11, **FAST)
    b = run_inference(video_urls=urls, frames_per_video=4, random_seed=11, **FAST)
    c = run_inference(video_urls=urls, frames_per_video=4, random_seed=12, **FAST)
    pick = lambda r: [v["selected_frame_indices"] for v in r["videos"]]  # noqa: E731
    assert pick(a) == pick(b)
    assert a["selected_timestamps_seconds"] == b["selected_timestamps_seconds"]
    assert a["top_classes"] == b["top_classes"] and a["confidences"] == b["confidences"]
    assert pick(a) != pick(c)
    # Video i draws from default_rng((seed, i)): a shard starting at i gives the same frames.
    shard = run_inference(video_urls=urls[1:], frames_per_video=4, random_seed=11, first_video_index=1, **FAST)
    assert pick(shard) == pick(a)[1:]
    assert [v["index"] for v in shard["videos"]] == [1, 2]
    # No seed: one is drawn and reported, and it reproduces the run.
    d = run_inference(video_urls=urls, frames_per_video=4, **FAST)
    e = run_inference(video_urls=urls, frames_per_video=4, random_seed=d["random_seed"], **FAST)
    assert pick(d) == pick(e)


@pytest.mark.parametrize("offset", [0.25, 1.0])
def test_offset_max_seconds_is_respected(served, offset):
    result = run_inference(
        video_urls=served.url_list()[:3], frames_per_video=6, random_seed=5, offset_max_seconds=offset, **FAST
    )
    assert result["offset_max_seconds"] == offset
    for v in result["videos"]:
        assert v["ok"], v["error"]
        assert all(t < offset for t in v["selected_timestamps_seconds"]), v["selected_timestamps_seconds"]
        # 30 fps: frames with pts < offset are 0 .. ceil(30 * offset) - 1.
        assert max(v["selected_frame_indices"]) < int(np.ceil(30 * offset))
    # Over many seeds the whole allowed range gets used (it is not just "the first frames").
    seen = set()
    for seed in range(8):
        r = run_inference(
            served.urls["h264_faststart"], frames_per_video=3, random_seed=seed, offset_max_seconds=offset, **FAST
        )
        seen.update(r["videos"][0]["selected_frame_indices"])
    assert max(seen) == int(np.ceil(30 * offset)) - 1


def test_more_frames_than_the_window_holds(served, caplog):
    # 30 fps: the first 0.1 s holds frames 0, 1, 2; each is taken once, and the result says so.
    caplog.set_level(logging.INFO, logger="videoloader")
    result = run_inference(
        served.urls["h264_faststart"], frames_per_video=5, random_seed=0, offset_max_seconds=0.1, **FAST
    )
    v = result["videos"][0]
    assert v["ok"] and v["selected_frame_indices"] == [0, 1, 2]
    assert v["frames_requested"] == 5 and v["frames_returned"] == 3
    assert len(v["top_classes"]) == len(v["selected_timestamps_seconds"]) == 3
    assert all(t < 0.1 for t in v["selected_timestamps_seconds"])
    assert result["num_videos_with_fewer_frames"] == 1
    assert "5 frames asked, 3 in the window" in caplog.text


def test_more_frames_than_the_video_holds(served):
    name = "h264_faststart"
    with VideoReader(served.paths[name], backend="cpu") as reader:
        n = reader.metadata.num_frames
    with VideoReader(served.paths["h264_bframes"], backend="cpu") as reader:
        n2 = reader.metadata.num_frames
    result = run_inference(
        video_urls=[served.urls[name], served.urls["h264_bframes"]], frames_per_video=n + 7, random_seed=0, **FAST
    )
    check_result_schema(result)
    short = result["videos"][0]
    assert short["selected_frame_indices"] == list(range(n))  # every frame once, in order
    assert short["frames_requested"] == n + 7 and short["frames_returned"] == n
    assert result["videos"][1]["frames_returned"] == min(n2, n + 7)
    assert result["num_videos_with_fewer_frames"] == 1 + (n2 < n + 7)
    # Enough frames: the draw is unchanged (exactly frames_per_video distinct frames).
    ok = run_inference(served.urls[name], frames_per_video=4, random_seed=0, **FAST)["videos"][0]
    assert ok["frames_requested"] == ok["frames_returned"] == 4 and len(set(ok["selected_frame_indices"])) == 4


def test_every_video_failing(http_server):
    url = http_server.url("missing.mp4") + "?X-Amz-Signature=SECRET123"
    result = run_inference(video_urls=[url, url], **FAST)
    check_result_schema(result)
    assert result["status"] == "failed" and result["num_failed"] == 2
    assert result["videos"][0]["error"]["type"] == "SourceNotFoundError"
    assert "SECRET123" not in json.dumps(result)
    assert result["top_classes"] == [] and result["bandwidth_total_downstream_bytes"] == 0


def test_typed_result_round_trip(served):
    result = run_inference(served.urls["h264_faststart"], random_seed=2, return_frame_png=True, **FAST)
    typed = InferenceResult.from_dict(result)
    assert typed.status == "ok" and typed.num_videos == 1 and typed.videos[0].ok
    assert typed.to_dict() == result


def test_callable_model_and_checkpoint_path(served, tmp_path):
    url = served.urls["h264_faststart"]
    module = TinyNet(seed=4)
    ref = run_inference(url, random_seed=3, model=module, weights=None, device="cpu")
    # A plain callable on the preprocessed batch.
    fn = run_inference(url, random_seed=3, model=lambda x: module(x), weights=None, device="cpu")
    assert fn["top_classes"] == ref["top_classes"] and fn["confidences"] == ref["confidences"]
    # A state-dict checkpoint loaded into a fresh module.
    ckpt = tmp_path / "tiny.pth"
    torch.save({"state_dict": module.state_dict()}, ckpt)
    loaded = run_inference(url, random_seed=3, model=TinyNet(seed=99), weights=str(ckpt), device="cpu")
    assert loaded["weights"] == str(ckpt)
    assert loaded["top_classes"] == ref["top_classes"]
    assert ref["top_classes"][0].startswith("class_")  # no names known: class_<i>


def test_torchvision_model_random_init(served):
    result = run_inference(
        served.urls["h264_faststart"], random_seed=0, model="mobilenet_v3_small", weights=None, device="cpu"
    )
    check_result_schema(result)
    assert result["model"] == "mobilenet_v3_small" and result["weights"] is None
    assert result["status"] == "ok"


def test_weights_unavailable_says_how_to_proceed(served, tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        run_inference(
            served.urls["h264_faststart"],
            model="mobilenet_v3_small",
            weights="DEFAULT",
            weights_dir=tmp_path / "hub",
            device="cpu",
        )
    msg = str(info.value)
    assert "weights=None" in msg and "--weights none" in msg and str(tmp_path / "hub") in msg
    assert "mobilenet_v3_small" in msg
    assert torch.hub.get_dir() != str(tmp_path / "hub")  # the hub dir was restored


def test_bad_arguments():
    with pytest.raises(ValueError, match="video_url"):
        run_inference()
    with pytest.raises(ValueError, match="frames_per_video"):
        run_inference("x.mp4", frames_per_video=0, **FAST)
    with pytest.raises(ValueError, match="offset_max_seconds"):
        run_inference("x.mp4", offset_max_seconds=0, **FAST)
    with pytest.raises(ValueError, match="unknown torchvision model"):
        run_inference("x.mp4", model="no_such_net", weights=None)
    with pytest.raises(ValueError, match="unknown weights"):
        run_inference("x.mp4", model="mobilenet_v3_small", weights="NOPE")


def test_logger_level_env(served, monkeypatch, caplog):
    monkeypatch.setenv("LOGGER_LEVEL", "INFO")
    logger = logging.getLogger("videoloader")
    old = logger.level
    try:
        with caplog.at_level(logging.NOTSET):
            run_inference(served.urls["h264_faststart"], random_seed=0, **FAST)
        assert logger.level == logging.INFO
        assert any("MB upstream" in r.getMessage() for r in caplog.records)
        assert "SECRET123" not in caplog.text
    finally:
        logger.setLevel(old)


def _signed(url: str) -> str:
    return url.replace("://", "://user:pass-7f3@", 1).split("?", 1)[0] + "?X-Amz-Signature=SECRET&X-Amz-Expires=60"


def test_results_and_logs_hold_no_credentials(served, http_server, caplog):
    caplog.set_level(logging.DEBUG)
    urls = [
        _signed(served.urls["h264_faststart"]),
        _signed(http_server.url("missing.mp4")),
        "simplecache::" + _signed(served.urls["h264_bframes"]),
    ]
    result = run_inference(video_urls=urls, frames_per_video=2, random_seed=0, **FAST)
    assert [v["ok"] for v in result["videos"]] == [True, False, True]
    assert result["videos"][0]["url"] == served.urls["h264_faststart"].split("?")[0]
    assert result["videos"][2]["url"].startswith("simplecache::http://127.0.0.1")
    text = json.dumps(result, default=str) + caplog.text
    assert "SECRET" not in text and "pass-7f3" not in text


def test_via_proxy_reads_with_ffmpeg_and_reports_the_proxys_numbers(served, caplog):
    # The URL-only path: FFmpeg (PyAV) reads each video through the tracking proxy; the bytes and
    # requests come from the proxy and agree with what the origin sent.
    server = served.server
    names = ["h264_faststart", "mkv_h264", "broken"]
    urls = [served.urls[n] for n in names]
    server.reset_counts()
    caplog.set_level(logging.DEBUG, logger="videoloader")
    result = run_inference(video_urls=urls, frames_per_video=3, random_seed=5, via="proxy", **FAST)
    check_result_schema(result)
    assert result["via"] == "proxy" and result["status"] == "partial"
    videos = dict(zip(names, result["videos"], strict=True))
    assert not videos["broken"]["ok"]
    for name in ("h264_faststart", "mkv_h264"):
        v = videos[name]
        assert v["ok"] and v["access_path"] == "proxy" and v["backend"] == "pyav"
        # Constant frame rate: frame i is the frame with that number, bit-exact with our reader.
        with VideoReader(served.paths[name], backend="cpu") as reader:
            want = reader.get_frames_at(v["selected_frame_indices"])
        np.testing.assert_allclose(v["selected_timestamps_seconds"], want.pts_seconds.numpy(), atol=1e-6)
        assert v["bandwidth_upstream_bytes"] == server.bytes_sent_for(served.paths[name].name) > 0
        assert 0 < v["bandwidth_downstream_bytes"] <= v["bandwidth_upstream_bytes"]
        assert v["bandwidth_num_proxy_requests"] >= 1 and v["bandwidth_num_requests"] >= 1
    assert result["bandwidth_num_proxy_requests"] == sum(v["bandwidth_num_proxy_requests"] for v in result["videos"])
    assert result["bandwidth_total_upstream_bytes"] == sum(v["bandwidth_upstream_bytes"] for v in result["videos"])
    assert "SECRET123" not in json.dumps(result) and "SECRET123" not in caplog.text
    with pytest.raises(ValueError, match="via"):
        run_inference(urls[0], via="carrier-pigeon", **FAST)
