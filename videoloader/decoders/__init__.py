"""Decoder backends behind one interface, picked per platform.

Importing this package loads no decoder library: backends are registered as
``"module:Class"`` and imported on first use (see ``_registry``).
"""

from ._base import DecodedFrame, DecoderBackend, OutputSpec, Packet, StreamConfig
from ._registry import backend_availability, get_backend_class, platform_info, resolve_backend

__all__ = [
    "DecodedFrame",
    "DecoderBackend",
    "OutputSpec",
    "Packet",
    "StreamConfig",
    "backend_availability",
    "get_backend_class",
    "platform_info",
    "resolve_backend",
]
