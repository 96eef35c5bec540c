"""Videos already in memory (``bytes``, a uint8 tensor) as a source ``RangeSource`` reads."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["in_memory_source"]


def in_memory_source(source: Any) -> Any:
    """``bytes``, ``bytearray``, ``memoryview`` or a 1-D uint8 tensor become a
    seekable in-memory file; any other source is returned as it is.

    The bytes are copied once (a tensor may live on a device or be changed
    later); reading them then costs no I/O and records no network bytes.

    Raises:
        ValueError: a tensor that is not 1-D uint8.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if type(source).__module__.startswith("torch") and hasattr(source, "dtype") and hasattr(source, "ndim"):
        import torch

        if source.dtype != torch.uint8 or source.ndim != 1:
            raise ValueError(
                f"a tensor source must be the encoded file as a 1-D uint8 tensor, got {source.dtype} "
                f"of shape {tuple(source.shape)}"
            )
        return io.BytesIO(source.detach().cpu().numpy().tobytes())
    return source
