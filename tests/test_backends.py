"""Backend registry, ``auto`` selection, platform info, the conformance suite
for every backend (CPU, NVDEC and VideoToolbox on fakes, and on real hardware
where there is some), and NVDEC-specific logic on a fake PyNvVideoCodec (PyAV
underneath, CPU tensors).

Real-hardware tests are marked ``needs_nvdec`` / ``needs_macos`` and skip here.
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
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
GPU_BOX = {"cpu": (True, "PyAV"), "nvdec": (True, "H100"), "videotoolbox": (False, "not macOS")}


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
        (MAC, "vp9", "cpu"),  # this Mac's probe says no VP9
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
    """Mimics PyNvVideoCodec's DecodedFrame: DLPack export + getPTS().

    ``byte_strides`` exports a 16-bit surface the way PyNvVideoCodec < 2.2.4
    did: row and column strides in bytes, read by the consumer as elements.
    """

    def __init__(self, surface: np.ndarray, pts: int, fmt: str, byte_strides: bool = False) -> None:
        t = torch.from_numpy(surface)
        if byte_strides:
            rows, cols = t.shape
            item = t.element_size()
            backing = torch.zeros(rows * cols * item * item, dtype=t.dtype)
            t = backing.as_strided((rows, cols), (cols * item, item))
        self._t = t
        self._pts = pts
        self.format = fmt

    def getPTS(self) -> int:
        return self._pts

    def __dlpack__(self, *args, **kwargs):
        return self._t.__dlpack__()

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


class _FakeStream:
    """A CUDA stream stand-in that records who waited for whom."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def wait_stream(self, other: _FakeStream) -> None:
        self.log.append(("wait", self.name, other.name))

    def synchronize(self) -> None:
        self.log.append(("synchronize", self.name))


class _FakeDecoder:
    """Decodes the Annex-B we send with PyAV and NO extradata, returns NV12/P016 surfaces.

    Like PyNvVideoCodec 2.2.4: the surface exports ``floor(H * 1.5)`` rows
    (one chroma row short for odd heights), and ``setReconfigParams(w, h)``
    sets a resize target every later frame is scaled to.
    """

    def __init__(self, codec: str, log: list, state) -> None:
        self.codec = codec
        self.log = log
        self.state = state
        self._ctx = None
        self.surfaces: list[np.ndarray] = []
        self.resize: tuple[int, int] | None = None

    def _context(self):
        if self._ctx is None:
            self._ctx = av.CodecContext.create(decoder_name(self.codec), "r")
        return self._ctx

    def Decode(self, pkt):
        self.log.append(("decode", pkt.bsl))
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
            if self.resize is not None:
                f = f.reformat(width=self.resize[0], height=self.resize[1])
            h, w = f.height, f.width
            # The decoder's own samples, laid out as NVDEC does: luma rows, then
            # interleaved Cb/Cr rows (P016: 10 bits at the top of 16-bit words).
            ten = f.format.name == "yuv420p10le"
            dtype = np.uint16 if ten else np.uint8
            y, u, v = (
                np.frombuffer(bytes(pl), dtype).reshape(-1, pl.line_size // np.dtype(dtype).itemsize)[:rows, :cols]
                for pl, rows, cols in zip(
                    f.planes, (h, (h + 1) // 2, (h + 1) // 2), (w, (w + 1) // 2, (w + 1) // 2), strict=True
                )
            )
            uv = np.stack([u, v], axis=-1).reshape(u.shape[0], -1)[:, :w]
            surf = np.concatenate([y, uv])
            if ten:
                surf, fmt = (surf << 6).view(np.int16), "P016"
            else:
                fmt = "NV12"
            surf = surf[: h * 3 // 2]  # the export's row count: floor(H * 1.5)
            # The real decoder reuses its buffers: hand out a view of a buffer we overwrite later.
            self.surfaces.append(surf)
            pts = 0 if self.state.lose_timestamps else int(f.pts)
            out.append(_FakeFrame(surf, pts, fmt, byte_strides=self.state.byte_strides and fmt == "P016"))
        return out

    def setReconfigParams(self, width, height):
        self.log.append(("reconfigure", width, height))
        if width or height:
            self.resize = (width, height)
        return 0


# GetDecoderCaps answers (2.2.4's keys). The fake accepts the tests' small clips;
# tests that check limits set an H100's minimums (see test_nvdec_refuses_what_caps_refuse).
PERMISSIVE_CAPS = dict(supported=1, width_min=16, height_min=16, width_max=8192, height_max=8192, mb_num_max=0)


@pytest.fixture
def fake_nvc(monkeypatch):
    log: list = []
    state = SimpleNamespace(
        lose_timestamps=False, byte_strides=False, decoders=[], caps={}, caps_calls=[], version="2.2.4", log=log
    )

    def create_decoder(*, gpuid, codec, usedevicememory, maxwidth, maxheight, outputColorType, **kw):
        log.append(("create", codec, maxwidth, maxheight))
        dec = _FakeDecoder(codec, log, state)
        state.decoders.append(dec)
        return dec

    def get_decoder_caps(gpuid=0, codec="h264", chromaformat="420", bitdepth=8):
        state.caps_calls.append((gpuid, codec, chromaformat, bitdepth))
        caps = dict(PERMISSIVE_CAPS, **state.caps.get((codec, chromaformat, bitdepth), {}))
        return dict(caps, codec_id=0, chromaformat_id=0, bitdepth=bitdepth, num_decoder_engines=7)

    nvc = SimpleNamespace(
        PacketData=lambda: SimpleNamespace(bsl_data=0, bsl=0, pts=0),
        CreateDecoder=create_decoder,
        GetDecoderCaps=get_decoder_caps,
        cudaVideoCodec=SimpleNamespace(H264="h264", HEVC="hevc", AV1="av1", VP9="vp9"),
        cudaVideoChromaFormat=SimpleNamespace(**{"Monochrome": "400", "420": "420", "422": "422", "444": "444"}),
        OutputColorType=SimpleNamespace(NATIVE=0),
    )
    monkeypatch.setattr(_nvdec, "import_pynvvideocodec", lambda: nvc)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    torch_stream = _FakeStream("torch", log)
    monkeypatch.setattr(_nvdec, "_current_stream", lambda device: torch_stream)

    def create(nvc_, gpu_id, codec, width, height):
        dec = nvc_.CreateDecoder(
            gpuid=gpu_id,
            codec=codec,
            usedevicememory=True,
            maxwidth=max(width, 1920),
            maxheight=max(height, 1088),
            outputColorType=0,
        )
        return _nvdec._PooledDecoder(dec, max(width, 1920), max(height, 1088), _FakeStream("decoder", log))

    monkeypatch.setattr(_nvdec, "_create_decoder", create)
    _nvdec.clear_decoder_pool()
    _nvdec.decoder_caps.cache_clear()
    yield state
    _nvdec.clear_decoder_pool()
    _nvdec.decoder_caps.cache_clear()


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
    codecs = ("h264", "hevc", "vp9")

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
    clip_size = (320, 240)  # NVDEC's minimum is about 144x144 (HEVC), 128x128 (AV1)
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


# Decode-time transforms on NVDEC: the crop cuts the surface's planes on the device
# and the resize runs in the same conversion. Tolerances per stream: the
# conformance suite's for 8-bit, the 10-bit ones of the test above (the CPU path
# dithers 10-bit to 8).
_TRANSFORM_STREAMS = {
    "h264": (dict(colorspace=1, color_range=1), (1.5, 3)),
    "hevc10": (
        dict(
            pix_fmt="yuv420p10le",
            colorspace=9,
            color_range=1,
            smooth=True,
            options={"x265-params": "log-level=error:open-gop=0"},
        ),
        (2.5, 8),
    ),
}


def _transform_stream(name):
    kw, tolerance = _TRANSFORM_STREAMS[name]
    config, packets = _stream(encode(name[:4], width=96, height=64, num_frames=6, gop=6, **kw))
    if name == "hevc10":
        config = dataclasses.replace(config, bit_depth=10)
    return config, packets, tolerance


def _decode_both(config, packets, spec):
    nv = _nvdec.NvdecDecoder(config, output=dataclasses.replace(spec, device="cuda"))
    cpu = PyAVDecoder(config, output=spec)
    wanted = [p.pts for p in packets][:3]
    try:
        got, want = nv.decode_group(packets, wanted), cpu.decode_group(packets, wanted)
    finally:
        nv.close()
        cpu.close()
    assert sorted(got) == sorted(want) == sorted(wanted)
    return got, want


def _assert_close(got, want, tolerance, what):
    mean, largest = tolerance
    for pts in want:
        assert got[pts].shape == want[pts].shape, (what, pts, tuple(got[pts].shape), tuple(want[pts].shape))
        assert got[pts].dtype == torch.uint8 and got[pts].is_contiguous()
        d = (got[pts].int() - want[pts].int()).abs()
        assert d.float().mean() <= mean and d.max() <= largest, (what, pts, d.float().mean().item(), d.max().item())


@pytest.mark.parametrize("stream", sorted(_TRANSFORM_STREAMS))
@pytest.mark.parametrize(
    "crop,size,post_crop",
    [
        ((8, 10, 40, 60), None, None),  # even window: the planes cut as they are
        ((7, 9, 41, 61), None, None),  # every edge odd: grown to the chroma grid, cut exactly from RGB
        ((0, 3, 64, 92), None, None),  # odd left edge only, the full height
        ((7, 9, 41, 61), (20, 30), None),  # odd window then resize (the CPU path cuts it from RGB too)
        ((1, 2, 60, 90), (50, 70), (3, 5, 30, 40)),  # odd top, resize, then a crop of the result
    ],
)
def test_nvdec_crop_matches_cpu_backend(fake_nvc, stream, crop, size, post_crop):
    config, packets, tolerance = _transform_stream(stream)
    height, width = size or (None, None)
    spec = OutputSpec(height=height, width=width, crop=crop, post_crop=post_crop, full_chroma=True)
    got, want = _decode_both(config, packets, spec)
    _assert_close(got, want, tolerance, spec)


@pytest.mark.parametrize("stream", sorted(_TRANSFORM_STREAMS))
@pytest.mark.parametrize(
    "crop,size,post_crop",
    [
        (None, (32, 48), None),
        ((8, 10, 40, 60), (20, 30), None),
        (None, (40, 56), (3, 5, 30, 40)),
        ((8, 10, 40, 60), (None, 45), None),  # one side given: the window's aspect ratio kept
    ],
)
def test_nvdec_resize_matches_resizing_the_cpu_frame(fake_nvc, stream, crop, size, post_crop):
    """NVDEC converts the (cropped) planes to RGB and resizes the RGB frame; so do
    torchvision and torchcodec's transforms. swscale instead scales the Y and
    chroma planes separately before converting, which differs at sharp colour
    edges of the textured 8-bit clip (up to 56 levels on single pixels, under 0.9
    on average; 2 levels on the smooth 10-bit one), so against the CPU backend
    only the mean is held to the tolerance; against
    the CPU backend's full-size frame cropped and resized in torch, every pixel is."""
    from videoloader.transforms import Geometry, apply_geometry

    config, packets, tolerance = _transform_stream(stream)
    spec = OutputSpec(height=size[0], width=size[1], crop=crop, post_crop=post_crop, full_chroma=True)
    got, want = _decode_both(config, packets, spec)
    for pts in want:
        d = (got[pts].int() - want[pts].int()).abs()
        assert got[pts].shape == want[pts].shape and d.float().mean() <= tolerance[0], (spec, pts)
    h, w = size
    if h is None or w is None:  # the other side from the window's aspect ratio, as the backends compute it
        src_h, src_w = (crop[2], crop[3]) if crop is not None else (config.height, config.width)
        h, w = h or round(src_h * w / src_w), w or round(src_w * h / src_h)
    geometry = Geometry(pre_crop=crop, size=(h, w), post_crop=post_crop)
    full = PyAVDecoder(config, output=OutputSpec(full_chroma=True)).decode_group(packets, list(want))
    _assert_close(got, {pts: apply_geometry(f, geometry) for pts, f in full.items()}, tolerance, spec)


def test_nvdec_crops_on_its_converter(fake_nvc):
    """The reader hands NVDEC the crop instead of decoding full frames and cropping in torch."""
    assert get_backend_class("nvdec").supports_crop
    config, packets, _ = _transform_stream("h264")
    nv = _nvdec.NvdecDecoder(config, output=OutputSpec(crop=(0, 0, 65, 96), device="cuda"))
    with pytest.raises(ValueError, match="does not fit"):
        nv.decode_group(packets, [packets[0].pts])
    # The failed group left the decoder usable.
    nv.output = OutputSpec(crop=(0, 0, 64, 96), device="cuda")
    assert tuple(nv.decode_group(packets, [packets[0].pts])[packets[0].pts].shape) == (3, 64, 96)
    nv.close()


def test_nvdec_decoders_are_pooled_without_a_resize_target(fake_nvc):
    small = _stream(encode("h264", width=64, height=48, num_frames=12, gop=12))
    other = _stream(encode("h264", width=80, height=64, num_frames=12, gop=12))
    # The index's sample-entry size can differ from the coded display size:
    # a reused decoder must still output what a fresh one does.
    mislabelled = (dataclasses.replace(other[0], width=96, height=72), other[1])
    shapes = []
    for config, packets in (small, small, other, mislabelled):
        nv = _nvdec.NvdecDecoder(config)
        got = nv.decode_group(packets, [packets[0].pts])
        shapes.append(tuple(got[packets[0].pts].shape))
        nv.close()
    creates = [e for e in fake_nvc.log if e[0] == "create"]
    assert len(creates) == 1, fake_nvc.log  # one hardware decoder served four readers
    assert not [e for e in fake_nvc.log if e[0] == "reconfigure"]  # never a resize target
    assert shapes == [(3, 48, 64), (3, 48, 64), (3, 64, 80), (3, 64, 80)]
    fresh = _nvdec.NvdecDecoder(mislabelled[0], reuse_decoders=False)
    assert tuple(fresh.decode_group(other[1], [other[1][0].pts])[other[1][0].pts].shape) == (3, 64, 80)
    fresh.close()
    # Two readers at once get two decoders.
    a, b = _nvdec.NvdecDecoder(small[0]), _nvdec.NvdecDecoder(small[0])
    a.decode_group(small[1], []), b.decode_group(small[1], [])
    assert len([e for e in fake_nvc.log if e[0] == "create"]) == 3
    a.close(), b.close()


def test_nvdec_decoder_stream_waits_for_torch_before_every_decode(fake_nvc):
    config, packets = _stream(encode("h264", width=64, height=48, num_frames=6, gop=6))
    nv = _nvdec.NvdecDecoder(config)
    nv.decode_group(packets, [p.pts for p in packets])
    nv.close()
    log = [e for e in fake_nvc.log if e[0] in ("wait", "decode")]
    decodes = [i for i, e in enumerate(log) if e[0] == "decode"]
    assert len(decodes) == len(packets) + 1  # every packet, then the drain
    for i in decodes:  # the decoder's stream waited for torch's right before each Decode
        assert log[i - 1] == ("wait", "decoder", "torch"), log
    # ... and torch's stream waited for the decoder's before converting.
    assert ("wait", "torch", "decoder") in log


def test_nvdec_without_its_own_stream_synchronises_torch_before_decode(fake_nvc, monkeypatch):
    config, packets = _stream(encode("h264", width=64, height=48, num_frames=4, gop=4))
    nv = _nvdec.NvdecDecoder(config)
    entry = nv._decoder()
    entry.stream = None  # the library's own stream: nothing of ours to order
    nv.decode_group(packets, [packets[0].pts])
    nv.close()
    log = [e for e in fake_nvc.log if e[0] in ("synchronize", "decode")]
    assert all(log[i - 1] == ("synchronize", "torch") for i, e in enumerate(log) if e[0] == "decode")


def test_nvdec_refuses_wrong_strides_instead_of_scrambling(fake_nvc):
    fake_nvc.byte_strides = True  # PyNvVideoCodec < 2.2.4 on a 10-bit stream
    data = encode(
        "hevc",
        width=64,
        height=48,
        num_frames=4,
        gop=4,
        pix_fmt="yuv420p10le",
        options={"x265-params": "log-level=error"},
    )
    config, packets = _stream(data)
    nv = _nvdec.NvdecDecoder(dataclasses.replace(config, bit_depth=10))
    with pytest.raises(BackendUnavailableError, match=r"strides.*2\.2\.4"):
        nv.decode_group(packets, [p.pts for p in packets])
    nv.close()


def test_nvdec_probe_refuses_old_pynvvideocodec(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    for version, ok in (("2.0.0", False), ("2.2.3", False), ("2.2.4", True), ("2.3.0.post1", True)):
        monkeypatch.setattr(_nvdec, "import_pynvvideocodec", lambda v=version: SimpleNamespace(__version__=v))
        got, why = _nvdec.probe()
        assert got is ok, (version, why)
        if not ok:
            assert "2.2.4" in why and "pip install -U" in why
    assert _nvdec._version_tuple("2.2.4rc1") == (2, 2, 4)


def test_nvdec_odd_height_uses_the_surface_shape(fake_nvc):
    # VP9 allows odd heights; the export is floor(H * 1.5) rows (one chroma row short).
    from videoloader.decoders._colour import yuv420p_to_rgb

    data = encode("vp9", width=64, height=47, num_frames=6, gop=6, colorspace=1, color_range=1)
    config, packets = _stream(data)
    assert config.height == 47
    nv = _nvdec.NvdecDecoder(config)
    got = nv.decode_group(packets, [p.pts for p in packets])
    nv.close()
    # Reference: the same formulas on FFmpeg's own planes (swscale takes another
    # path at odd heights, so it is no reference for plane offsets).
    with av.open(io.BytesIO(data)) as c:
        for f in c.decode(video=0):
            y, u, v = (
                torch.from_numpy(np.frombuffer(bytes(pl), np.uint8).reshape(-1, pl.line_size)[:rows, :cols].copy())
                for pl, rows, cols in zip(f.planes, (47, 24, 24), (64, 32, 32), strict=True)
            )
            want = yuv420p_to_rgb(y, u, v, matrix="bt709")
            t = got[int(f.pts)]
            assert t.shape == want.shape == (3, 47, 64)
            assert torch.equal(t[:, :46], want[:, :46]), int(f.pts)  # chroma rows start where they should
            # The last row's chroma row is not exported; the row above stands in for it.
            assert (t[:, 46].int() - want[:, 46].int()).abs().float().mean() <= 12


def test_nvdec_stream_format_from_configuration_records():
    h264 = _stream(encode("h264", width=64, height=48, num_frames=2, gop=2))[0]
    hevc10 = _stream(
        encode(
            "hevc",
            width=64,
            height=48,
            num_frames=2,
            gop=2,
            pix_fmt="yuv420p10le",
            options={"x265-params": "log-level=error"},
        )
    )[0]
    hevc444 = _stream(
        encode(
            "hevc",
            width=64,
            height=48,
            num_frames=2,
            gop=2,
            pix_fmt="yuv444p",
            options={"x265-params": "log-level=error"},
        )
    )[0]
    av1 = _stream(encode("av1", width=64, height=48, num_frames=2, gop=2))[0]
    vp9 = _stream(encode("vp9", width=64, height=48, num_frames=2, gop=2))[0]
    assert _nvdec.stream_format(h264) == _nvdec.StreamFormat(1, 8)
    assert _nvdec.stream_format(hevc10) == _nvdec.StreamFormat(1, 10)
    assert _nvdec.stream_format(hevc444) == _nvdec.StreamFormat(3, 8)
    assert _nvdec.stream_format(av1) == _nvdec.StreamFormat(1, 8)
    assert _nvdec.stream_format(vp9) == _nvdec.StreamFormat(1, 8)
    ok, why = _nvdec.check_stream(hevc444)
    assert not ok and "4:2:0 only" in why


# An H100's NVDEC minimums (GetDecoderCaps): HEVC 144x144, AV1 128x128.
H100_MINIMUMS = {
    ("hevc", "420", 8): dict(width_min=144, height_min=144),
    ("av1", "420", 8): dict(width_min=128, height_min=128),
}


def test_nvdec_refuses_what_caps_refuse(fake_nvc, fake_probes, caplog):
    fake_nvc.caps.update(H100_MINIMUMS)
    fake_nvc.caps[("h264", "420", 8)] = dict(width_max=4096, height_max=4096)
    fake_probes(GPU_BOX)
    cuda = OutputSpec(device="cuda:0")
    tiny_hevc = StreamConfig("hevc", None, 160, 96, 30)
    big_h264 = StreamConfig("h264", None, 8192, 4320, 30)
    ok_hevc = StreamConfig("hevc", None, 320, 240, 30)
    # Explicit: BackendUnavailableError naming the reason, at selection and at creation.
    with pytest.raises(BackendUnavailableError, match="160x96 is below NVDEC's minimum 144x144"):
        select_backend("nvdec", tiny_hevc, cuda)
    with pytest.raises(BackendUnavailableError, match="below NVDEC's minimum"):
        _nvdec.NvdecDecoder(tiny_hevc)
    with pytest.raises(BackendUnavailableError, match="above NVDEC's maximum 4096x4096"):
        select_backend("nvdec", big_h264, cuda)
    assert select_backend("nvdec", ok_hevc, cuda).name == "nvdec"
    # auto: the CPU, with a warning saying why.
    with caplog.at_level(logging.WARNING, logger="videoloader.decoders"):
        spec = select_backend("auto", tiny_hevc, cuda)
    assert spec.name == "cpu" and spec.device == "cuda:0"
    assert any("below NVDEC's minimum" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # Caps are asked once per (GPU, codec, chroma, bit depth).
    n = len(fake_nvc.caps_calls)
    select_backend("nvdec", ok_hevc, cuda)
    assert len(fake_nvc.caps_calls) == n


def test_device_rule(fake_nvc, fake_probes, caplog):
    from videoloader.decoders._ondevice import OnDeviceSpec

    fake_probes(GPU_BOX)
    h264 = StreamConfig("h264", None, 64, 48, 30)
    # GPU decoding asked for: NVDEC on that GPU.
    assert select_backend("auto", h264, OutputSpec(device="cuda:0")).name == "nvdec"
    # Frames wanted on the CPU: auto does not pick a backend that returns CUDA tensors.
    spec = select_backend("auto", h264, OutputSpec())
    assert spec.name == "cpu" and not isinstance(spec, OnDeviceSpec)
    # No output given (platform_info, old callers): no device rule.
    assert select_backend("auto", h264).name == "nvdec"
    # A CPU backend with a CUDA device decodes on the CPU, frames copied to that device.
    spec = select_backend("cpu", h264, OutputSpec(device="cuda:1"))
    assert isinstance(spec, OnDeviceSpec) and spec.name == "cpu" and spec.device == "cuda:1"
    assert pickle.loads(pickle.dumps(spec)) == spec
    # GPU asked for, NVDEC missing: CPU decode with a warning.
    fake_probes(CPU_ONLY)
    with caplog.at_level(logging.WARNING, logger="videoloader.decoders"):
        spec = select_backend("auto", h264, OutputSpec(device="cuda"))
    assert isinstance(spec, OnDeviceSpec) and spec.device == "cuda"
    assert any("no CUDA GPU" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_on_device_backend_moves_frames_after_cpu_decoding():
    from videoloader.decoders._ondevice import OnDeviceSpec

    config, packets = _stream(encode("h264", width=64, height=48, num_frames=6, gop=6))
    # "meta" stands in for a CUDA device here: a real device type, and the move is observable.
    spec = OnDeviceSpec.wrap(get_spec("cpu"), "meta")
    dec = spec.create(config, OutputSpec(height=24, device="meta"), num_threads=1)
    assert dec.inner.output.device == "cpu" and dec.output.device == "meta"
    got = dec.decode_group(packets, [packets[0].pts])
    t = got[packets[0].pts]
    assert t.device.type == "meta" and tuple(t.shape) == (3, 24, 32) and t.dtype == torch.uint8
    frames = [f for p in packets for f in dec.send(p)] + dec.flush()
    assert dec.convert(frames[0]).device.type == "meta" and dec.pixel_format() == "yuv420p"
    dec.close()


def test_nvdec_path_imports_no_pyav():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'av' or name.startswith('av.'):\n"
        "            raise ImportError('PyAV blocked for this test', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import videoloader, videoloader.decoders, videoloader.decoders._nvdec\n"
        "from videoloader.decoders import backend_availability, select_backend, StreamConfig, OutputSpec\n"
        "avail = backend_availability()\n"
        "assert avail['cpu'][0] is False and 'av' in avail['cpu'][1], avail['cpu']\n"
        "assert 'av' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_fake_videotoolbox_refusal_is_backend_unavailable(fake_videotoolbox, monkeypatch):
    class Refusing:
        """What FFmpeg does when VideoToolbox will not take the stream: the decode call fails."""

        def __init__(self, ctx):
            self._ctx = ctx

        def decode(self, packet=None):
            raise av.error.InvalidDataError(1094995529, "hardware decoder refused the stream")

        def __getattr__(self, name):
            return getattr(self._ctx, name)

    real = _videotoolbox.VideoToolboxDecoder._context
    monkeypatch.setattr(_videotoolbox.VideoToolboxDecoder, "_context", lambda self: Refusing(real(self)))
    config, packets = _stream(encode("h264", width=64, height=48, num_frames=4, gop=4))
    vt = get_spec("videotoolbox").create(config, OutputSpec())
    with pytest.raises(BackendUnavailableError, match="VideoToolbox refused this h264 stream.*backend='cpu'"):
        vt.decode_group(packets, [packets[0].pts])
    vt.close()


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
    # 320x240: above every NVDEC minimum (HEVC about 144x144, AV1 128x128).
    data = encode(codec, width=320, height=240, num_frames=30, gop=10, **kw)
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
            # 10-bit: swscale's BT.2020 10-bit path differs from ours even for a perfect
            # decode (37.6 dB measured), so the bar is lower there.
            assert _psnr(t.cpu(), want[pts]) >= (35.0 if "10" in kw.get("pix_fmt", "") else 40.0), (codec, pts)
    nv.close()


@pytest.mark.needs_nvdec
@pytest.mark.parametrize("crop", [(16, 32, 160, 240), (15, 31, 161, 241)])
def test_real_nvdec_crop_and_resize_match_cpu(crop):
    """Crops on the GPU planes (even and odd windows) against the CPU backend;
    the resize against a torch resize of the CPU's crop (see the fake's test)."""
    from videoloader.transforms import Geometry, apply_geometry

    _nvdec.clear_decoder_pool()
    config, packets = _stream(encode("h264", width=320, height=240, num_frames=10, gop=10))
    wanted = [p.pts for p in packets][:4]
    for size in (None, (80, 120)):
        spec = OutputSpec(crop=crop, height=size and size[0], width=size and size[1], full_chroma=True)
        nv = get_backend_class("nvdec")(config, output=dataclasses.replace(spec, device="cuda"))
        got = nv.decode_group(packets, wanted)
        nv.close()
        cropped = PyAVDecoder(config, output=OutputSpec(crop=crop, full_chroma=True)).decode_group(packets, wanted)
        for pts in wanted:
            assert got[pts].is_cuda
            want = cropped[pts] if size is None else apply_geometry(cropped[pts], Geometry(size=size))
            assert got[pts].shape == want.shape and _psnr(got[pts].cpu(), want) >= 40.0, (crop, size, pts)


@pytest.mark.needs_macos
def test_real_videotoolbox_matches_cpu():
    data = encode("h264", width=320, height=240, num_frames=30, gop=10)
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
