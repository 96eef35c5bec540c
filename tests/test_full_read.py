"""The opt-in full read for servers that ignore Range (loopback server with Range off)."""

from __future__ import annotations

import pytest
import torch

from videoloader import RangeRequestError, VideoReader
from videoloader.io import RangeSource


def test_a_server_ignoring_range_is_refused_by_default_and_read_once_when_allowed(corpus, http_server):
    path = corpus["h264_faststart"]
    size = path.stat().st_size
    url = http_server.add("v.mp4", path, honour_range=False)
    with pytest.raises(RangeRequestError, match="HTTP 200"):
        VideoReader(url)

    http_server.reset_counts()
    with pytest.warns(RuntimeWarning, match="ignores Range"):
        reader = VideoReader(url, source_options={"allow_full_read": True})
    batch = reader.get_frames_at([3, 50, 12])
    assert torch.equal(batch.data, VideoReader(path).get_frames_at([3, 50, 12]).data)
    gets = [r for r in http_server.requests if r[0] == "GET"]
    assert len(gets) == 2  # the refused probe (closed early) and the one whole read; frames cost nothing more
    records = reader.transfer_stats.records
    whole = [r for r in records if r.ok and (r.start, r.stop) == (0, size)]
    assert len(whole) == 1 and whole[0].bytes_received == size  # tracked
    assert not [r for r in records if r.ok and r.bytes_received and (r.start, r.stop) != (0, size)]
    reader.get_frames_at([59])
    assert len([r for r in http_server.requests if r[0] == "GET"]) == 2


def test_full_read_through_read_ranges(corpus, http_server):
    data = corpus["h264_bframes"].read_bytes()
    url = http_server.add("b.mp4", data, honour_range=False)
    src = RangeSource(url, allow_full_read=True)
    with pytest.warns(RuntimeWarning):
        parts = src.read_ranges([(100, 200), (5000, 5010)])
    assert parts == [data[100:200], data[5000:5010]]
    assert src.read(7, 9) == data[7:9]
    import pickle

    assert pickle.loads(pickle.dumps(src))._allow_full_read is True
