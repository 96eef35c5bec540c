"""videoloader.codecs.reorder_depth: how far frames can be reordered, from the extradata alone.

Real streams (libx264, libx265, libvpx-vp9, SVT-AV1) check the bound against the
reordering their packets really have (pts against decode order) and against
what FFmpeg's demuxer and decoder report; hand-built H.264 SPSs check the
inference rules for streams that do not signal the value, which no encoder
here writes.
"""

from __future__ import annotations

import random

import av
import pytest

from videoloader.codecs import CODECS, get_codec, h264_reorder_depth, parse_avcc, parse_hvcc, reorder_depth

import media

# (codec, bframes, container, extra make_video arguments)
_STREAMS = {
    "h264_bframes0": ("h264", 0, "mp4", {}),
    "h264_bframes1": ("h264", 1, "mp4", {}),
    "h264_bframes2_pyramid": ("h264", 2, "mp4", {}),
    "h264_bframes3_pyramid": ("h264", 3, "mp4", {}),
    "h264_bframes3_mkv": ("h264", 3, "mkv", {}),
    # NAL HRD parameters in the VUI ahead of the bitstream restriction fields.
    "h264_bframes3_hrd": (
        "h264",
        3,
        "mp4",
        {"options": {"x264-params": "nal-hrd=vbr:vbv-maxrate=400:vbv-bufsize=400"}},
    ),
    "h264_baseline": ("h264", 0, "mp4", {"options": {"profile": "baseline"}}),
    "hevc_bframes0": ("hevc", 0, "mp4", {}),
    "hevc_bframes3": ("hevc", 3, "mp4", {}),
    "vp9": ("vp9", 0, "webm", {}),
    "av1": ("av1", 0, "mp4", {}),
}


def _encoder_available(codec: str) -> bool:
    try:
        av.codec.Codec(media._ENCODERS[codec], "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """name -> (codec name, extradata, FFmpeg's reorder delay, the packets' real maximum reorder)."""
    folder = tmp_path_factory.mktemp("reorder")
    out = {}
    for name, (codec, bframes, container, extra) in _STREAMS.items():
        if not _encoder_available(codec):
            continue
        path = media.make_video(
            folder / f"{name}.{container}",
            codec=codec,
            bframes=bframes,
            container=container,
            width=64,
            height=64,
            num_frames=24,
            gop=12,
            noise=0,
            **extra,
        )
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            pts = [p.pts for p in c.demux(stream) if p.size and p.pts is not None]
            ctx = stream.codec_context
            # This PyAV gives has_b_frames as a bool; reorder_depth (where it exists) is the raw int.
            ffmpeg = ctx.reorder_depth if hasattr(ctx, "reorder_depth") else int(ctx.has_b_frames)
            out[name] = (ctx.codec.canonical_name, ctx.extradata, ffmpeg, _max_reorder(pts))
    return out


def _max_reorder(pts: list[int]) -> int:
    """For every packet in decode order, how many packets before it have a larger pts; the maximum."""
    return max((sum(1 for earlier in pts[:i] if earlier > p) for i, p in enumerate(pts)), default=0)


@pytest.mark.parametrize("name", list(_STREAMS))
def test_bound_covers_real_reordering_and_matches_ffmpeg(streams, name):
    if name not in streams:
        pytest.skip(f"no {media._ENCODERS[_STREAMS[name][0]]} encoder in this PyAV build")
    codec, extradata, ffmpeg, real = streams[name]
    bound = reorder_depth(codec, extradata)
    assert bound is not None
    assert bound >= real
    if _STREAMS[name][1]:
        assert real > 0  # the stream really reorders, so the bound is not trivially safe
    # FFmpeg's video delay (AVCodecContext.has_b_frames, as avformat_find_stream_info
    # leaves it) is the SPS value for H.264 (the VUI's max_num_reorder_frames, which x264
    # writes: 2 with b-pyramid, also for bframes=2 where the stream only needs 1) and
    # HEVC (sps_max_num_reorder_pics); 0 for VP9 and for AV1 (libdav1d). When FFmpeg
    # sees more reordering than the SPS says it raises its delay; none of these
    # streams makes it do so, so the two agree exactly.
    assert bound == ffmpeg
    assert get_codec(codec) is None or get_codec(codec).reorder_depth(extradata) == bound


def test_baseline_stream_gives_zero(streams):
    codec, extradata, _, _ = streams["h264_baseline"]
    assert extradata[1] == 66  # profile_idc: Baseline
    assert reorder_depth(codec, extradata) == 0


@pytest.mark.parametrize("codec", ["vp8", "vp9", "av1"])
def test_codecs_without_container_reordering_give_zero(codec):
    assert reorder_depth(codec, None) == 0
    assert reorder_depth(codec, b"\x01\x02garbage") == 0


@pytest.mark.parametrize("codec", ["mpeg4", "prores", "nonsense"])
def test_unknown_codecs_give_none(codec):
    assert reorder_depth(codec, b"\x01\x64\x00\x1f") is None


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("extradata", [None, b"", b"\x01", b"\x00\x00\x00\x01", b"\x00\x00\x01\x09\xf0"])
def test_empty_or_missing_extradata_gives_none(codec, extradata):
    assert reorder_depth(codec, extradata) is None


@pytest.mark.parametrize("name", ["h264_bframes3_pyramid", "hevc_bframes3"])
def test_truncated_record_gives_none(streams, name):
    codec, extradata, _, _ = streams[name]
    # avcC: cuts up to the end of the PPS list (the 4 trailing bytes of the
    # High-profile extension are optional, FFmpeg's reader skips them too).
    stop = len(extradata) - 4 if codec == "h264" else len(extradata)
    for n in range(stop):
        assert reorder_depth(codec, extradata[:n]) is None, n


def _avcc(sps: bytes, pps: bytes = b"\x68\xce\x38\x80", *, header: bytes | None = None) -> bytes:
    """An avcC record of one SPS and one PPS; ``header``: its first 4 bytes (default: from the SPS)."""
    return (
        (header or bytes([1, *sps[1:4]]))
        + b"\xff\xe1"
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


def _hvcc_with_sps(hvcc: bytes, sps: bytes) -> bytes:
    """The record with its SPS replaced (arrays rebuilt one NAL unit each)."""
    types = [(nal[0] >> 1) & 0x3F for nal in parse_hvcc(hvcc).nal_units]
    units = [(t, sps if t == 33 else nal) for t, nal in zip(types, parse_hvcc(hvcc).nal_units, strict=True)]
    body = b"".join(bytes([0x80 | t]) + b"\x00\x01" + len(nal).to_bytes(2, "big") + nal for t, nal in units)
    return hvcc[:22] + bytes([len(units)]) + body


def test_damaged_h264_sps_gives_none(streams):
    codec, extradata, _, _ = streams["h264_bframes3_pyramid"]
    sps = parse_avcc(extradata).sps[0]
    assert reorder_depth(codec, _avcc(sps)) == 2
    # Every cut of two bytes or more removes SPS bits the walk reads (the last
    # byte may hold nothing but the RBSP stop bit).
    for n in range(len(sps) - 1):
        assert reorder_depth(codec, _avcc(sps[:n], header=extradata[:4])) is None, n
    assert reorder_depth(codec, _avcc(b"\x68" + sps[1:])) is None  # a PPS header where the SPS should be


def test_damaged_hevc_sps_gives_none(streams):
    codec, extradata, _, _ = streams["hevc_bframes3"]
    sps = parse_hvcc(extradata).sps[0]
    assert reorder_depth(codec, _hvcc_with_sps(extradata, sps)) == 2
    # The walk reads the SPS through its VUI colour fields: cuts before those are seen.
    for n in range(len(sps) // 2):
        assert reorder_depth(codec, _hvcc_with_sps(extradata, sps[:n])) is None, n


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_random_bytes_give_none(codec):
    rng = random.Random(1234)
    for _ in range(400):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        if rng.random() < 0.5:
            data = b"\x01" + data  # past the version check, into the record walk
        assert reorder_depth(codec, data) is None, data.hex()


def test_random_h264_sps_in_a_valid_record_never_raises():
    # Random SPS payloads reach deep into the SPS walk. A few random bit strings are
    # well-formed SPSs (fields and trailing bits where they belong) and may give a
    # value; the rest must give None, and nothing may raise.
    rng = random.Random(7)
    results = []
    for _ in range(500):
        sps = b"\x67" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48)))
        results.append(reorder_depth("h264", _avcc(sps, header=b"\x01\x64\x00\x1e")))
    assert all(r is None or 0 <= r <= 16 for r in results)
    assert sum(r is not None for r in results) <= 5  # the trailing-bits check rejects misreads


@pytest.mark.parametrize("name", ["h264_bframes3_hrd", "hevc_bframes3"])
def test_bit_flipped_records_never_raise(streams, name):
    codec, extradata, _, _ = streams[name]
    rng = random.Random(99)
    for _ in range(300):
        damaged = bytearray(extradata)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        result = reorder_depth(codec, bytes(damaged))
        assert result is None or 0 <= result <= 16


# --------------------------------------------------------------------------- hand-built H.264 SPSs


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() * 2 - 1, code)

    def rbsp(self) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)
        raw = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        out = bytearray()  # emulation prevention (H.264 7.4.1)
        zeros = 0
        for byte in raw:
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def _h264_sps(
    profile: int,
    *,
    constraints: int = 0,
    level: int = 30,
    poc_type: int = 0,
    width_mbs: int = 4,
    height_mbs: int = 4,
    reorder: int | None = None,
    hrd: bool = False,
) -> bytes:
    """An H.264 SPS NAL unit; ``reorder`` None: no VUI bitstream restriction."""
    w = _BitWriter()
    w.u(8, profile)
    w.u(8, constraints)
    w.u(8, level)
    w.ue(0)  # seq_parameter_set_id
    if profile in (100, 110, 122, 244):
        w.ue(1)  # chroma_format_idc 4:2:0
        w.ue(0)
        w.ue(0)
        w.u(1, 0)
        w.u(1, 0)  # no scaling matrices
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    w.ue(4)  # max_num_ref_frames
    w.u(1, 0)
    w.ue(width_mbs - 1)
    w.ue(height_mbs - 1)
    w.u(1, 1)  # frame_mbs_only_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, 0)  # frame_cropping_flag
    w.u(1, 1)  # vui_parameters_present_flag
    w.u(3, 0)  # aspect ratio, overscan, video signal type: absent
    w.u(1, 0)  # chroma_loc_info_present_flag
    w.u(1, 1)  # timing_info_present_flag
    w.u(32, 1)
    w.u(32, 60)
    w.u(1, 1)
    w.u(1, int(hrd))  # nal_hrd_parameters_present_flag
    if hrd:
        w.ue(1)  # cpb_cnt_minus1: two schedules
        w.u(8, 0x34)
        for _ in range(2):
            w.ue(1000)
            w.ue(3000)
            w.u(1, 0)
        w.u(20, 0x5A5A5)
    w.u(1, 0)  # vcl_hrd_parameters_present_flag
    if hrd:
        w.u(1, 0)  # low_delay_hrd_flag
    w.u(1, 0)  # pic_struct_present_flag
    w.u(1, int(reorder is not None))
    if reorder is not None:
        w.u(1, 1)
        for value in (2, 1, 16, 16):
            w.ue(value)
        w.ue(reorder)
        w.ue(max(reorder, 4))  # max_dec_frame_buffering
    return b"\x67" + w.rbsp()


@pytest.mark.parametrize(
    ("sps", "want"),
    [
        pytest.param(_h264_sps(100, reorder=3), 3, id="signalled"),
        pytest.param(_h264_sps(100, reorder=5, hrd=True), 5, id="signalled-after-hrd"),
        pytest.param(_h264_sps(100, reorder=0, poc_type=0), 0, id="signalled-zero"),
        pytest.param(_h264_sps(66), 0, id="baseline"),
        pytest.param(_h264_sps(66, constraints=0x40), 0, id="constrained-baseline"),
        pytest.param(_h264_sps(77, constraints=0x80), 0, id="main-baseline-conforming"),
        pytest.param(_h264_sps(100, constraints=0x0C), 0, id="constrained-high"),
        pytest.param(_h264_sps(110, constraints=0x10), 0, id="high10-intra"),
        pytest.param(_h264_sps(77, poc_type=2), 0, id="poc-type-2"),
        # MaxDpbFrames = MaxDpbMbs / (PicWidthInMbs * FrameHeightInMbs), at most 16 (A.3.1, Table A-1).
        pytest.param(_h264_sps(100, level=40, width_mbs=120, height_mbs=68), 4, id="1080p-level4"),
        pytest.param(_h264_sps(77, level=31, width_mbs=80, height_mbs=45), 5, id="720p-level3.1"),
        pytest.param(_h264_sps(100, level=51, width_mbs=240, height_mbs=135), 5, id="2160p-level5.1"),
        pytest.param(_h264_sps(77, level=30, width_mbs=4, height_mbs=4), 16, id="tiny-capped"),
        pytest.param(_h264_sps(77, level=99), 16, id="unknown-level"),
        pytest.param(_h264_sps(77, level=30, width_mbs=120, height_mbs=68), 16, id="picture-over-level"),
    ],
)
def test_h264_sps_rules(sps, want):
    assert h264_reorder_depth(sps) == want
    assert reorder_depth("h264", _avcc(sps)) == want
    # Annex-B extradata (as MPEG-TS gives) carries the same SPS.
    assert reorder_depth("h264", b"\x00\x00\x00\x01" + sps) == want


def test_h264_sps_out_of_range_gives_none():
    assert reorder_depth("h264", _avcc(_h264_sps(100, reorder=17))) is None
    assert reorder_depth("h264", _avcc(_h264_sps(100, reorder=16))) == 16
    assert reorder_depth("h264", _avcc(_h264_sps(100, poc_type=3))) is None


def test_h264_sps_must_end_in_its_trailing_bits():
    sps = _h264_sps(100, reorder=2, hrd=True)
    assert reorder_depth("h264", _avcc(sps + b"\x00\x00")) == 2  # trailing zero bytes are allowed
    assert reorder_depth("h264", _avcc(sps + b"\x80")) is None  # fields end before the NAL unit does
    assert not sps[-1] & 0x01  # the stop bit is not the last bit, so there is room for a stray one
    assert reorder_depth("h264", _avcc(sps[:-1] + bytes([sps[-1] | 0x01]))) is None  # a stray bit after the stop bit


def test_every_registered_codec_answers():
    for name, codec in CODECS.items():
        result = codec.reorder_depth(None)
        assert result == (0 if name in ("vp9", "av1") else None)
