"""Log levels and redaction for the job and the command, read from ``LOGGER_LEVEL``.

fsspec and aiohttp log raw URLs (a signed URL's token, ``user:password@``) at
DEBUG; everything here makes sure such records are redacted before any
handler writes them.
"""

from __future__ import annotations

import logging
import os
import sys

from ..io import install_log_redaction
from ..io._redact import RedactingFilter

__all__ = ["apply_log_level_from_env", "configure_command_logging"]


def apply_log_level_from_env(logger_name: str = "videoloader") -> None:
    """Set the ``videoloader`` logger's level from ``LOGGER_LEVEL`` (e.g. ``DEBUG``, ``INFO``), if set."""
    level = os.environ.get("LOGGER_LEVEL")
    if level:
        logging.getLogger(logger_name).setLevel(level.strip().upper())


def configure_command_logging() -> None:
    """Log to stderr at ``LOGGER_LEVEL`` (default WARNING), every URL redacted.

    Records of fsspec, aiohttp and our own loggers are redacted when made
    (``install_log_redaction``), and every root handler gets a
    ``RedactingFilter`` for the records of any other logger. As
    ``logging.basicConfig``, a handler is added only when the root has none.
    """
    level = os.environ.get("LOGGER_LEVEL", "WARNING").strip().upper()
    install_log_redaction()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "WARNING",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    apply_log_level_from_env()
