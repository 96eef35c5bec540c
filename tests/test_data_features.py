"""Dataset features: manifest column mapping, several clips per item, decode-time size and crop, collation.

Videos are served by the loopback HTTP server.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import DataLoader

from videoloader import VideoDecoder, VideoReader
from videoloader.data import Columns, ManifestError, RandomClip, VideoFrameDataset, collate_samples, read_manifest
from videoloader.transforms import CenterCrop, Resize


@pytest.fixture
def urls(corpus, http_server):
    return {name: http_server.add(corpus[name].name, corpus[name]) for name in ("h264_faststart", "h264_bframes")}


def test_csv_manifest_with_own_column_names_passes_other_columns_through(urls, tmp_path):
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_path", "class_id", "caption", "split", "t0"])
        w.writerow([urls["h264_faststart"], "3", "a barcode", "train", "0.5"])
        w.writerow([urls["h264_bframes"], "1", "", "val", ""])
    ds = VideoFrameDataset(
        str(path), RandomClip(2), url_column="video_path", label_column="class_id", start_column="t0", output_size=16
    )
    a, b = ds[0], ds[1]
    assert a["label"] == 3 and a["caption"] == "a barcode" and a["split"] == "train"
    assert float(a["pts_seconds"][0]) >= 0.5  # the mapped start column is the window
    assert b["label"] == 1 and b["split"] == "val" and "caption" not in b  # empty cells are absent
    assert a["url"] == urls["h264_faststart"]
    only = VideoFrameDataset(str(path), RandomClip(2), url_column="video_path", extra_columns=["split"])
    assert "split" in only[0] and "caption" not in only[0] and "class_id" not in only[0]


def test_jsonl_and_parquet_mapping_and_reserved_names(urls, tmp_path):
    rows = [{"file": urls["h264_faststart"], "y": 7, "meta": {"fps": 30}}, {"file": urls["h264_bframes"], "y": 2}]
    jl = tmp_path / "m.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    table = read_manifest(jl, columns=Columns(url="file", label="y"))
    assert table[0].label == 7 and table[0].extra == {"meta": {"fps": 30}} and table[1].extra == {}
    ds = VideoFrameDataset(str(jl), RandomClip(2), url_column="file", label_column="y")
    assert ds[0]["meta"] == {"fps": 30} and ds[1]["label"] == 2

    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"file": [urls["h264_bframes"]], "y": [5], "score": [0.25]}), tmp_path / "m.parquet")
    ds = VideoFrameDataset(str(tmp_path / "m.parquet"), RandomClip(2), url_column="file", label_column="y")
    assert ds[0]["label"] == 5 and ds[0]["score"] == 0.25

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"url": urls["h264_bframes"], "frames": 3}))
    with pytest.raises(ManifestError, match="frames"):
        VideoFrameDataset(str(bad), RandomClip(2))


def test_several_clips_per_item_in_one_decode_call(urls):
    ds = VideoFrameDataset([urls["h264_bframes"]], RandomClip(4, stride=2), clips_per_video=3, output_size=(24, 32))
    s = ds[0]
    assert s["frames"].shape == (3, 4, 3, 24, 32)
    assert s["frame_indices"].shape == (3, 4) and s["pts_seconds"].shape == (3, 4)
    for clip in s["frame_indices"].tolist():
        assert [b - a for a, b in zip(clip, clip[1:], strict=False)] == [2, 2, 2]
    ref = VideoReader(urls["h264_bframes"], size=(24, 32)).get_frames_at(s["frame_indices"].reshape(-1).tolist())
    assert torch.equal(s["frames"].reshape(-1, 3, 24, 32), ref.data)
    again = VideoFrameDataset([urls["h264_bframes"]], RandomClip(4, stride=2), clips_per_video=3, output_size=(24, 32))
    assert torch.equal(again[0]["frame_indices"], s["frame_indices"])  # (seed, epoch, item) decides
    with pytest.raises(ValueError):
        VideoFrameDataset([urls["h264_bframes"]], RandomClip(4), clips_per_video=0)


def test_short_side_output_size_and_crop_happen_in_the_decoder(urls):
    ds = VideoFrameDataset([urls["h264_faststart"]], RandomClip(3), output_size=60, crop=48)
    s = ds[0]
    assert s["frames"].shape == (3, 3, 48, 48)  # 120x160 -> 60x80 -> centre 48x48
    dec = VideoDecoder(urls["h264_faststart"], transforms=[Resize(60), CenterCrop((48, 48))])
    assert torch.equal(s["frames"], dec.get_frames_at(s["frame_indices"].tolist()).data)
    with pytest.raises(ValueError, match="output_size"):
        VideoFrameDataset([urls["h264_faststart"]], RandomClip(3), output_size=(0, 3))


def test_collate_samples_moves_only_tensors(urls):
    records = [{"url": u, "label": i, "caption": f"c{i}"} for i, u in enumerate(urls.values())]
    ds = VideoFrameDataset(records, RandomClip(2), output_size=(16, 16))
    loader = DataLoader(ds, batch_size=2, collate_fn=lambda b: collate_samples(b, device="meta"))
    (batch,) = list(loader)
    assert batch["frames"].device.type == "meta" and batch["frames"].shape == (2, 2, 3, 16, 16)
    assert batch["label"].device.type == "meta" and batch["index"].device.type == "meta"
    assert batch["url"] == list(urls.values()) and batch["caption"] == ["c0", "c1"]
    assert isinstance(batch["transfer"]["bytes_received"], int) and batch["transfer"]["bytes_received"] > 0
    assert batch["num_skipped"] == 0
    assert collate_samples([None, None]) is None
