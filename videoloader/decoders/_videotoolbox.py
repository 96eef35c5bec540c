"""VideoToolbox backend (macOS): FFmpeg's decoder with the VideoToolbox hwaccel.

Everything but the codec context comes from the CPU backend: the same packets,
the same drain/flush rules, and frames copied back to system memory (NV12 /
P010) are converted by swscale exactly like software frames. On Linux a
"videotoolbox" request silently decodes in software, so we check
``ctx.is_hwaccel`` after the first frame and refuse to pretend.
"""

from __future__ import annotations

import functools
import io
import sys

import av

from .._errors import BackendUnavailableError, UnsupportedFormatError
from ._base import DecodedFrame, OutputSpec, StreamConfig
from ._pyav import PyAVDecoder

__all__ = ["VideoToolboxDecoder", "probe_codec"]

# With a hardware accelerator FFmpeg's native decoders are the ones to use
# (libdav1d has no hwaccel hooks).
_VT_DECODERS = {"h264": "h264", "hevc": "hevc", "av1": "av1"}
_PROBE_ENCODERS = {"h264": ("libx264",), "hevc": ("libx265", "hevc_videotoolbox"), "av1": ("libsvtav1", "libaom-av1")}


def _hwaccel() -> "av.codec.hwaccel.HWAccel":
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
            stream (e.g. AV1 before M3, VP9 always).
    """

    name = "videotoolbox"

    def __init__(self, config: StreamConfig, *, output: OutputSpec = OutputSpec()) -> None:
        if sys.platform != "darwin":
            raise BackendUnavailableError(
                "the videotoolbox backend needs macOS; use backend='auto' or 'cpu' on this machine"
            )
        if config.codec not in _VT_DECODERS:
            raise BackendUnavailableError(
                f"VideoToolbox does not decode {config.codec!r}; use backend='auto' or 'cpu'"
            )
        # VideoToolbox wants one thread: frame threading only adds latency there.
        super().__init__(config, output=output, thread_count=1, thread_type="NONE")
        self._checked = False

    def _context(self) -> av.CodecContext:
        if self._ctx is None:
            name = _VT_DECODERS[self.config.codec]
            try:
                ctx = av.CodecContext.create(name, "r", hwaccel=_hwaccel())
            except (av.FFmpegError, ValueError, PermissionError, OSError) as e:
                raise BackendUnavailableError(
                    f"VideoToolbox could not open a {name} decoder: {e}; use backend='cpu'"
                ) from e
            if self.config.extradata:
                ctx.extradata = self.config.extradata
            ctx.thread_count = 1
            self._ctx = ctx
        return self._ctx

    def _frames(self, packet: av.Packet | None) -> list[DecodedFrame]:
        frames = super()._frames(packet)
        if frames and not self._checked:
            if not getattr(self._ctx, "is_hwaccel", False):
                raise BackendUnavailableError(
                    f"VideoToolbox did not accelerate this {self.config.codec} stream (FFmpeg fell back to "
                    f"software); use backend='cpu' or 'auto'"
                )
            self._checked = True
        return frames


def _tiny_keyframe(codec: str) -> tuple[bytes, bytes | None] | None:
    """One 64x64 keyframe and its extradata, encoded with whatever encoder exists."""
    import numpy as np

    for encoder in _PROBE_ENCODERS.get(codec, ()):
        try:
            buf = io.BytesIO()
            with av.open(buf, "w", format="mp4") as out:
                s = out.add_stream(encoder, rate=30)
                s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
                frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
                for p in s.encode(frame):
                    out.mux(p)
                for p in s.encode():
                    out.mux(p)
            buf.seek(0)
            with av.open(buf) as inp:
                st = inp.streams.video[0]
                extradata = st.codec_context.extradata
                for p in inp.demux(st):
                    if p.size:
                        return bytes(p), extradata
        except Exception:
            continue
    return None


@functools.lru_cache(maxsize=None)
def probe_codec(codec: str) -> tuple[bool, str]:
    """Decode one tiny keyframe with VideoToolbox: ``(works, reason)``."""
    if sys.platform != "darwin":
        return False, "VideoToolbox exists only on macOS"
    if codec not in _VT_DECODERS:
        return False, f"VideoToolbox does not decode {codec!r}"
    sample = _tiny_keyframe(codec)
    if sample is None:
        return False, f"no {codec} encoder in this PyAV build to make a probe frame; assuming VideoToolbox cannot be checked"
    data, extradata = sample
    try:
        ctx = av.CodecContext.create(_VT_DECODERS[codec], "r", hwaccel=_hwaccel())
        if extradata:
            ctx.extradata = extradata
        frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
    except (av.FFmpegError, ValueError, PermissionError, OSError, UnsupportedFormatError) as e:
        return False, f"VideoToolbox failed to decode a {codec} keyframe: {e}"
    if not frames:
        return False, f"VideoToolbox returned no frame for a {codec} keyframe"
    if not getattr(ctx, "is_hwaccel", False):
        return False, f"FFmpeg decoded {codec} in software, not with VideoToolbox"
    return True, f"VideoToolbox decodes {codec}"
