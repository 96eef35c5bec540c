"""Decoder backends by name, their availability, and ``backend="auto"``.

Each backend describes itself with a :class:`BackendSpec` defined next to it
(its module's ``SPEC``). The built-in ones are known here only as
``"module:SPEC"`` strings, so ``import videoloader`` imports no decoder
library; a spec is loaded the first time its backend is asked about. Third
parties add theirs with :func:`register_backend`.

Whether a backend can run here is probed once per process
(:func:`backend_availability`); tests fake it by monkeypatching
:func:`probe_backend` (or by passing ``availability=`` to :func:`resolve_backend`).

Devices, as in torchcodec: ``device="cuda"`` (or ``"cuda:N"``) asks for GPU
decoding, so ``backend="auto"`` picks NVDEC on that GPU; with frames wanted on
the CPU (the reader's default) ``auto`` picks only backends that return CPU
tensors. A backend that decodes on the CPU with frames wanted elsewhere (an
explicit ``backend="cpu"`` with ``device="cuda:0"``, or ``auto`` falling back
to the CPU) decodes on the CPU and returns its frames **on the requested
device** (:class:`~._ondevice.OnDeviceSpec`). Two optional class attributes
of a backend class take part: ``output_device_type`` (``"cuda"`` for NVDEC;
default ``"cpu"``) and ``stream_supported(config, output) -> (ok, reason)``,
asked before the backend is chosen for a stream (NVDEC's ``GetDecoderCaps``
check); ``auto`` falls back with a warning when it says no, an explicitly
named backend raises ``BackendUnavailableError`` naming the reason.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping

from .._errors import BackendUnavailableError
from ._base import BackendSpec, DecoderBackend, OutputSpec, StreamConfig, load_target
from ._ondevice import OnDeviceSpec

__all__ = [
    "BackendSpec",
    "backend_availability",
    "backend_names",
    "codec_supported",
    "get_backend_class",
    "get_spec",
    "probe_backend",
    "register_backend",
    "resolve_backend",
    "select_backend",
]

log = logging.getLogger("videoloader.decoders")

# The built-in backends: the one place their names are listed.
_REGISTRY: dict[str, BackendSpec | str] = {
    "cpu": "videoloader.decoders._pyav:SPEC",
    "nvdec": "videoloader.decoders._nvdec:SPEC",
    "videotoolbox": "videoloader.decoders._videotoolbox:SPEC",
}
_LOCK = threading.Lock()
_LOGGED: set[str] = set()


def backend_names() -> list[str]:
    """Names of every registered backend (what ``backend=`` accepts besides ``"auto"``), without importing any."""
    return list(_REGISTRY)


def register_backend(spec: BackendSpec, *, replace: bool = False) -> None:
    """Make a decoder backend available by name, and to ``backend="auto"``.

    Registration imports nothing: the backend's module is imported when the
    backend is first probed or used. Register at import time of your package
    so that DataLoader workers started with ``spawn`` have it too.

    Args:
        spec: the backend's description.
        replace: allow replacing a backend registered under the same name.

    Raises:
        TypeError: ``spec`` is not a BackendSpec.
        ValueError: the name is taken and ``replace`` is false.
    """
    if not isinstance(spec, BackendSpec):
        raise TypeError(f"register_backend() takes a BackendSpec, got {type(spec).__name__}")
    with _LOCK:
        if spec.name in _REGISTRY and not replace:
            raise ValueError(
                f"a decoder backend named {spec.name!r} is already registered; pass replace=True to replace it"
            )
        _REGISTRY[spec.name] = spec
    _forget_probes()


def get_spec(name: str) -> BackendSpec:
    """The spec registered under ``name``, importing its module if needed.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the module defining the spec cannot be imported.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown decoder backend {name!r}; expected 'auto' or one of {sorted(_REGISTRY)}")
    if isinstance(entry, BackendSpec):
        return entry
    try:
        spec = load_target(entry)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailableError(f"decoder backend {name!r} cannot be loaded from {entry} ({e})") from e
    if not isinstance(spec, BackendSpec) or spec.name != name:
        raise TypeError(f"{entry} is not the BackendSpec of a backend named {name!r}")
    with _LOCK:
        if _REGISTRY.get(name) == entry:
            _REGISTRY[name] = spec
    return spec


def get_backend_class(name: str) -> type[DecoderBackend]:
    """Import and return the backend class registered under ``name``.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the backend's module or its dependency is
            missing (the message says what to install).
    """
    return get_spec(name).backend_class()


# ------------------------------------------------------------------------- availability


def probe_backend(name: str) -> tuple[bool, str]:
    """Probe one backend now (uncached). Tests monkeypatch this function.

    Returns:
        ``(available, reason)``; reason says what was found or what is missing.
    """
    try:
        spec = get_spec(name)
    except ValueError:
        return False, f"unknown backend {name!r}"
    except Exception as e:
        return False, str(e)
    return spec.available()


@functools.cache
def _cached(name: str) -> tuple[bool, str]:
    return probe_backend(name)


def backend_availability(*, refresh: bool = False) -> dict[str, tuple[bool, str]]:
    """``{name: (available, reason)}`` for every registered backend, probed once per process.

    Args:
        refresh: forget earlier probes (after installing a package, or in tests).
    """
    if refresh:
        _forget_probes()
    return {name: _cached(name) for name in list(_REGISTRY)}


def _forget_probes() -> None:
    _cached.cache_clear()
    _codec_cached.cache_clear()
    _LOGGED.clear()


@functools.cache
def _codec_cached(name: str, codec: str) -> tuple[bool, str]:
    return codec_supported(name, codec)


def codec_supported(name: str, codec: str) -> tuple[bool, str]:
    """Whether the backend ``name``, once available, decodes ``codec`` here (uncached)."""
    return get_spec(name).supports(codec)


# ---------------------------------------------------------------------------- selection


def select_backend(backend: str, config: StreamConfig, output: OutputSpec | None = None) -> BackendSpec:
    """The backend to decode ``config``'s stream with, probed once per process.

    ``"auto"`` takes the available backend of highest priority that decodes
    this stream here (hardware first, the CPU last) and logs why better ones
    were passed over: at WARNING when it falls back to the CPU although GPU
    decoding was asked for (``output.device`` on CUDA) or a hardware backend
    refused the stream, at INFO otherwise. An explicitly named backend must
    be available and decode the stream.

    Args:
        backend: ``"auto"`` or a registered name (see :func:`backend_names`).
        config: the stream (codec, size, configuration record).
        output: where frames are wanted. None: anywhere (no device rule).
            ``device="cuda[:N]"``: ``auto`` prefers NVDEC on that GPU. A CPU
            device: ``auto`` skips backends that return CUDA tensors. When
            the chosen backend returns CPU tensors but frames are wanted on
            another device, the returned spec's decoders copy each frame there.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the named backend cannot run here or cannot
            decode the stream, or (``"auto"``) none can; the message says why
            and how to fix it.
    """
    spec = _choose(backend, config.codec, backend_availability(), _codec_cached, config=config, output=output)
    want = _device_type(output)
    if want is not None and want != "cpu" and _output_device_type(spec) == "cpu":
        assert output is not None
        return OnDeviceSpec.wrap(spec, output.device)
    return spec


def resolve_backend(
    name: str,
    codec: str,
    *,
    availability: Mapping[str, tuple[bool, str]] | None = None,
) -> str:
    """The name :func:`select_backend` picks for ``codec`` (no stream or device rule).

    Args:
        name: ``"auto"`` or a registered name.
        codec: FFmpeg codec family (``h264``, ``hevc``, ``av1``, ``vp9``...).
        availability: override of :func:`backend_availability` (tests,
            ``platform_info``); codec support is then checked uncached.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: as for :func:`select_backend`.
    """
    if availability is None:
        return _choose(name, codec, backend_availability(), _codec_cached).name
    return _choose(name, codec, dict(availability), codec_supported).name


def _device_type(output: OutputSpec | None) -> str | None:
    """``"cuda"`` for ``"cuda:1"``; None when no output was given."""
    if output is None:
        return None
    return str(output.device or "cpu").split(":", 1)[0]


def _output_device_type(spec: BackendSpec) -> str:
    """Where the backend's tensors live (its class's ``output_device_type``, default ``"cpu"``)."""
    try:
        return str(getattr(spec.backend_class(), "output_device_type", "cpu"))
    except Exception:
        return "cpu"


def _stream_check(spec: BackendSpec, config: StreamConfig, output: OutputSpec | None) -> tuple[bool, str]:
    """The backend class's ``stream_supported(config, output)``, if it has one; never raises."""
    try:
        check = getattr(spec.backend_class(), "stream_supported", None)
        if check is None:
            return True, ""
        ok, why = check(config, output)
        return bool(ok), str(why)
    except Exception as e:
        return False, f"stream check failed: {type(e).__name__}: {e}"


def _choose(
    name: str,
    codec: str,
    avail: Mapping[str, tuple[bool, str]],
    check: Callable[[str, str], tuple[bool, str]],
    *,
    config: StreamConfig | None = None,
    output: OutputSpec | None = None,
) -> BackendSpec:
    if name == "auto":
        return _choose_auto(codec, avail, check, config, output)
    spec = get_spec(name)
    ok, why = avail.get(name, (False, "not probed"))
    if not ok:
        raise BackendUnavailableError(
            f"decoder backend {name!r} is unavailable: {why}. Fix: {spec.install_hint}; "
            f"or pass backend='auto' to decode on what this machine has."
        )
    ok, why = check(name, codec)
    if not ok:
        raise BackendUnavailableError(
            f"decoder backend {name!r} cannot decode {codec!r} here: {why}. Pass backend='auto' for this video."
        )
    if config is not None:
        ok, why = _stream_check(spec, config, output)
        if not ok:
            raise BackendUnavailableError(
                f"decoder backend {name!r} cannot decode this {codec} stream here: {why}. "
                f"Pass backend='auto' (or 'cpu') for this video."
            )
    return spec


def _choose_auto(
    codec: str,
    avail: Mapping[str, tuple[bool, str]],
    check: Callable[[str, str], tuple[bool, str]],
    config: StreamConfig | None,
    output: OutputSpec | None,
) -> BackendSpec:
    want = _device_type(output)
    status = {n: avail.get(n, (False, "not probed")) for n in _REGISTRY}
    # (name, reason, worth a warning): a hardware backend refusing this stream, or
    # GPU decoding asked for and not had, is a warning; the rest is routine.
    passed_over = [(n, why, False) for n, (ok, why) in status.items() if not ok]
    # sorted() is stable: equal priorities keep registration order.
    candidates = sorted((get_spec(n) for n, (ok, _) in status.items() if ok), key=lambda s: -s.priority)
    for spec in candidates:
        ok, why = check(spec.name, codec)
        if not ok:
            passed_over.append((spec.name, why, False))
            continue
        have = _output_device_type(spec) if want is not None else None
        if have is not None and have != "cpu" and have != want:
            passed_over.append((spec.name, f"returns {have} tensors and frames are wanted on {want}", False))
            continue
        if config is not None:
            ok, why = _stream_check(spec, config, output)
            if not ok:
                passed_over.append((spec.name, why, True))
                continue
        _report_fallback(codec, spec, passed_over, want)
        return spec
    hint = _fallback_hint(codec)
    reasons = "; ".join(f"{n}: {why}" for n, why, _ in passed_over)
    raise BackendUnavailableError(
        f"no decoder backend can decode {codec!r} here ({reasons})" + (f"; fix: {hint}" if hint else "")
    )


def _report_fallback(
    codec: str, chosen: BackendSpec, passed_over: list[tuple[str, str, bool]], want: str | None
) -> None:
    better = [(n, why, warn) for n, why, warn in passed_over if _priority(n) > chosen.priority]
    if not better:
        return
    # GPU decoding was asked for and the frames will be decoded on the CPU.
    gpu_missed = want == "cuda" and _output_device_type(chosen) != "cuda"
    listing = "; ".join(f"{n} ({why})" for n, why, _ in better)
    message = f"backend='auto' decodes {codec} with {chosen.name}; passed over {listing}"
    if gpu_missed or any(warn for _, _, warn in better):
        _log_once(message + " (decoding on the CPU instead)", level=logging.WARNING)
    else:
        _log_once(message)


def _priority(name: str) -> int:
    """A backend's priority, or -1 where its spec cannot be loaded."""
    try:
        return get_spec(name).priority
    except Exception:
        return -1


def _fallback_hint(codec: str) -> str:
    """Install hint of the most portable backend (lowest priority) that may decode ``codec``."""
    specs = []
    for n in _REGISTRY:
        try:
            specs.append(get_spec(n))
        except Exception:
            continue
    listing = [s for s in specs if not s.codecs or codec in s.codecs] or specs
    return min(listing, key=lambda s: s.priority).install_hint if listing else ""


def _log_once(message: str, level: int = logging.INFO) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.log(level, message)
