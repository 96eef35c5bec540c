"""The decoder backend contract: packets in, frames out, flush; and the spec
that describes a backend without importing it.

The reader owns *which* packets to feed (one GOP group at a time, from a sync
sample up to the last sample needed) and *which* frames to keep; a backend
only decodes and converts. Backends never see URLs or byte ranges, so every
backend shares the same planning and exactness rules.

A backend is one module holding a :class:`DecoderBackend` subclass, its probe
and a module-level :class:`BackendSpec`; ``tests/backend_conformance.py``
holds the tests every backend must pass.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BackendSpec", "DecodedFrame", "DecoderBackend", "OutputSpec", "Packet", "StreamConfig", "load_target"]


@dataclass(frozen=True)
class StreamConfig:
    """What a decoder needs to know about the stream before the first packet."""

    codec: str
    """FFmpeg codec family: ``h264``, ``hevc``, ``av1``, ``vp9``..."""
    extradata: bytes | None
    """avcC / hvcC / av1C / vpcC payload from the index (None if absent)."""
    width: int
    height: int
    timescale: int
    """Ticks per second of packet pts/dts."""
    bit_depth: int | None = None
    sample_entry: str = ""


@dataclass(frozen=True)
class Packet:
    """One compressed sample, timestamps in ``StreamConfig.timescale`` ticks."""

    data: bytes
    pts: int
    dts: int
    duration: int
    is_sync: bool


@dataclass(frozen=True)
class OutputSpec:
    """How decoded frames are converted: RGB uint8, optionally scaled.

    ``height``/``width`` of None keep the coded display size. Scaling happens
    inside the backend's converter (FFmpeg's swscale on the CPU, a CUDA
    kernel on NVDEC), never as a separate pass in Python.
    """

    height: int | None = None
    width: int | None = None
    device: str = "cpu"
    crop: tuple[int, int, int, int] | None = None
    """``(top, left, height, width)`` of the decoded (coded-size) frame to keep
    before scaling; None keeps it whole. ``height``/``width`` then scale the window."""
    post_crop: tuple[int, int, int, int] | None = None
    """``(top, left, height, width)`` of the scaled frame to keep; None keeps it whole."""
    full_chroma: bool = False
    """Interpolate chroma at full resolution while scaling (swscale's
    ``full_chroma_int``/``full_chroma_inp``): closer to scaling the RGB frame, as
    torchvision and torchcodec's transforms do; used for decode-time transforms."""

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"OutputSpec.{name} must be a positive int or None, got {v!r}")
        for name in ("crop", "post_crop"):
            r = getattr(self, name)
            if r is not None and (
                len(r) != 4 or not all(isinstance(v, int) for v in r) or min(r) < 0 or r[2] <= 0 or r[3] <= 0
            ):
                raise ValueError(f"OutputSpec.{name} must be (top, left, height, width) with sizes > 0, got {r!r}")


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded, not yet converted, frame: the backend's own handle plus pts."""

    pts: int
    handle: Any
    corrupt: bool = False
    """The decoder flagged this frame, or a frame decoded before it in the same
    group, as damaged (concealed errors propagate through references)."""


class DecoderBackend(abc.ABC):
    """A decoder for one stream. Not thread-safe: one per reader (or worker)."""

    name: ClassVar[str] = ""
    """The name of the :class:`BackendSpec` this class is registered under."""
    supports_crop: bool = False
    """Whether :meth:`convert` applies ``OutputSpec.crop``/``post_crop`` itself; for
    a backend that does not, the reader converts at full size and crops in torch."""

    def __init__(self, config: StreamConfig, *, output: OutputSpec = OutputSpec()) -> None:
        self.config = config
        self.output = output

    @classmethod
    def create(cls, config: StreamConfig, output: OutputSpec, *, num_threads: int = 0) -> DecoderBackend:
        """Build a backend with this backend's defaults; what :meth:`BackendSpec.create` calls.

        Override it to adapt the generic request: a hardware backend may move
        ``output`` to its device or ignore ``num_threads``.

        Args:
            config: the stream to decode.
            output: requested output size and device.
            num_threads: CPU decoding threads the caller allows (0: the
                decoder's own choice); backends that do not decode on CPU
                threads ignore it.
        """
        return cls(config, output=output)

    @abc.abstractmethod
    def send(self, packet: Packet) -> list[DecodedFrame]:
        """Feed one packet (decode order); return the frames it released."""

    @abc.abstractmethod
    def flush(self) -> list[DecodedFrame]:
        """Drain every buffered frame and reset, ready for the next group
        starting at a sync sample."""

    @abc.abstractmethod
    def convert(self, frame: DecodedFrame) -> torch.Tensor:
        """RGB uint8 ``3 x H x W`` tensor at the output size, on the backend's device."""

    def pixel_format(self) -> str | None:
        """FFmpeg name of the decoded frames' pixel format (``yuv420p``, ``nv12``...),
        or None until a frame has been decoded."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: a backend holding nothing need not override it
        """Release decoder resources. Idempotent."""

    def decode_group(self, packets: Iterable[Packet], wanted_pts: Collection[int]) -> dict[int, torch.Tensor]:
        """Decode one group (starting at a sync sample) and convert only the
        frames whose pts is in ``wanted_pts``; the others are dropped without
        colour conversion. Returns ``{pts: tensor}``; a wanted pts missing from
        the result means the decoder did not produce it (the caller raises).
        """
        wanted = set(wanted_pts)
        out: dict[int, torch.Tensor] = {}

        def keep(frames: list[DecodedFrame]) -> None:
            for f in frames:
                if f.pts in wanted and f.pts not in out:
                    out[f.pts] = self.convert(f)

        try:
            for p in packets:
                keep(self.send(p))
            keep(self.flush())
        except BaseException:
            self.reset()
            raise
        return out

    def reset(self) -> None:
        """Drop any buffered state after a failed group, ready for a new one."""
        try:
            self.flush()
        except Exception:
            pass

    def __enter__(self) -> DecoderBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------- spec


def load_target(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises:
        ValueError: ``target`` is not ``"module:attribute"``.
        ImportError: the module (or a dependency of it) cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class BackendSpec:
    """Everything the registry knows about one decoder backend, as plain data.

    Code is referenced by ``"module:attribute"`` strings imported on first
    use, so describing (and registering) a backend loads no decoder library,
    and a spec pickles into DataLoader workers. Define a backend's spec next
    to it, as a module-level ``SPEC``, and register it with
    :func:`videoloader.decoders.register_backend`.

    Example::

        SPEC = BackendSpec(
            name="mydec",
            factory="mypkg.mydec:MyDecoder",
            codecs=frozenset({"h264"}),
            install_hint="pip install mypkg[gpu]",
            probe="mypkg.mydec:probe",
            priority=15,
        )
    """

    name: str
    """What users pass as ``backend=``."""
    factory: str
    """``"module:Class"`` of the :class:`DecoderBackend` subclass."""
    codecs: frozenset[str]
    """Codec families the backend can decode (hardware ones: what the chip can at best).
    Empty: any codec, as far as ``codec_probe`` accepts it (a software decoder library)."""
    install_hint: str
    """What to run (or need) so the backend works; quoted in error messages."""
    probe: str = ""
    """``"module:function"``: ``() -> (available, reason)``, run once per process.
    Empty: the backend is available when its factory imports."""
    codec_probe: str = ""
    """``"module:function"``: ``(codec) -> (works, reason)`` for a listed codec
    whose support depends on the machine (e.g. AV1 only on newer chips). Empty:
    every listed codec works when the backend is available."""
    priority: int = 0
    """``backend="auto"`` tries higher priorities first; the portable CPU backend has 0."""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name
            or self.name == "auto"
            or not self.name.isprintable()
            or any(c.isspace() for c in self.name)
        ):
            raise ValueError(f"BackendSpec.name must be a non-empty name without spaces, not 'auto'; got {self.name!r}")
        for field in ("factory", "probe", "codec_probe"):
            target = getattr(self, field)
            if not isinstance(target, str) or (target and target.count(":") != 1):
                raise ValueError(f"BackendSpec.{field} must be 'module:attribute' (or ''), got {target!r}")
        if not self.factory:
            raise ValueError("BackendSpec.factory is required")
        if not isinstance(self.codecs, frozenset):
            object.__setattr__(self, "codecs", frozenset(self.codecs))

    def backend_class(self) -> type[DecoderBackend]:
        """Import the backend class.

        Raises:
            BackendUnavailableError: its module or a dependency cannot be
                imported (the message says what to install).
            TypeError: the factory is not a DecoderBackend subclass.
        """
        try:
            cls = load_target(self.factory)
        except (ImportError, AttributeError) as e:
            raise BackendUnavailableError(
                f"decoder backend {self.name!r} cannot be imported ({e}); fix: {self.install_hint}"
            ) from e
        if not (isinstance(cls, type) and issubclass(cls, DecoderBackend)):
            raise TypeError(f"decoder backend {self.name!r}: {self.factory} is not a DecoderBackend subclass")
        return cls

    def available(self) -> tuple[bool, str]:
        """Run the probe now (uncached); never raises.

        Returns:
            ``(available, reason)``: what was found, or what is missing.
        """
        try:
            if not self.probe:
                self.backend_class()
                return True, f"{self.factory} imports"
            probe: Callable[[], tuple[bool, str]] = load_target(self.probe)
            ok, why = probe()
            return bool(ok), str(why)
        except Exception as e:  # a probe must never take the process down
            return False, f"probe failed: {type(e).__name__}: {e}"

    def supports(self, codec: str) -> tuple[bool, str]:
        """Whether this backend, once available, decodes ``codec`` on this machine.

        Returns:
            ``(works, reason)``; reason is empty when it works without a
            machine-specific check.
        """
        if self.codecs and codec not in self.codecs:
            return False, f"{self.name} does not decode {codec!r} (it decodes {', '.join(sorted(self.codecs))})"
        if not self.codec_probe:
            return True, ""
        try:
            check: Callable[[str], tuple[bool, str]] = load_target(self.codec_probe)
            ok, why = check(codec)
            return bool(ok), str(why)
        except Exception as e:
            return False, f"codec probe failed: {type(e).__name__}: {e}"

    def create(self, config: StreamConfig, output: OutputSpec, *, num_threads: int = 0) -> DecoderBackend:
        """A new decoder for ``config``, with this backend's defaults (see :meth:`DecoderBackend.create`).

        Raises:
            BackendUnavailableError: the backend cannot be imported or cannot
                decode this stream here.
        """
        return self.backend_class().create(config, output, num_threads=num_threads)
