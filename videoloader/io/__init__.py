"""Tracked byte-range I/O over any fsspec filesystem.

``RangeSource`` reads batches of byte ranges (coalesced, concurrent, retried,
checked) and records every request as a ``TransferRecord`` in a thread-safe
``TransferStats``. ``redact_url`` makes URLs safe to log and
``install_log_redaction`` keeps fsspec's, aiohttp's and urllib3's DEBUG logs
free of signed URLs. This package never
imports torch or av.
"""

from __future__ import annotations

from ._coalesce import COALESCE_GAP_BYTES
from ._file import RangeFile
from ._redact import install_log_redaction, redact_text, redact_url
from ._retry import RetryPolicy
from ._source import READ_AHEAD_BYTES, RangeSource
from ._stats import TransferRecord, TransferStats

__all__ = [
    "COALESCE_GAP_BYTES",
    "READ_AHEAD_BYTES",
    "RangeFile",
    "RangeSource",
    "RetryPolicy",
    "TransferRecord",
    "TransferStats",
    "install_log_redaction",
    "redact_text",
    "redact_url",
]
