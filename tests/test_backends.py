"""Backend registry, ``auto`` selection, platform info, the conformance suite
for every backend (CPU, NVDEC and VideoToolbox on fakes, and on real hardware
where there is some), and NVDEC-specific logic on a fake PyNvVideoCodec (PyAV
underneath, CPU tensors).

Real-hardware tests are marked ``needs_nvdec`` / ``needs_macos`` and skip here.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import json
import logging
import pickle
import subprocess
import sys
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

import videoloader
import videoloader.decoders
from videoloader._errors import BackendUnavailableError, VideoLoaderError
from videoloader.decoders import BackendSpec, _nvdec, _registry, _videotoolbox
from videoloader.decoders._base import OutputSpec, Packet, StreamConfig
from videoloader.decoders._platform import platform_info
from videoloader.decoders._pyav import PyAVDecoder
from videoloader.decoders._registry import (
    backend_availability,
    backend_names,
    get_backend_class,
    get_spec,
    register_backend,
    resolve_backend,
    select_backend,
)

from _hw_media import decoder_name, demux, encode
from backend_conformance import BackendConformance

ALL_UP = {"cpu": (True, "PyAV"), "nvdec": (True, "H100"), "videotoolbox": (True, "VT")}
CPU_ONLY = {"cpu": (True, "PyAV"), "nvdec": (False, "no CUDA GPU"), "videotoolbox": (False, "not macOS")}
MAC = {"cpu": (True, "PyAV"), "nvdec": (False, "no CUDA GPU"), "videotoolbox": (True, "VT")}


@pytest.fixture
def fake_probes(monkeypatch):
    """Install fake availability for the whole registry (cached path included)."""

    def install(avail, vt_codecs=("h264", "hevc")):
        real = _registry.probe_backend
        monkeypatch.setattr(_registry, "probe_backend", lambda name: avail[name] if name in avail else real(name))
        monkeypatch.setattr(
            _videotoolbox,
            "probe_codec",
            lambda codec: (codec in vt_codecs, "" if codec in vt_codecs else f"VT cannot decode {codec} on this Mac"),
        )
        backend_availability(refresh=True)

    yield install
    backend_availability(refresh=True)


# ------------------------------------------------------------------------------ selection


@pytest.mark.parametrize(
    "avail,codec,want",
    [
        (ALL_UP, "h264", "nvdec"),
        (ALL_UP, "av1", "nvdec"),
        (ALL_UP, "vp8", "cpu"),  # NVDEC (as registered) does not do VP8
        (CPU_ONLY, "h264", "cpu"),
        (MAC, "h264", "videotoolbox"),
        (MAC, "hevc", "videotoolbox"),
        (MAC, "av1", "cpu"),  # pre-M3 Mac: the probe says no
        (MAC, "vp9", "cpu"),  # VideoToolbox never does VP9
    ],
)
def test_auto_selection(fake_probes, avail, codec, want):
    fake_probes(avail)
    assert resolve_backend("auto", codec) == want
    assert resolve_backend("auto", codec, availability=avail) == want


def test_explicit_unavailable_backend_says_why_and_fix(fake_probes):
    fake_probes(CPU_ONLY)
    with pytest.raises(BackendUnavailableError) as e:
        resolve_backend("nvdec", "h264")
    msg = str(e.value)
    assert "no CUDA GPU" in msg and "pip install videoloader[nvdec]" in msg and "backend='auto'" in msg
    assert isinstance(e.value, (VideoLoaderError, RuntimeError))
    with pytest.raises(BackendUnavailableError, match="not macOS.*Fix: use macOS"):
        resolve_backend("videotoolbox", "h264")


def test_cpu_decodes_whatever_ffmpeg_decodes(fake_probes):
    fake_probes(ALL_UP)
    # The demux path hands the CPU backend codecs no index path knows.
    for codec in ("mpeg1video", "theora", "mpeg4", "av1"):
        assert resolve_backend("cpu", codec) == "cpu"
    assert resolve_backend("auto", "mpeg1video") == "cpu"
    with pytest.raises(BackendUnavailableError, match="no 'no_such_codec' decoder"):
        resolve_backend("cpu", "no_such_codec")


def test_explicit_backend_that_cannot_do_the_codec(fake_probes):
    fake_probes(MAC)
    with pytest.raises(BackendUnavailableError, match="cannot decode 'vp9'"):
        resolve_backend("videotoolbox", "vp9")
    assert resolve_backend("videotoolbox", "h264") == "videotoolbox"
    assert resolve_backend("cpu", "vp9") == "cpu"


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown decoder backend 'nvenc'"):
        resolve_backend("nvenc", "h264", availability=ALL_UP)
    with pytest.raises(ValueError, match="unknown decoder backend"):
        get_backend_class("nvenc")


def test_select_backend_returns_a_picklable_spec(fake_probes):
    fake_probes(MAC)
    config = StreamConfig("hevc", None, 64, 48, 30)
    spec = select_backend("auto", config)
    assert isinstance(spec, BackendSpec) and spec.name == "videotoolbox"
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert select_backend("cpu", config).name == "cpu"
    with pytest.raises(BackendUnavailableError, match="cannot decode 'vp9'"):
        select_backend("videotoolbox", StreamConfig("vp9", None, 64, 48, 30))
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        select_backend("nvdec", config)
    with pytest.raises(ValueError, match="unknown decoder backend 'nvenc'"):
        select_backend("nvenc", config)


def test_auto_says_why_it_fell_back_to_the_cpu(fake_probes, caplog):
    fake_probes(CPU_ONLY)
    with caplog.at_level(logging.INFO, logger="videoloader.decoders"):
        assert select_backend("auto", StreamConfig("h264", None, 64, 48, 30)).name == "cpu"
        assert select_backend("auto", StreamConfig("h264", None, 64, 48, 30)).name == "cpu"
    logged = [r.getMessage() for r in caplog.records if r.name == "videoloader.decoders"]
    assert len(logged) == 1, logged  # once per process, not per reader
    assert "with cpu" in logged[0] and "nvdec (no CUDA GPU)" in logged[0] and "videotoolbox (not macOS)" in logged[0]


def test_specs_create_backends_with_their_defaults(fake_nvc):
    config = StreamConfig("h264", None, 64, 48, 30)
    cpu = get_spec("cpu").create(config, OutputSpec(height=24), num_threads=3)
    assert type(cpu) is PyAVDecoder and cpu._thread_count == 3 and cpu.output == OutputSpec(height=24)
    assert cpu.pixel_format() is None
    nv = get_spec("nvdec").create(config, OutputSpec(height=24), num_threads=3)
    assert isinstance(nv, _nvdec.NvdecDecoder) and nv.output == OutputSpec(height=24, device="cuda")
    nv.close()
    nv = get_spec("nvdec").create(config, OutputSpec(device="cuda:0"))
    assert nv.output.device == "cuda:0"
    nv.close()


@pytest.fixture
def registry_snapshot():
    """Restore the registry after a test registers backends."""
    saved = dict(_registry._REGISTRY)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(saved)
    backend_availability(refresh=True)


class ThirdPartyDecoder(PyAVDecoder):
    """What a third-party backend looks like: a DecoderBackend subclass in its own module."""

    name = "thirdparty"


def thirdparty_probe() -> tuple[bool, str]:
    return True, "always here"


THIRDPARTY = BackendSpec(
    name="thirdparty",
    factory=f"{__name__}:ThirdPartyDecoder",
    probe=f"{__name__}:thirdparty_probe",
    codecs=frozenset({"h264"}),
    install_hint="pip install thirdparty",
    priority=50,
)


def test_register_backend(registry_snapshot, fake_probes):
    fake_probes(CPU_ONLY)
    assert videoloader.register_backend is register_backend
    register_backend(THIRDPARTY)
    assert "thirdparty" in backend_names() and backend_availability()["thirdparty"] == (True, "always here")
    h264, vp9 = StreamConfig("h264", None, 64, 48, 30), StreamConfig("vp9", None, 64, 48, 30)
    assert select_backend("auto", h264) is THIRDPARTY  # highest priority that decodes h264
    assert select_backend("auto", vp9).name == "cpu"
    assert isinstance(THIRDPARTY.create(h264, OutputSpec()), ThirdPartyDecoder)
    with pytest.raises(ValueError, match="already registered"):
        register_backend(THIRDPARTY)
    lower = BackendSpec("thirdparty", THIRDPARTY.factory, frozenset({"h264"}), "x", priority=-1)
    register_backend(lower, replace=True)
    assert select_backend("auto", h264).name == "cpu"
    assert backend_availability()["thirdparty"] == (True, f"{THIRDPARTY.factory} imports")  # no probe: imports
    with pytest.raises(TypeError):
        register_backend("thirdparty")  # type: ignore[arg-type]


def test_backend_spec_validation_and_broken_backends(registry_snapshot):
    with pytest.raises(ValueError, match="auto"):
        BackendSpec("auto", "m:C", frozenset(), "")
    with pytest.raises(ValueError, match="factory"):
        BackendSpec("x", "no_colon", frozenset(), "")
    assert BackendSpec("x", "m:C", {"h264"}, "").codecs == frozenset({"h264"})  # type: ignore[arg-type]
    missing = BackendSpec("missing", "no_such_module_xyz:Dec", frozenset({"h264"}), "pip install xyz", priority=99)
    register_backend(missing)
    ok, why = backend_availability()["missing"]
    assert not ok and "no_such_module_xyz" in why
    assert resolve_backend("auto", "h264") != "missing"
    with pytest.raises(BackendUnavailableError, match="pip install xyz"):
        resolve_backend("missing", "h264")
    with pytest.raises(BackendUnavailableError, match="pip install xyz"):
        get_backend_class("missing")
    not_a_backend = BackendSpec("bad", "json:dumps", frozenset({"h264"}), "")
    register_backend(not_a_backend)
    with pytest.raises(TypeError, match="not a DecoderBackend subclass"):
        not_a_backend.backend_class()
    assert backend_availability()["bad"][0] is False


def test_importing_the_registry_imports_no_decoder_library():
    code = (
        "import sys, videoloader.decoders as d; d.backend_names(); "
        "print(sorted(m for m in ('torch', 'av', 'PyNvVideoCodec', 'videoloader.decoders._pyav', "
        "'videoloader.decoders._nvdec', 'videoloader.decoders._videotoolbox') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_backend_at_all(fake_probes):
    fake_probes({"cpu": (False, "PyAV missing"), "nvdec": (False, "x"), "videotoolbox": (False, "y")})
    with pytest.raises(BackendUnavailableError, match="PyAV missing.*pip install av"):
        resolve_backend("auto", "h264")


def test_availability_is_probed_once(monkeypatch):
    calls = []

    def probe(name):
        calls.append(name)
        return CPU_ONLY[name]

    monkeypatch.setattr(_registry, "probe_backend", probe)
    backend_availability(refresh=True)
    for _ in range(3):
        assert backend_availability() == CPU_ONLY
    assert sorted(calls) == sorted(backend_names())
    backend_availability(refresh=True)


def test_real_probes_on_this_machine():
    avail = backend_availability(refresh=True)
    assert set(avail) == {"cpu", "nvdec", "videotoolbox"}
    assert avail["cpu"][0] is True
    for ok, why in avail.values():
        assert isinstance(ok, bool) and isinstance(why, str) and why
    if sys.platform != "darwin":
        assert avail["videotoolbox"] == (False, avail["videotoolbox"][1])


def test_backend_classes_import_lazily():
    assert get_backend_class("cpu") is PyAVDecoder
    nv = get_backend_class("nvdec")
    assert nv.name == "nvdec" and nv.__name__ == "NvdecDecoder"
    vt = get_backend_class("videotoolbox")
    assert vt.name == "videotoolbox" and issubclass(vt, PyAVDecoder)
    for name in backend_names():
        spec = get_spec(name)
        assert spec.name == name == spec.backend_class().name and spec.install_hint
        assert spec.codecs or spec.codec_probe  # an empty list needs a probe to decide
        assert ":" in spec.factory and ":" in spec.probe


def test_modules_do_not_import_hardware_libraries():
    assert "PyNvVideoCodec" not in sys.modules or sys.modules["PyNvVideoCodec"] is not None
    import videoloader.codecs._nal as annexb

    src = open(annexb.__file__).read()
    assert "import av" not in src and "import torch" not in src


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the non-mac refusal")
def test_videotoolbox_refuses_off_mac():
    cls = get_backend_class("videotoolbox")
    with pytest.raises(BackendUnavailableError, match="macOS"):
        cls(StreamConfig("h264", None, 64, 48, 30))


def test_nvdec_without_hardware_raises_clearly():
    if backend_availability()["nvdec"][0]:
        pytest.skip("NVDEC is available here")
    with pytest.raises(BackendUnavailableError) as e:
        _nvdec.NvdecDecoder(StreamConfig("h264", None, 64, 48, 30))
    assert "PyNvVideoCodec" in str(e.value) or "CUDA" in str(e.value)
    with pytest.raises(BackendUnavailableError, match="does not decode 'mpeg4'"):
        _nvdec.NvdecDecoder(StreamConfig("mpeg4", None, 64, 48, 30))


def test_platform_info_keys():
    info = platform_info()
    for key in (
        "platform",
        "device",
        "gpu_name",
        "cuda_version",
        "driver_version",
        "torch_version",
        "pyav_version",
        "ffmpeg_versions",
        "backends",
        "default_backend",
    ):
        assert key in info
    assert info["platform"] in ("cuda", "mac", "cpu")
    assert set(info["backends"]) == set(backend_names())
    assert info["ffmpeg_versions"]["libavcodec"].count(".") == 2
    assert info["pyav_version"] == av.__version__
    json.dumps(info)  # serialisable for benchmark JSON
    assert videoloader.decoders.platform_info is platform_info


# ----------------------------------------------------- NVDEC logic on a fake PyNvVideoCodec


class _FakeFrame:
    """Mimics PyNvVideoCodec's DecodedFrame: DLPack export + getPTS()."""

    def __init__(self, surface: np.ndarray, pts: int, fmt: str) -> None:
        self._t = torch.from_numpy(surface)
        self._pts = pts
        self.format = fmt

    def getPTS(self) -> int:
        return self._pts

    def __dlpack__(self, *args, **kwargs):
        return self._t.__dlpack__()

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


class _FakeDecoder:
    """Decodes the Annex-B we send with PyAV and NO extradata, returns NV12/P016 surfaces."""

    def __init__(self, codec: str, log: list, lose_timestamps: bool = False) -> None:
        self.codec = codec
        self.log = log
        self.lose_timestamps = lose_timestamps
        self._ctx = None
        self.surfaces: list[np.ndarray] = []

    def _context(self):
        if self._ctx is None:
            self._ctx = av.CodecContext.create(decoder_name(self.codec), "r")
        return self._ctx

    def Decode(self, pkt):
        ctx = self._context()
        if pkt.bsl == 0:
            frames = ctx.decode(None)
            self._ctx = None  # NVDEC accepts new data after end of stream
        else:
            p = av.Packet(ctypes.string_at(pkt.bsl_data, pkt.bsl))
            p.pts = pkt.pts
            frames = ctx.decode(p)
        out = []
        for f in frames:
            h, w = f.height, f.width
            if f.format.name == "yuv420p10le":
                g = f.reformat(format="p010le")
                planes = [
                    np.frombuffer(bytes(pl), np.uint16).reshape(-1, pl.line_size // 2)[:rows, :w]
                    for pl, rows in zip(g.planes, (h, (h + 1) // 2), strict=True)
                ]
                surf, fmt = np.concatenate(planes).view(np.int16), "P016"
            else:
                g = f.reformat(format="nv12")
                planes = [
                    np.frombuffer(bytes(pl), np.uint8).reshape(-1, pl.line_size)[:rows, :w]
                    for pl, rows in zip(g.planes, (h, (h + 1) // 2), strict=True)
                ]
                surf, fmt = np.concatenate(planes), "NV12"
            # The real decoder reuses its buffers: hand out a view of a buffer we overwrite later.
            self.surfaces.append(surf)
            out.append(_FakeFrame(surf, 0 if self.lose_timestamps else int(f.pts), fmt))
        return out

    def setReconfigParams(self, width, height):
        self.log.append(("reconfigure", width, height))


@pytest.fixture
def fake_nvc(monkeypatch):
    log: list = []
    state = SimpleNamespace(lose_timestamps=False, decoders=[])

    def create_decoder(*, gpuid, codec, usedevicememory, maxwidth, maxheight, outputColorType, **kw):
        log.append(("create", codec, maxwidth, maxheight))
        dec = _FakeDecoder(codec, log, state.lose_timestamps)
        state.decoders.append(dec)
        return dec

    nvc = SimpleNamespace(
        PacketData=lambda: SimpleNamespace(bsl_data=0, bsl=0, pts=0),
        CreateDecoder=create_decoder,
        cudaVideoCodec=SimpleNamespace(H264="h264", HEVC="hevc", AV1="av1", VP9="vp9"),
        OutputColorType=SimpleNamespace(NATIVE=0),
    )
    monkeypatch.setattr(_nvdec, "import_pynvvideocodec", lambda: nvc)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    def create(nvc_, gpu_id, codec, width, height):
        dec = nvc_.CreateDecoder(
            gpuid=gpu_id,
            codec=codec,
            usedevicememory=True,
            maxwidth=max(width, 1920),
            maxheight=max(height, 1088),
            outputColorType=0,
        )
        return _nvdec._PooledDecoder(dec, max(width, 1920), max(height, 1088), width, height, None)

    monkeypatch.setattr(_nvdec, "_create_decoder", create)
    _nvdec.clear_decoder_pool()
    state.log = log
    yield state
    _nvdec.clear_decoder_pool()


# ------------------------------------------------------------------ conformance suite


class TestCpuBackend(BackendConformance):
    codecs = ("h264", "hevc", "av1", "vp9")

    def make_backend(self, config, output):
        return get_spec("cpu").create(config, output, num_threads=2)


class TestFakeNvdecBackend(BackendConformance):
    """NVDEC's logic (Annex-B, pts mapping, surfaces, its colour conversion) on the fake library."""

    codecs = ("h264", "hevc", "av1", "vp9")
    max_mean_diff = 1.5
    max_abs_diff = 3

    @pytest.fixture(autouse=True)
    def _fake(self, fake_nvc):
        yield

    def make_backend(self, config, output):
        return get_spec("nvdec").create(config, output)


@pytest.fixture
def fake_videotoolbox(monkeypatch):
    """VideoToolbox's logic on FFmpeg's software decoder: "macOS", no hwaccel, "accelerated"."""
    monkeypatch.setattr(_videotoolbox, "_on_macos", lambda: True)
    monkeypatch.setattr(_videotoolbox, "_hwaccel", lambda: None)
    monkeypatch.setattr(_videotoolbox, "_is_accelerated", lambda ctx: ctx is not None)


class TestFakeVideoToolboxBackend(BackendConformance):
    codecs = ("h264", "hevc")

    @pytest.fixture(autouse=True)
    def _fake(self, fake_videotoolbox):
        yield

    def make_backend(self, config, output):
        return get_spec("videotoolbox").create(config, output, num_threads=4)


def test_fake_videotoolbox_refuses_a_software_decode(fake_videotoolbox, monkeypatch):
    monkeypatch.setattr(_videotoolbox, "_is_accelerated", lambda ctx: False)
    config, packets = _stream(encode("h264", width=64, height=48, num_frames=4, gop=4))
    vt = get_spec("videotoolbox").create(config, OutputSpec(), num_threads=4)
    assert vt._thread_count == 1  # the media engine decodes; threads are not ours to set
    with pytest.raises(BackendUnavailableError, match="fell back to software"):
        vt.decode_group(packets, [packets[0].pts])
    vt.close()


@pytest.mark.needs_nvdec
class TestRealNvdecBackend(BackendConformance):
    codecs = ("h264", "hevc", "av1", "vp9")
    expected_device = "cuda"
    max_mean_diff = 2.0
    max_abs_diff = 24

    def make_backend(self, config, output):
        return get_spec("nvdec").create(config, output)


@pytest.mark.needs_macos
class TestRealVideoToolboxBackend(BackendConformance):
    codecs = ("h264", "hevc")
    max_mean_diff = 1.0
    max_abs_diff = 8

    def make_backend(self, config, output):
        return get_spec("videotoolbox").create(config, output)


# ------------------------------------------------------------------- NVDEC specifics


def _stream(data):
    d = demux(data)
    timescale = Fraction(1) / d.time_base
    assert timescale.denominator == 1
    config = StreamConfig(d.codec, d.extradata, d.width, d.height, int(timescale))
    packets = [Packet(s.data, s.pts, s.dts, 1, s.is_sync) for s in d.samples]
    return config, packets


def _groups(packets):
    keys = [i for i, p in enumerate(packets) if p.is_sync] + [len(packets)]
    return [packets[a:b] for a, b in itertools.pairwise(keys)]


@pytest.mark.parametrize(
    "codec,kw",
    [
        ("h264", dict(colorspace=1, color_range=1)),
        (
            "hevc",
            dict(
                pix_fmt="yuv420p10le",
                colorspace=9,
                color_range=1,
                smooth=True,
                options={"x265-params": "log-level=error:open-gop=0"},
            ),
        ),
        ("av1", dict(colorspace=1, color_range=2)),
        ("vp9", dict(colorspace=5, color_range=1)),
    ],
)
def test_nvdec_logic_matches_cpu_backend(fake_nvc, codec, kw):
    data = encode(codec, width=64, height=48, num_frames=30, gop=10, **kw)
    config, packets = _stream(data)
    if kw.get("pix_fmt") == "yuv420p10le":
        config = dataclasses.replace(config, bit_depth=10)
    nv = _nvdec.NvdecDecoder(config, output=OutputSpec(device="cuda"))
    cpu = PyAVDecoder(config)
    # Random access: the last two frames of each group, groups in a shuffled order.
    for group in reversed(_groups(packets)):
        wanted = sorted(p.pts for p in group)[-2:]
        got, want = nv.decode_group(group, wanted), cpu.decode_group(group, wanted)
        assert sorted(got) == sorted(want) == wanted
        for pts in wanted:
            assert got[pts].dtype == torch.uint8 and got[pts].shape == want[pts].shape
            d = (got[pts].int() - want[pts].int()).abs()
            # 10-bit: the CPU path dithers to 8 bits (see tests/test_colour.py).
            assert d.float().mean() <= (1.5 if codec != "hevc" else 2.5), (codec, pts)
            assert d.max() <= (3 if codec != "hevc" else 8), (codec, pts, d.max())
    nv.close()
    nv.close()  # idempotent
    # Scaled output, on the backend's converter.
    nv2 = _nvdec.NvdecDecoder(config, output=OutputSpec(height=24, width=32, device="cuda"))
    g = _groups(packets)[0]
    out = nv2.decode_group(g, [g[0].pts])
    assert tuple(out[g[0].pts].shape) == (3, 24, 32)
    nv2.close()


def test_nvdec_decoders_are_pooled_and_reconfigured(fake_nvc):
    small = _stream(encode("h264", width=64, height=48, num_frames=12, gop=12))
    other = _stream(encode("h264", width=80, height=64, num_frames=12, gop=12))
    for config, packets in (small, small, other):
        nv = _nvdec.NvdecDecoder(config)
        assert len(nv.decode_group(packets, [packets[0].pts])) == 1
        nv.close()
    creates = [e for e in fake_nvc.log if e[0] == "create"]
    assert len(creates) == 1, fake_nvc.log  # one hardware decoder served three readers
    assert ("reconfigure", 80, 64) in fake_nvc.log
    # Two readers at once get two decoders.
    a, b = _nvdec.NvdecDecoder(small[0]), _nvdec.NvdecDecoder(small[0])
    a.decode_group(small[1], []), b.decode_group(small[1], [])
    assert len([e for e in fake_nvc.log if e[0] == "create"]) == 2
    a.close(), b.close()


def test_nvdec_frames_held_across_decode_calls_are_copied(fake_nvc):
    config, packets = _stream(encode("h264", width=64, height=48, num_frames=12, gop=12, bframes=0))
    nv = _nvdec.NvdecDecoder(config)
    held = []
    for p in packets:
        held += nv.send(p)
    held += nv.flush()
    assert len(held) == 12
    # Scribble over every buffer the fake decoder handed out (what buffer reuse does).
    first = nv.convert(held[0]).clone()
    for s in fake_nvc.decoders[0].surfaces:
        s[...] = 0
    assert all(f.handle.owned for f in held[:-1])
    assert torch.equal(nv.convert(held[0]), first)
    nv.close()


def test_nvdec_pts_fallback_when_parser_loses_timestamps(fake_nvc):
    fake_nvc.lose_timestamps = True
    config, packets = _stream(encode("h264", width=64, height=48, num_frames=12, gop=12, bframes=2))
    nv = _nvdec.NvdecDecoder(config)
    cpu = PyAVDecoder(config)
    wanted = sorted(p.pts for p in packets)[3:6]
    with pytest.warns(RuntimeWarning, match="display order"):
        got = nv.decode_group(packets, wanted)
    want = cpu.decode_group(packets, wanted)
    assert sorted(got) == wanted
    for pts in wanted:
        assert (got[pts].int() - want[pts].int()).abs().max() <= 3
    nv.close()


# ------------------------------------------------------------------------- real hardware


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.needs_nvdec
@pytest.mark.parametrize(
    "codec,kw",
    [
        ("h264", {}),
        ("hevc", dict(pix_fmt="yuv420p10le", options={"x265-params": "log-level=error"})),
        ("av1", {}),
    ],
)
def test_real_nvdec_matches_cpu(codec, kw):
    _nvdec.clear_decoder_pool()
    data = encode(codec, width=160, height=96, num_frames=30, gop=10, **kw)
    config, packets = _stream(data)
    if kw.get("pix_fmt") == "yuv420p10le":
        config = dataclasses.replace(config, bit_depth=10)
    nv = get_backend_class("nvdec")(config, output=OutputSpec(device="cuda"))
    cpu = PyAVDecoder(config)
    for group in _groups(packets):
        wanted = [p.pts for p in group]
        got, want = nv.decode_group(group, wanted), cpu.decode_group(group, wanted)
        key_pts = group[0].pts
        assert sorted(got) == sorted(p for p in want if p >= key_pts or p in got)
        for pts, t in got.items():
            assert t.is_cuda
            assert _psnr(t.cpu(), want[pts]) >= 40.0, (codec, pts)
    nv.close()


@pytest.mark.needs_macos
def test_real_videotoolbox_matches_cpu():
    data = encode("h264", width=160, height=96, num_frames=30, gop=10)
    config, packets = _stream(data)
    vt = get_backend_class("videotoolbox")(config)
    cpu = PyAVDecoder(config)
    for group in _groups(packets):
        wanted = [p.pts for p in group]
        got, want = vt.decode_group(group, wanted), cpu.decode_group(group, wanted)
        assert sorted(got) == sorted(want)
        for pts in wanted:
            assert _psnr(got[pts], want[pts]) >= 40.0
    vt.close()
