"""S3 sources against a real S3-compatible server on 127.0.0.1 (moto's server mode).

Shows that an ``s3://`` reader makes exact ranged reads (the planned sample
ranges, nothing more) and that every byte is accounted for in
``transfer_stats``. Skips with the reason when ``moto[server]`` or ``s3fs``
is not installed (both are in the ``test`` extra).
"""

from __future__ import annotations

import pytest
import torch

from videoloader import VideoDecoder, VideoReader

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install videoloader[s3])")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
boto3 = pytest.importorskip("boto3", reason="boto3 (a moto dependency) is not installed")


@pytest.fixture(scope="module")
def s3(corpus):
    """A bucket ``videos`` holding two corpus files on a local S3 server; yields storage_options."""
    mp = pytest.MonkeyPatch()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "test")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="videos")
        for name in ("h264_bframes", "h264_faststart"):
            client.put_object(Bucket="videos", Key=f"{name}.mp4", Body=corpus[name].read_bytes())
        yield {"endpoint_url": endpoint, "key": "test", "secret": "test"}
    finally:
        server.stop()
        mp.undo()


def test_s3_reads_only_the_planned_ranges_and_counts_every_byte(s3, corpus):
    url = "s3://videos/h264_bframes.mp4"
    size = corpus["h264_bframes"].stat().st_size
    reader = VideoReader(url, storage_options=s3, index_cache=False)
    assert reader.access_path == "index" and reader.transfer_stats.tracked
    index_bytes = reader.transfer_stats.bytes_received
    before = len(reader.transfer_stats.records)
    frames = [41, 7]
    batch = reader.get_frames_at(frames)
    assert torch.equal(batch.data, VideoReader(corpus["h264_bframes"]).get_frames_at(frames).data)

    planned = [r for g in reader.plan(frames).groups for r in g.ranges]
    records = [r for r in reader.transfer_stats.records[before:] if r.ok]
    # Every sample request lies inside a planned range (parts held from the
    # index reads are not asked again), and the bytes add up exactly.
    for rec in records:
        assert any(p.start <= rec.start and rec.stop <= p.stop for p in planned), rec
        assert rec.bytes_received == rec.stop - rec.start
    sample_bytes = sum(r.bytes_received for r in records)
    assert 0 < sample_bytes <= sum(p.nbytes for p in planned)
    assert reader.transfer_stats.bytes_received == index_bytes + sample_bytes < size
    assert all(r.url == url for r in reader.transfer_stats.records)


def test_s3_video_decoder_and_missing_object(s3, corpus):
    dec = VideoDecoder("s3://videos/h264_faststart.mp4", storage_options=s3)
    assert torch.equal(dec[-1], VideoDecoder(corpus["h264_faststart"])[-1])
    with pytest.raises(FileNotFoundError):
        VideoReader("s3://videos/missing.mp4", storage_options=s3)
