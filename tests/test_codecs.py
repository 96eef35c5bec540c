"""videoloader.codecs: Annex-B conversion, non-reference pictures, colour descriptions.

AVCC/HVCC -> Annex-B (and AV1 sequence header insertion) is checked
bit-exactly: the stream we build is fed to FFmpeg's software decoder with NO extradata, the
way NVDEC receives it; every decoded frame must equal (ndarray equality) the
frame of a plain ``av.open(...).decode()`` of the MP4.
"""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from videoloader._errors import CorruptVideoError, UnsupportedFormatError
from videoloader.codecs import (
    CODECS,
    START_CODE,
    ColourInfo,
    get_codec,
    h264_is_disposable,
    hevc_is_disposable,
    hvcc_num_temporal_layers,
    iter_annexb_nal_units,
    iter_length_prefixed,
    iter_obus,
    length_prefixed_to_annexb,
    non_reference_test,
    parse_avcc,
    parse_hvcc,
    stream_colour_info,
    stream_converter,
)

import media
from _hw_media import decoder_name, demux, encode, planes, reference_frames


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
    for (pts, a), (_, b) in zip(got, want, strict=True):
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
    conv = stream_converter(d.codec, d.extradata)
    _assert_same(_decode_converted(d.codec, d.samples, conv), reference_frames(data))


@pytest.mark.parametrize("name", ["h264_bframes", "hevc_bframes"])
def test_each_gop_decodes_alone(name, request):
    """Random access: every group from a later keyframe decodes with the
    in-band parameter sets we insert, and gives exactly the reference frames."""
    data = request.getfixturevalue(name)
    d = demux(data)
    ref = dict(reference_frames(data))
    conv = stream_converter(d.codec, d.extradata)
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
    conv = stream_converter(codec, d.extradata)
    raw = tmp_path / f"stream.{codec}"
    raw.write_bytes(b"".join(conv.convert(s.data, is_sync=s.is_sync) for s in d.samples))
    with av.open(str(raw), format=codec) as c:
        got = [planes(f) for f in c.decode(video=0)]
    want = [a for _, a in reference_frames(data)]
    assert len(got) == len(want)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_parameter_sets_go_before_every_keyframe(h264_bframes):
    d = demux(h264_bframes)
    conv = stream_converter("h264", d.extradata)
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
        ][-len(list(iter_length_prefixed(s.data, 4))) :]


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
        second = encode(
            "h264",
            width=80,
            height=64,
            num_frames=24,
            gop=8,
            bframes=0,
            options={"profile": "baseline", "x264-params": "repeat-headers=1:cabac=0"},
            seed=7,
        )
    else:
        first = encode(
            "hevc", width=64, height=48, num_frames=24, gop=12, bframes=2, options={"x265-params": "log-level=error"}
        )
        second = encode(
            "hevc",
            width=80,
            height=64,
            num_frames=24,
            gop=8,
            bframes=0,
            options={"x265-params": "log-level=error:repeat-headers=1:sao=0"},
            seed=7,
        )
    data = _concat_mp4(first, second)
    d = demux(data)
    ref = reference_frames(data)
    assert len({a.size for _, a in ref}) == 2  # two frame sizes really decoded
    conv = stream_converter(codec, d.extradata)
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
    out = stream_converter("h264", avcc).convert(struct.pack(">I", len(idr)) + idr, is_sync=True)
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
    conv = stream_converter("h264", d.extradata)
    assert conv.parameter_sets is None
    for s in d.samples:
        assert conv.convert(s.data, is_sync=s.is_sync).endswith(s.data)


@pytest.fixture(scope="module")
def av1_clip():
    return encode("av1", width=64, height=48, num_frames=24, gop=8)


def test_av1_sequence_header_inserted_and_bit_exact(av1_clip):
    d = demux(av1_clip)
    assert d.extradata and d.extradata[0] == 0x81  # av1C
    conv = stream_converter("av1", d.extradata, temporal_delimiters=True)
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
    conv = stream_converter("vp9", d.extradata)
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
    data = encode(
        codec, pix_fmt=pix_fmt, num_frames=6, gop=6, colorspace=colorspace, color_range=color_range, options=options
    )
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


# ------------------------------------------------------------------ the codec contract


def _pict_types(path) -> dict[int, str]:
    with av.open(str(path)) as c:
        return {int(f.pts): PictureType(f.pict_type).name for f in c.decode(video=0)}


def test_h264_non_reference_test_on_real_bframes(tmp_path):
    """x264 with B-frames and b-pyramid off: every B-frame is a non-reference
    picture (nal_ref_idc == 0) and nothing else is, keyframes least of all."""
    path = media.make_video(
        tmp_path / "b.mp4", codec="h264", num_frames=30, gop=15, bframes=2, options={"x264-params": "b-pyramid=none"}
    )
    d = demux(path.read_bytes())
    types = _pict_types(path)
    assert d.extradata and d.extradata[0] == 1
    is_non_reference = get_codec("h264").non_reference_test(d.extradata)
    assert is_non_reference is not None
    disposable = [is_non_reference(s.data) for s in d.samples]
    b_frames = [types[s.pts] == "B" for s in d.samples]
    assert any(b_frames) and disposable == b_frames
    keys = [s for s in d.samples if s.is_sync]
    assert keys and not any(is_non_reference(memoryview(s.data)) for s in keys)
    # The same answer as the helpers the predicate wraps.
    nal_length_size = parse_avcc(d.extradata).nal_length_size
    assert disposable == [h264_is_disposable(s.data, nal_length_size) for s in d.samples]
    # And by codec name, as the reader asks.
    by_name = non_reference_test("h264", d.extradata)
    assert by_name is not None and [by_name(s.data) for s in d.samples] == disposable


def test_hevc_non_reference_test_needs_one_temporal_layer(request):
    d = demux(request.getfixturevalue("hevc_bframes"))
    hevc = get_codec("hevc")
    assert hvcc_num_temporal_layers(d.extradata) == 1
    is_non_reference = hevc.non_reference_test(d.extradata)
    assert is_non_reference is not None
    disposable = [is_non_reference(s.data) for s in d.samples]
    assert disposable == [hevc_is_disposable(s.data, 4) for s in d.samples]
    assert not any(k for k, s in zip(disposable, d.samples, strict=True) if s.is_sync)
    # Several temporal sub-layers: a _N picture may be referenced, so no test.
    layered = bytearray(d.extradata)
    layered[21] = (layered[21] & ~0x38) | (2 << 3)
    assert hevc.non_reference_test(bytes(layered)) is None


def test_codecs_without_a_safe_non_reference_test(av1_clip):
    assert get_codec("mpeg4") is None and get_codec("vp8") is None
    assert sorted(CODECS) == ["av1", "h264", "hevc", "vp9"]
    assert all(get_codec(name).name == name for name in CODECS)
    assert get_codec("av1").non_reference_test(demux(av1_clip).extradata) is None
    assert get_codec("vp9").non_reference_test(None) is None
    for name in ("h264", "hevc"):
        assert get_codec(name).non_reference_test(None) is None
        assert get_codec(name).non_reference_test(START_CODE + b"\x67\x64") is None  # Annex-B extradata
    assert non_reference_test("mpeg4", b"\x01") is None and non_reference_test("vp9", None) is None


def test_parse_config_per_codec(h264_bframes, hevc_bframes, av1_clip):
    assert get_codec("h264").parse_config(demux(h264_bframes).extradata) == parse_avcc(demux(h264_bframes).extradata)
    assert get_codec("hevc").parse_config(demux(hevc_bframes).extradata) == parse_hvcc(demux(hevc_bframes).extradata)
    av1 = get_codec("av1").parse_config(demux(av1_clip).extradata)
    assert av1.sequence_header and (av1.sequence_header[0] >> 3) & 0x0F == 1
    # vpcC version 1: profile 0, level 3.1, 10-bit 4:2:0, full range, BT.709.
    vpcc = bytes([1, 0, 0, 0, 0, 31, (10 << 4) | (1 << 1) | 1, 1, 1, 1, 0, 0])
    vp9 = get_codec("vp9").parse_config(vpcc)
    assert (vp9.profile, vp9.level) == (0, 31)
    assert vp9.colour == ColourInfo(
        matrix_coefficients=1, full_range=True, bit_depth=10, colour_primaries=1, transfer_characteristics=1
    )
    with pytest.raises(UnsupportedFormatError):
        get_codec("vp9").parse_config(b"\x00" + vpcc[1:])
    with pytest.raises(CorruptVideoError):
        get_codec("vp9").parse_config(vpcc[:8])


def test_unknown_codecs_pass_through():
    assert stream_converter("mpeg4", b"\x00\x00\x01\xb0").convert(b"abc", is_sync=True) == b"abc"
    assert stream_colour_info("mpeg4", None, b"abc") == ColourInfo()


def test_codecs_package_needs_neither_pyav_nor_torch():
    """NVDEC and the index path use it without PyAV; importing it loads neither."""
    import pathlib
    import subprocess
    import sys

    import videoloader.codecs

    for path in pathlib.Path(videoloader.codecs.__file__).parent.glob("*.py"):
        src = path.read_text()
        assert "import av" not in src and "import torch" not in src and "from av" not in src, path
    code = "import sys, videoloader.codecs; print(sorted(m for m in ('av', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
