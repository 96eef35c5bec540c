"""AVCC/HVCC -> Annex-B (and AV1 sequence header insertion) checked bit-exactly.

The stream we build is fed to FFmpeg's software decoder with NO extradata, the
way NVDEC receives it; every decoded frame must equal (ndarray equality) the
frame of a plain ``av.open(...).decode()`` of the MP4.
"""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from _hw_media import decoder_name, demux, encode, planes, reference_frames
from videoloader._errors import CorruptVideoError, UnsupportedFormatError
from videoloader.decoders._annexb import (
    START_CODE,
    AnnexBConverter,
    ColourInfo,
    iter_annexb_nal_units,
    iter_length_prefixed,
    iter_obus,
    length_prefixed_to_annexb,
    parse_avcc,
    parse_hvcc,
    stream_colour_info,
)


def _decode_converted(codec, samples, conv, *, start=0, stop=None):
    """Feed converted samples [start, stop) to a bare decoder (no extradata)."""
    ctx = av.CodecContext.create(decoder_name(codec), "r")
    assert not ctx.extradata
    out = []
    for s in samples[start:stop]:
        p = av.Packet(conv.convert(s.data, is_sync=s.is_sync))
        p.pts, p.dts = s.pts, s.dts
        out += [(int(f.pts), planes(f)) for f in ctx.decode(p)]
    out += [(int(f.pts), planes(f)) for f in ctx.decode(None)]
    return out


def _assert_same(got, want):
    assert [p for p, _ in got] == [p for p, _ in want]
    for (pts, a), (_, b) in zip(got, want):
        assert a.shape == b.shape and np.array_equal(a, b), f"frame pts={pts} differs"


@pytest.fixture(scope="module")
def h264_bframes():
    return encode("h264", num_frames=40, gop=12, bframes=3)


@pytest.fixture(scope="module")
def hevc_bframes():
    return encode("hevc", num_frames=40, gop=12, bframes=3, options={"x265-params": "log-level=error"})


@pytest.mark.parametrize("name", ["h264_bframes", "hevc_bframes"])
def test_whole_stream_bit_exact_without_extradata(name, request):
    data = request.getfixturevalue(name)
    d = demux(data)
    assert d.extradata and d.extradata[0] == 1  # avcC / hvcC record, not Annex-B
    assert any(s.pts != s.dts for s in d.samples)  # B-frames reorder
    conv = AnnexBConverter(d.codec, d.extradata)
    _assert_same(_decode_converted(d.codec, d.samples, conv), reference_frames(data))


@pytest.mark.parametrize("name", ["h264_bframes", "hevc_bframes"])
def test_each_gop_decodes_alone(name, request):
    """Random access: every group from a later keyframe decodes with the
    in-band parameter sets we insert, and gives exactly the reference frames."""
    data = request.getfixturevalue(name)
    d = demux(data)
    ref = dict(reference_frames(data))
    conv = AnnexBConverter(d.codec, d.extradata)
    keys = [i for i, s in enumerate(d.samples) if s.is_sync]
    assert len(keys) >= 3
    for k, start in enumerate(keys[1:], 1):
        stop = keys[k + 1] if k + 1 < len(keys) else None
        got = _decode_converted(d.codec, d.samples, conv, start=start, stop=stop)
        # Open GOPs (x265's default CRA): leading pictures that precede the
        # keyframe in display order cannot be decoded from it and are dropped.
        key_pts = d.samples[start].pts
        want_pts = sorted(s.pts for s in d.samples[start:stop] if s.pts >= key_pts)
        assert [p for p, _ in got] == want_pts
        for pts, a in got:
            assert np.array_equal(a, ref[pts]), f"{name}: gop at sample {start}, frame pts={pts} differs"


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_raw_elementary_stream_file(codec, tmp_path, request):
    """The concatenated output is a valid raw .h264/.hevc file for FFmpeg's raw demuxer."""
    data = request.getfixturevalue(f"{codec}_bframes")
    d = demux(data)
    conv = AnnexBConverter(codec, d.extradata)
    raw = tmp_path / f"stream.{codec}"
    raw.write_bytes(b"".join(conv.convert(s.data, is_sync=s.is_sync) for s in d.samples))
    with av.open(str(raw), format=codec) as c:
        got = [planes(f) for f in c.decode(video=0)]
    want = [a for _, a in reference_frames(data)]
    assert len(got) == len(want)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_parameter_sets_go_before_every_keyframe(h264_bframes):
    d = demux(h264_bframes)
    conv = AnnexBConverter("h264", d.extradata)
    ps = conv.parameter_sets
    assert ps is not None and ps.nal_length_size == 4
    assert [n[0] & 0x1F for n in ps.nal_units] == [7, 8]
    for s in d.samples:
        out = conv.convert(s.data, is_sync=s.is_sync)
        types = [n[0] & 0x1F for n in iter_annexb_nal_units(out)]
        if s.is_sync:
            assert out.startswith(ps.annexb())
            assert types[:2] == [7, 8] and 5 in types
        else:
            assert 7 not in types and 8 not in types
        # Payload is untouched: only length fields became start codes.
        assert [bytes(n) for n in iter_length_prefixed(s.data, 4)] == [
            n for n in iter_annexb_nal_units(out) if (n[0] & 0x1F) not in (7, 8) or not s.is_sync
        ][-len(list(iter_length_prefixed(s.data, 4))):]


def _concat_mp4(first: bytes, second: bytes) -> bytes:
    """One MP4 track: the samples of ``first`` then of ``second`` (whose
    SPS/PPS must be in-band), with ``first``'s avcC/hvcC as extradata."""
    buf = io.BytesIO()
    with av.open(io.BytesIO(first)) as a, av.open(io.BytesIO(second)) as b, av.open(buf, "w", format="mp4") as out:
        sa, sb = a.streams.video[0], b.streams.video[0]
        ost = out.add_stream_from_template(sa)
        last = 0
        for p in a.demux(sa):
            if p.size:
                last = max(last, int(p.pts))
                p.stream = ost
                out.mux(p)
        shift = last + 1 + 2  # keep pts > previous, leave room for reordering delay
        for p in b.demux(sb):
            if p.size:
                p.pts += shift
                p.dts += shift
                p.stream = ost
                out.mux(p)
    return buf.getvalue()


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_several_parameter_sets_in_one_track(codec):
    """Two encodes with different settings (size, profile/tools) in one track:
    the second carries its own SPS/PPS in-band, which must win over the avcC ones."""
    if codec == "h264":
        first = encode("h264", width=64, height=48, num_frames=24, gop=12, bframes=2)
        second = encode("h264", width=80, height=64, num_frames=24, gop=8, bframes=0,
                        options={"profile": "baseline", "x264-params": "repeat-headers=1:cabac=0"}, seed=7)
    else:
        first = encode("hevc", width=64, height=48, num_frames=24, gop=12, bframes=2,
                       options={"x265-params": "log-level=error"})
        second = encode("hevc", width=80, height=64, num_frames=24, gop=8, bframes=0,
                        options={"x265-params": "log-level=error:repeat-headers=1:sao=0"}, seed=7)
    data = _concat_mp4(first, second)
    d = demux(data)
    ref = reference_frames(data)
    assert len({a.size for _, a in ref}) == 2  # two frame sizes really decoded
    conv = AnnexBConverter(codec, d.extradata)
    _assert_same(_decode_converted(codec, d.samples, conv), ref)
    # Starting at a keyframe of the second part also works (its in-band headers).
    second_key = [i for i, s in enumerate(d.samples) if s.is_sync][-1]
    got = _decode_converted(codec, d.samples, conv, start=second_key)
    refd = dict(ref)
    assert got and all(np.array_equal(a, refd[p]) for p, a in got)


def test_avcc_with_two_sps_and_two_pps_inserts_all_in_order():
    sps0, sps1 = b"\x67\x64\x00\x1e\xaa", b"\x67\x64\x00\x1e\xbb"
    pps0, pps1 = b"\x68\xee\x3c\x80", b"\x68\xce\x3c\x80"
    avcc = bytes([1, 0x64, 0, 0x1E, 0xFF, 0xE2]) + b"".join(struct.pack(">H", len(x)) + x for x in (sps0, sps1))
    avcc += bytes([2]) + b"".join(struct.pack(">H", len(x)) + x for x in (pps0, pps1))
    ps = parse_avcc(avcc)
    assert ps.nal_units == (sps0, sps1, pps0, pps1) and ps.sps == (sps0, sps1) and ps.nal_length_size == 4
    idr = b"\x65\x88\x84\x00"
    out = AnnexBConverter("h264", avcc).convert(struct.pack(">I", len(idr)) + idr, is_sync=True)
    assert out == b"".join(START_CODE + x for x in (sps0, sps1, pps0, pps1, idr))


def test_hvcc_orders_vps_sps_pps(hevc_bframes):
    d = demux(hevc_bframes)
    ps = parse_hvcc(d.extradata)
    types = [(n[0] >> 1) & 0x3F for n in ps.nal_units]
    assert types[:3] == [32, 33, 34]


def test_length_prefix_sizes_and_errors():
    nal = b"\x65\x01\x02"
    for size in (1, 2, 4):
        sample = len(nal).to_bytes(size, "big") + nal
        assert length_prefixed_to_annexb(sample, size) == START_CODE + nal
    with pytest.raises(CorruptVideoError, match="runs past its end"):
        length_prefixed_to_annexb(b"\x00\x00\x00\x09\x65\x01", 4)
    with pytest.raises(CorruptVideoError):
        list(iter_length_prefixed(b"\x00\x00", 4))
    with pytest.raises(UnsupportedFormatError, match="configurationVersion"):
        parse_avcc(b"\x00\x00\x00\x01\x67\x64")
    with pytest.raises(CorruptVideoError, match="truncated"):
        parse_avcc(bytes([1, 0x64, 0, 0x1E, 0xFF, 0xE1, 0x00, 0x10, 0x67]))


def test_annexb_input_passes_through():
    """MPEG-TS style input (already Annex-B, no record) is not re-wrapped."""
    data = encode("h264", num_frames=12, fmt="mpegts")
    d = demux(data)
    conv = AnnexBConverter("h264", d.extradata)
    assert conv.parameter_sets is None
    for s in d.samples:
        assert conv.convert(s.data, is_sync=s.is_sync).endswith(s.data)


@pytest.fixture(scope="module")
def av1_clip():
    return encode("av1", width=64, height=48, num_frames=24, gop=8)


def test_av1_sequence_header_inserted_and_bit_exact(av1_clip):
    d = demux(av1_clip)
    assert d.extradata and d.extradata[0] == 0x81  # av1C
    conv = AnnexBConverter("av1", d.extradata, temporal_delimiters=True)
    for s in d.samples:
        out = conv.convert(s.data, is_sync=s.is_sync)
        types = [t for t, _ in iter_obus(out)]
        assert types[0] == 2  # temporal delimiter
        had_seq = 1 in [t for t, _ in iter_obus(s.data)]
        if s.is_sync:
            assert 1 in types
        elif not had_seq:
            assert 1 not in types
    _assert_same(_decode_converted("av1", d.samples, conv), reference_frames(av1_clip))
    # Decoding from a later keyframe without extradata works too.
    keys = [i for i, s in enumerate(d.samples) if s.is_sync]
    stripped = [s for s in d.samples]
    got = _decode_converted("av1", stripped, conv, start=keys[-1])
    ref = dict(reference_frames(av1_clip))
    assert got and all(np.array_equal(a, ref[p]) for p, a in got)


def test_vp9_passes_through_unchanged():
    data = encode("vp9", width=64, height=48, num_frames=12, gop=6)
    d = demux(data)
    conv = AnnexBConverter("vp9", d.extradata)
    for s in d.samples:
        assert conv.convert(s.data, is_sync=s.is_sync) == s.data
    _assert_same(_decode_converted("vp9", d.samples, conv), reference_frames(data))


# ------------------------------------------------------------------ colour description


def _ffmpeg_tags(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as c:
        f = next(c.decode(video=0))
        return int(f.colorspace), int(f.color_range)


@pytest.mark.parametrize(
    "codec,pix_fmt,colorspace,color_range,options",
    [
        ("h264", "yuv420p", None, None, {}),
        ("h264", "yuv420p", 1, 1, {}),
        ("h264", "yuv420p", 5, 2, {}),
        ("h264", "yuv420p", 6, 1, {"x264-params": "scenecut=0"}),
        ("hevc", "yuv420p", 1, 2, {"x265-params": "log-level=error"}),
        ("hevc", "yuv420p10le", 9, 1, {"x265-params": "log-level=error"}),
        ("hevc", "yuv420p10le", None, None, {"x265-params": "log-level=error:bframes=4:b-pyramid=1"}),
        ("av1", "yuv420p", 1, 1, {}),
        ("av1", "yuv420p10le", 9, 2, {}),
        ("vp9", "yuv420p", 1, 1, {}),
        ("vp9", "yuv420p", 5, 2, {}),
    ],
)
def test_colour_description_matches_ffmpeg(codec, pix_fmt, colorspace, color_range, options):
    data = encode(codec, pix_fmt=pix_fmt, num_frames=6, gop=6, colorspace=colorspace,
                  color_range=color_range, options=options)
    d = demux(data)
    info = stream_colour_info(codec, d.extradata, d.samples[0].data)
    ff_space, ff_range = _ffmpeg_tags(data)
    assert info.matrix_coefficients == ff_space or (info.matrix_coefficients in (2,) and ff_space == 2)
    assert info.full_range == (ff_range == 2)
    assert info.bit_depth == (10 if "10" in pix_fmt else 8)
    if codec in ("h264", "hevc", "av1"):  # from the config record alone, too
        assert stream_colour_info(codec, d.extradata) == info


def test_colour_info_defaults_when_unparsable():
    assert stream_colour_info("h264", b"\x01garbage") == ColourInfo()
    assert ColourInfo().matrix == "bt601" and ColourInfo(matrix_coefficients=1).matrix == "bt709"
