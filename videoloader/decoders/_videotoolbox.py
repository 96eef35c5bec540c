"""VideoToolbox backend (macOS): FFmpeg's decoder with the VideoToolbox hwaccel.

Everything but the codec context comes from the CPU backend: the same packets,
the same drain/flush rules, and frames copied back to system memory (NV12 /
P010) are converted by swscale exactly like software frames. On Linux a
"videotoolbox" request silently decodes in software, so we check
``ctx.is_hwaccel`` after the first frame and refuse to pretend.

A stream VideoToolbox refuses (a profile, size or chroma format its media
engine does not take) fails inside FFmpeg like a damaged packet. Until this
decoder has produced its first accelerated frame, such a failure is checked
against FFmpeg's software decoder on the same packets: if software decodes
them, VideoToolbox refused the stream and ``BackendUnavailableError`` says so
(use ``backend="cpu"``); if software fails too, the packets are damaged and
the ``CorruptVideoError`` stands.

VP9 goes to VideoToolbox where this Mac and this FFmpeg build decode it
(``probe_codec`` decodes one VP9 keyframe with it); elsewhere ``auto``
decodes VP9 on the CPU.
"""

from __future__ import annotations

import functools
import io
import platform
import sys

import av
from av.video.codeccontext import VideoCodecContext

from .._errors import BackendUnavailableError, CorruptVideoError, UnsupportedFormatError
from ._base import BackendSpec, DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig
from ._pyav import PyAVDecoder

__all__ = ["SPEC", "VideoToolboxDecoder", "probe", "probe_codec"]

SPEC = BackendSpec(
    name="videotoolbox",
    factory=f"{__name__}:VideoToolboxDecoder",
    probe=f"{__name__}:probe",
    codec_probe=f"{__name__}:probe_codec",
    codecs=frozenset({"h264", "hevc", "av1", "vp9"}),
    install_hint="use macOS with a PyAV build that has VideoToolbox (the PyPI wheels for macOS do)",
    priority=10,
)
"""Apple's hardware decoder; ``probe_codec`` tells which codecs this Mac's chip takes
(AV1 needs an M3 or later; HEVC needs Apple Silicon or a recent Intel Mac; VP9
needs a macOS and FFmpeg build with VideoToolbox VP9)."""

# With a hardware accelerator FFmpeg's native decoders are the ones to use
# (libdav1d has no hwaccel hooks).
_VT_DECODERS = {"h264": "h264", "hevc": "hevc", "av1": "av1", "vp9": "vp9"}
_PROBE_ENCODERS = {
    "h264": ("libx264",),
    "hevc": ("libx265", "hevc_videotoolbox"),
    "av1": ("libsvtav1", "libaom-av1"),
    "vp9": ("libvpx-vp9",),
}
# Probe frames: small, but not below what the media engine takes for the codec.
_PROBE_SIZE = {"vp9": 128}


def _on_macos() -> bool:
    return sys.platform == "darwin"


def _is_accelerated(ctx: VideoCodecContext | None) -> bool:
    """Whether FFmpeg really decodes on VideoToolbox (off macOS it silently uses software)."""
    return bool(getattr(ctx, "is_hwaccel", False))


def _hwaccel() -> av.codec.hwaccel.HWAccel:
    from av.codec.hwaccel import HWAccel

    # No software fallback: a silent CPU decode is what this backend must not do.
    return HWAccel(device_type="videotoolbox", allow_software_fallback=False)


class VideoToolboxDecoder(PyAVDecoder):
    """Apple VideoToolbox decoding through PyAV; output CPU tensors.

    Args:
        config: codec, extradata and size from the index.
        output: output size for the colour conversion.

    Raises:
        BackendUnavailableError: not macOS, or VideoToolbox did not take the
            stream (e.g. AV1 before M3; a profile or size it refuses, found at
            the first packets).
    """

    name = "videotoolbox"

    def __init__(self, config: StreamConfig, *, output: OutputSpec = OutputSpec()) -> None:
        if not _on_macos():
            raise BackendUnavailableError(
                "the videotoolbox backend needs macOS; use backend='auto' or 'cpu' on this machine"
            )
        if config.codec not in _VT_DECODERS:
            raise BackendUnavailableError(f"VideoToolbox does not decode {config.codec!r}; use backend='auto' or 'cpu'")
        # VideoToolbox wants one thread: frame threading only adds latency there.
        super().__init__(config, output=output, thread_count=1, thread_type="NONE")
        self._checked = False
        # Packets of the current group, kept until VideoToolbox has produced a
        # frame: what a failure is checked against in software.
        self._unverified: list[Packet] = []

    @classmethod
    def create(cls, config: StreamConfig, output: OutputSpec, *, num_threads: int = 0) -> DecoderBackend:
        """Decoding runs on the media engine: ``num_threads`` is ignored."""
        return cls(config, output=output)

    def _context(self) -> VideoCodecContext:
        if self._ctx is None:
            name = _VT_DECODERS[self.config.codec]
            try:
                ctx = av.CodecContext.create(name, "r", hwaccel=_hwaccel())
            except (av.FFmpegError, ValueError, PermissionError, OSError) as e:
                raise BackendUnavailableError(
                    f"VideoToolbox could not open a {name} decoder: {e}; use backend='cpu'"
                ) from e
            assert isinstance(ctx, VideoCodecContext)  # h264/hevc/av1 are video decoders
            if self.config.extradata:
                ctx.extradata = self.config.extradata
            ctx.thread_count = 1
            self._ctx = ctx
        return self._ctx

    def send(self, packet: Packet) -> list[DecodedFrame]:
        if not self._checked:
            if packet.is_sync:
                self._unverified = []
            self._unverified.append(packet)
        try:
            return super().send(packet)
        except CorruptVideoError as e:
            self._raise_if_refused(e)
            raise

    def flush(self) -> list[DecodedFrame]:
        try:
            return super().flush()
        except CorruptVideoError as e:
            self._raise_if_refused(e)
            raise

    def _raise_if_refused(self, error: CorruptVideoError) -> None:
        """Before any accelerated frame: if FFmpeg's software decoder takes the same packets,
        VideoToolbox refused the stream (raise ``BackendUnavailableError``); else return."""
        if self._checked or not self._unverified:
            return
        packets, self._unverified = self._unverified, []
        software = PyAVDecoder(self.config, thread_count=1, thread_type="NONE")
        try:
            software.decode_group(packets, [])
        except CorruptVideoError:
            return  # damaged for software too: the packets are corrupt
        finally:
            software.close()
        raise BackendUnavailableError(
            f"VideoToolbox refused this {self.config.codec} stream ({error}); FFmpeg's software decoder decodes "
            f"it: use backend='cpu' (or 'auto') for this video"
        ) from error

    def _frames(self, packet: av.Packet | None) -> list[DecodedFrame]:
        frames = super()._frames(packet)
        if frames and not self._checked:
            if not _is_accelerated(self._ctx):
                raise BackendUnavailableError(
                    f"VideoToolbox did not accelerate this {self.config.codec} stream (FFmpeg fell back to "
                    f"software); use backend='cpu' or 'auto'"
                )
            self._checked = True
            self._unverified = []
        return frames


def _tiny_keyframe(codec: str) -> tuple[bytes, bytes | None] | None:
    """One small keyframe (64x64, VP9 128x128) and its extradata, encoded with whatever encoder exists."""
    import numpy as np

    size = _PROBE_SIZE.get(codec, 64)
    for encoder in _PROBE_ENCODERS.get(codec, ()):
        try:
            buf = io.BytesIO()
            with av.open(buf, "w", format="mp4") as out:
                s = out.add_stream(encoder, rate=30)
                assert isinstance(s, av.VideoStream)
                s.width, s.height, s.pix_fmt = size, size, "yuv420p"
                frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 128, np.uint8), format="rgb24")
                for p in s.encode(frame):
                    out.mux(p)
                for p in s.encode():
                    out.mux(p)
            buf.seek(0)
            with av.open(buf, "r") as inp:
                st = inp.streams.video[0]
                extradata = st.codec_context.extradata
                for p in inp.demux(st):
                    if p.size:
                        return bytes(p), extradata
        except Exception:
            continue
    return None


@functools.cache
def probe_codec(codec: str) -> tuple[bool, str]:
    """Decode one tiny keyframe with VideoToolbox: ``(works, reason)``.

    The only reliable per-codec check: which codecs the media engine takes
    depends on the chip.
    """
    if not _on_macos():
        return False, "VideoToolbox exists only on macOS"
    if codec not in _VT_DECODERS:
        return False, f"VideoToolbox does not decode {codec!r}"
    sample = _tiny_keyframe(codec)
    if sample is None:
        return False, f"no {codec} encoder in this PyAV build to make a probe frame, so VideoToolbox cannot be checked"
    data, extradata = sample
    try:
        ctx = av.CodecContext.create(_VT_DECODERS[codec], "r", hwaccel=_hwaccel())
        assert isinstance(ctx, VideoCodecContext)
        if extradata:
            ctx.extradata = extradata
        frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
    except (av.FFmpegError, ValueError, PermissionError, OSError, UnsupportedFormatError) as e:
        return False, f"VideoToolbox failed to decode a {codec} keyframe: {e}"
    if not frames:
        return False, f"VideoToolbox returned no frame for a {codec} keyframe"
    if not _is_accelerated(ctx):
        return False, f"FFmpeg decoded {codec} in software, not with VideoToolbox"
    return True, f"VideoToolbox decodes {codec}"


def probe() -> tuple[bool, str]:
    """Whether VideoToolbox decodes here: macOS, a PyAV with the device, and an H.264 keyframe decoded."""
    if not _on_macos():
        return False, f"VideoToolbox exists only on macOS (this is {platform.system() or sys.platform})"
    try:
        from av.codec.hwaccel import hwdevices_available
    except Exception as e:
        return False, f"this PyAV has no hardware acceleration support ({e})"
    try:
        devices = list(hwdevices_available())
    except Exception as e:
        return False, f"PyAV could not list hardware devices: {e}"
    if "videotoolbox" not in devices:
        return False, f"this PyAV/FFmpeg build has no VideoToolbox device (has: {devices or 'none'})"
    ok, why = probe_codec("h264")
    return (True, "VideoToolbox via PyAV") if ok else (False, why)
