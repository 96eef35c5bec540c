"""The tests every decoder backend must pass.

Subclass :class:`BackendConformance` in a test module, name the subclass
``Test...`` and implement :meth:`BackendConformance.make_backend`; set
``codecs`` to what the backend decodes and, for a backend whose colour
conversion is not FFmpeg's swscale, the tolerances against the CPU
reference. Fixtures a backend needs (a fake library, monkeypatches) go in an
autouse fixture of the subclass. Hardware subclasses carry the
``needs_nvdec``/``needs_macos`` markers.

Packets come from our own MP4 index (``videoloader.read_index``) over small
clips encoded with PyAV, exactly as the reader feeds them; the reference is a
plain sequential PyAV decode converted to RGB by the CPU backend's converter.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import av
import pytest
import torch

from videoloader import read_index
from videoloader._errors import CorruptVideoError
from videoloader.decoders import DecoderBackend, OutputSpec, Packet, StreamConfig
from videoloader.decoders._pyav import frame_to_tensor

from _hw_media import encode

__all__ = ["BackendConformance", "Clip", "make_clip"]

# Encoder settings per codec: closed GOPs (every group decodes on its own),
# colour signalled so that every converter picks the same matrix and range.
_ENCODE = {
    "h264": dict(colorspace=1, color_range=1),
    "hevc": dict(colorspace=1, color_range=1, options={"x265-params": "log-level=error:open-gop=0"}),
    "av1": dict(colorspace=1, color_range=2),
    "vp9": dict(colorspace=5, color_range=1),
}
_LENGTH_PREFIXED = ("h264", "hevc")


@dataclass
class Clip:
    """One encoded clip as the reader sees it: stream config, packets, groups, and the reference frames."""

    codec: str
    config: StreamConfig
    packets: list[Packet]
    """Every sample in decode order, built from the MP4 index."""
    groups: list[list[Packet]]
    """``packets`` split at sync samples: what ``decode_group`` is fed."""
    shown: list[set[int]]
    """Per group, the pts of the frames it shows (discarded samples excluded)."""
    reference: dict[int, torch.Tensor]
    """pts -> RGB ``3 x H x W`` uint8 of a sequential PyAV decode."""


_CLIPS: dict[str, Clip] = {}


def make_clip(codec: str, folder: Path, size: tuple[int, int] = (64, 48)) -> Clip:
    """Encode, index and reference-decode a 30-frame clip of ``size`` (width, height),
    cached per codec and size for the session."""
    key = f"{codec}_{size[0]}x{size[1]}"
    if key in _CLIPS:
        return _CLIPS[key]
    data = encode(codec, width=size[0], height=size[1], num_frames=30, gop=10, **_ENCODE[codec])
    path = folder / f"conformance_{key}.mp4"
    path.write_bytes(data)
    index = read_index(str(path))
    config = StreamConfig(
        codec=index.codec,
        extradata=index.extradata,
        width=index.width,
        height=index.height,
        timescale=index.timescale,
        bit_depth=index.bit_depth,
        sample_entry=index.sample_entry,
    )
    packets = [
        Packet(
            data=data[int(index.offsets[s]) : int(index.offsets[s] + index.sizes[s])],
            pts=int(index.pts[s]),
            dts=int(index.dts[s]),
            duration=int(index.durations[s]),
            is_sync=bool(index.is_sync[s]),
        )
        for s in range(index.num_samples)
    ]
    starts = [i for i, p in enumerate(packets) if p.is_sync] + [len(packets)]
    assert starts[0] == 0, "the clip must start at a sync sample"
    groups = [packets[a:b] for a, b in itertools.pairwise(starts)]
    shown = [{int(index.pts[s]) for s in range(a, b) if not index.is_discard[s]} for a, b in itertools.pairwise(starts)]
    frame_pts = [int(p) for p in index.frame_pts()]
    with av.open(io.BytesIO(data)) as container:
        decoded = [frame_to_tensor(f, OutputSpec()) for f in container.decode(video=0)]
    assert len(decoded) == len(frame_pts), "the index and a sequential decode disagree on the frame count"
    clip = Clip(codec, config, packets, groups, shown, dict(zip(frame_pts, decoded, strict=True)))
    _CLIPS[key] = clip
    return clip


def _damaged(packet: Packet) -> Packet:
    """The packet with its first NAL unit's length prefix pointing far past its end."""
    return Packet((10**6).to_bytes(4, "big") + packet.data[4:], packet.pts, packet.dts, packet.duration, packet.is_sync)


class BackendConformance:
    """Abstract suite: what ``decode_group``, ``send``/``flush``/``reset``,
    ``convert``, ``pixel_format`` and ``close`` promise, for any backend."""

    codecs: ClassVar[tuple[str, ...]] = ("h264",)
    """Codecs to run the suite with (a subset of what the backend decodes)."""
    expected_device: ClassVar[str] = "cpu"
    """``torch.device.type`` of the tensors the backend returns."""
    max_mean_diff: ClassVar[float] = 0.0
    """Mean absolute difference allowed against the CPU reference (0: bit-exact)."""
    max_abs_diff: ClassVar[int] = 0
    """Largest absolute difference allowed against the CPU reference."""
    clip_size: ClassVar[tuple[int, int]] = (64, 48)
    """(width, height) of the test clips; hardware decoders have minimum sizes."""

    def make_backend(self, config: StreamConfig, output: OutputSpec) -> DecoderBackend:
        """A new backend for ``config``; subclasses implement it."""
        raise NotImplementedError

    # -- plumbing -----------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "codec" in metafunc.fixturenames:
            metafunc.parametrize("codec", list(self.codecs))
        if "nal_codec" in metafunc.fixturenames:
            metafunc.parametrize("nal_codec", [c for c in self.codecs if c in _LENGTH_PREFIXED])

    @pytest.fixture
    def clip(self, codec: str, tmp_path_factory: pytest.TempPathFactory) -> Clip:
        return make_clip(codec, tmp_path_factory.getbasetemp(), self.clip_size)

    @pytest.fixture
    def backend(self, clip: Clip):
        b = self.make_backend(clip.config, OutputSpec())
        yield b
        b.close()

    def assert_frame(self, clip: Clip, pts: int, tensor: torch.Tensor) -> None:
        """``tensor`` is frame ``pts``: within tolerance of its reference and closer to it than to any other frame."""
        got = tensor.cpu().int()
        want = clip.reference[pts]
        assert got.shape == want.shape, (pts, tuple(got.shape), tuple(want.shape))
        diff = (got - want.int()).abs()
        assert diff.float().mean().item() <= self.max_mean_diff, (clip.codec, pts, diff.float().mean().item())
        assert diff.max().item() <= self.max_abs_diff, (clip.codec, pts, diff.max().item())
        errors = {p: (got - ref.int()).abs().float().mean().item() for p, ref in clip.reference.items()}
        assert min(errors, key=errors.__getitem__) == pts, f"{clip.codec}: frame pts={pts} looks like another frame"

    def assert_decodes(self, b: DecoderBackend, clip: Clip, group: int, wanted: list[int]) -> dict[int, torch.Tensor]:
        got = b.decode_group(clip.groups[group], wanted)
        assert sorted(got) == sorted(wanted), (clip.codec, group, sorted(got), wanted)
        for pts in wanted:
            self.assert_frame(clip, pts, got[pts])
        return got

    # -- decode_group ---------------------------------------------------------------------

    def test_decode_group_returns_exactly_the_wanted_frames(self, backend: DecoderBackend, clip: Clip):
        # Random access: groups out of order, a few frames of each, one group whole.
        for g in reversed(range(len(clip.groups))):
            shown = sorted(clip.shown[g])
            wanted = shown if g == 1 else sorted({shown[0], *shown[-2:]})
            self.assert_decodes(backend, clip, g, wanted)
        assert backend.decode_group(clip.groups[0], []) == {}

    def test_output_tensors(self, backend: DecoderBackend, clip: Clip):
        first = sorted(clip.shown[0])[0]
        t = self.assert_decodes(backend, clip, 0, [first])[first]
        assert t.dtype == torch.uint8 and t.dim() == 3 and t.shape[0] == 3
        assert t.device.type == self.expected_device
        # Dense memory, channel-first or channel-last: stacking never meets gaps or overlaps.
        assert t.is_contiguous() or t.permute(1, 2, 0).is_contiguous(), t.stride()
        # The tensor owns its memory: decoding more does not change it.
        kept = t.clone()
        self.assert_decodes(backend, clip, 1, sorted(clip.shown[1]))
        assert torch.equal(t, kept)

    @pytest.mark.parametrize("height,width", [(24, 32), (24, None), (None, 96)])
    def test_scaled_output(self, clip: Clip, height: int | None, width: int | None):
        b = self.make_backend(clip.config, OutputSpec(height=height, width=width))
        try:
            pts = sorted(clip.shown[0])[:2]
            got = b.decode_group(clip.groups[0], pts)
        finally:
            b.close()
        h = height or round(clip.config.height * width / clip.config.width)
        w = width or round(clip.config.width * height / clip.config.height)
        assert sorted(got) == pts
        for t in got.values():
            assert tuple(t.shape) == (3, h, w) and t.dtype == torch.uint8

    # -- send / flush / reset -------------------------------------------------------------

    def test_send_then_flush_yields_every_frame_of_the_group(self, backend: DecoderBackend, clip: Clip):
        assert backend.flush() == []  # nothing fed: nothing to drain
        frames = [f for p in clip.groups[0] for f in backend.send(p)]
        frames += backend.flush()
        assert sorted(f.pts for f in frames) == sorted(clip.shown[0])
        assert backend.flush() == []  # drained and reset
        last = max(frames, key=lambda f: f.pts)
        self.assert_frame(clip, last.pts, backend.convert(last))
        # Ready for the next group at a sync sample.
        self.assert_decodes(backend, clip, 1, sorted(clip.shown[1])[-2:])

    def test_reset_mid_group_then_decode_another(self, backend: DecoderBackend, clip: Clip):
        group = clip.groups[1]
        for p in group[: len(group) // 2]:
            backend.send(p)
        backend.reset()
        self.assert_decodes(backend, clip, 2, sorted(clip.shown[2]))
        self.assert_decodes(backend, clip, 1, sorted(clip.shown[1])[:3])

    def test_damaged_packet_raises_corrupt_video_error(self, nal_codec: str, tmp_path_factory):
        clip = make_clip(nal_codec, tmp_path_factory.getbasetemp(), self.clip_size)
        b = self.make_backend(clip.config, OutputSpec())
        try:
            group = list(clip.groups[1])
            k = next(i for i, p in enumerate(group) if not p.is_sync and i >= len(group) // 2)
            group[k] = _damaged(group[k])
            with pytest.raises(CorruptVideoError):
                b.decode_group(group, sorted(clip.shown[1]))
            # The failure left the decoder usable.
            self.assert_decodes(b, clip, 2, sorted(clip.shown[2]))
        finally:
            b.close()

    # -- metadata and lifetime --------------------------------------------------------

    def test_pixel_format_is_known_after_decoding(self, backend: DecoderBackend, clip: Clip):
        assert backend.pixel_format() is None
        backend.decode_group(clip.groups[0], sorted(clip.shown[0])[:1])
        fmt = backend.pixel_format()
        assert isinstance(fmt, str) and fmt and fmt == fmt.lower()

    def test_close_is_idempotent(self, clip: Clip):
        unused = self.make_backend(clip.config, OutputSpec())
        unused.close()
        unused.close()
        with self.make_backend(clip.config, OutputSpec()) as b:
            assert isinstance(b.name, str) and b.name
            b.decode_group(clip.groups[0], sorted(clip.shown[0])[:1])
            b.close()
        b.close()
