"""Decoder backends behind one contract, picked per platform.

A backend is one module: a :class:`DecoderBackend` subclass, its probe, and
a :class:`BackendSpec` naming both. Importing this package loads no decoder
library: specs are imported on first use (see ``_registry``), and third
parties add backends with :func:`register_backend`.
"""

from ._base import BackendSpec, DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig
from ._platform import platform_info
from ._registry import (
    backend_availability,
    backend_names,
    get_backend_class,
    register_backend,
    resolve_backend,
    select_backend,
)

__all__ = [
    "BackendSpec",
    "DecodedFrame",
    "DecoderBackend",
    "OutputSpec",
    "Packet",
    "StreamConfig",
    "backend_availability",
    "backend_names",
    "get_backend_class",
    "platform_info",
    "register_backend",
    "resolve_backend",
    "select_backend",
]
