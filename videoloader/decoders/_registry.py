"""Decoder backends by name, their availability, and ``backend="auto"``.

Each backend describes itself with a :class:`BackendSpec` defined next to it
(its module's ``SPEC``). The built-in ones are known here only as
``"module:SPEC"`` strings, so ``import videoloader`` imports no decoder
library; a spec is loaded the first time its backend is asked about. Third
parties add theirs with :func:`register_backend`.

Whether a backend can run here is probed once per process
(:func:`backend_availability`); tests fake it by monkeypatching
:func:`probe_backend` (or by passing ``availability=`` to :func:`resolve_backend`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping

from .._errors import BackendUnavailableError
from ._base import BackendSpec, DecoderBackend, StreamConfig, load_target

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


def select_backend(backend: str, config: StreamConfig) -> BackendSpec:
    """The backend to decode ``config``'s stream with, probed once per process.

    ``"auto"`` takes the available backend of highest priority that decodes
    ``config.codec`` here (hardware first, the CPU last) and logs at INFO why
    better ones were passed over. An explicitly named backend must be
    available and decode the codec.

    Args:
        backend: ``"auto"`` or a registered name (see :func:`backend_names`).
        config: the stream; only ``codec`` is used.

    Raises:
        ValueError: unknown backend name.
        BackendUnavailableError: the named backend cannot run here or cannot
            decode the codec, or (``"auto"``) none can; the message says why
            and how to fix it.
    """
    return _choose(backend, config.codec, backend_availability(), _codec_cached)


def resolve_backend(
    name: str,
    codec: str,
    *,
    availability: Mapping[str, tuple[bool, str]] | None = None,
) -> str:
    """The name :func:`select_backend` picks for ``codec``.

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


def _choose(
    name: str,
    codec: str,
    avail: Mapping[str, tuple[bool, str]],
    check: Callable[[str, str], tuple[bool, str]],
) -> BackendSpec:
    if name == "auto":
        return _choose_auto(codec, avail, check)
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
    return spec


def _choose_auto(
    codec: str, avail: Mapping[str, tuple[bool, str]], check: Callable[[str, str], tuple[bool, str]]
) -> BackendSpec:
    status = {n: avail.get(n, (False, "not probed")) for n in _REGISTRY}
    passed_over = [(n, why) for n, (ok, why) in status.items() if not ok]
    # sorted() is stable: equal priorities keep registration order.
    candidates = sorted((get_spec(n) for n, (ok, _) in status.items() if ok), key=lambda s: -s.priority)
    for spec in candidates:
        ok, why = check(spec.name, codec)
        if ok:
            better = [f"{n} ({why})" for n, why in passed_over if _priority(n) > spec.priority]
            if better:
                _log_once(f"backend='auto' decodes {codec} with {spec.name}; passed over {'; '.join(better)}")
            return spec
        passed_over.append((spec.name, why))
    hint = _fallback_hint(codec)
    reasons = "; ".join(f"{n}: {why}" for n, why in passed_over)
    raise BackendUnavailableError(
        f"no decoder backend can decode {codec!r} here ({reasons})" + (f"; fix: {hint}" if hint else "")
    )


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


def _log_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.info(message)
