"""URL redaction: what is safe to log, put in records and in exception messages."""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, TypedDict

__all__ = [
    "LOGGERS_TO_REDACT",
    "RedactingFilter",
    "install_log_redaction",
    "redact_log_text",
    "redact_text",
    "redact_url",
    "remove_log_redaction",
]

LOGGERS_TO_REDACT = ("fsspec", "aiohttp", "urllib3", "botocore", "s3fs", "gcsfs", "videoloader")
"""Loggers (and their children) whose records ``install_log_redaction`` cleans by default."""

# Anything that looks like "scheme://..." inside free text (an exception message from a library).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>)]+")


def redact_url(url: str) -> str:
    """Return ``url`` without credentials, query string or fragment.

    Signed URLs carry their secret in the query string (``X-Amz-Signature``,
    ``sig=``, ``token=``) or in the user-info part (``user:password@``); neither
    may reach a log line, a ``TransferRecord`` or an exception message. Chained
    fsspec URLs (``simplecache::s3://...``) are redacted link by link. A plain
    local path (no ``scheme://``) is returned unchanged.

    Args:
        url: a URL or a local path.

    Returns:
        ``scheme://host[:port]/path`` for URLs, ``url`` itself for local paths.

    Example::

        >>> redact_url("https://user:pw@cdn.example.com/v.mp4?X-Amz-Signature=abc#t=3")
        'https://cdn.example.com/v.mp4'
    """
    url = str(url)
    links = _split_chain(url)
    if len(links) > 1:
        return "::".join(redact_url(link) for link in links)
    if "://" not in url:
        return url
    try:
        split = urllib.parse.urlsplit(url)
        netloc = split.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit((split.scheme, netloc, split.path, "", ""))
    except ValueError:  # malformed (bad port, bad IPv6 literal): cut by hand
        scheme, _, rest = url.partition("://")
        rest = re.split(r"[?#]", rest, maxsplit=1)[0]
        host, slash, path = rest.partition("/")
        return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"


def _split_chain(url: str) -> list[str]:
    """Split an fsspec chain ``a::b::c`` on ``::`` outside IPv6 brackets (``http://[::1]/``)."""
    parts, depth, begin, i = [], 0, 0, 0
    while i < len(url):
        c = url[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth = max(0, depth - 1)
        elif depth == 0 and url.startswith("::", i):
            parts.append(url[begin:i])
            begin = i = i + 2
            continue
        i += 1
    parts.append(url[begin:])
    return parts


def redact_text(text: str) -> str:
    """Redact every URL found inside free text (e.g. a library's exception message)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), str(text))


# A request line inside a log message ("GET /v.mp4?X-Amz-Signature=... HTTP/1.1", as
# urllib3 logs it, with the host printed apart): the query of the path is cut too.
_PATH_QUERY = re.compile(r"(?<![\w/])(/[^\s?#'\"<>]*)[?#][^\s'\"<>]*")


def redact_log_text(text: str) -> str:
    """``redact_text`` plus the query of bare request paths (``GET /v.mp4?sig=...``)."""
    return _PATH_QUERY.sub(lambda m: m.group(1), redact_text(text))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URLs in a record's message and exception text.

    Attach it to a handler to clean everything that handler writes
    (``handler.addFilter(RedactingFilter())``); ``install_log_redaction`` cleans
    chosen loggers' records at creation instead, whatever the handlers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string: leave it to the handler to complain
        return
    record.msg, record.args = redact_log_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_log_text(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact_log_text(record.exc_text)
    record.exc_info = None
    if record.stack_info:
        record.stack_info = redact_log_text(record.stack_info)


class _Installed(TypedDict, total=False):
    previous: Callable[..., logging.LogRecord]  # the record factory we wrapped
    factory: Callable[..., logging.LogRecord]  # ours
    prefixes: tuple[str, ...]  # logger names whose records are redacted


_install_lock = threading.Lock()
_installed: _Installed = {}


def install_log_redaction(names: Iterable[str] = LOGGERS_TO_REDACT) -> None:
    """Redact URLs (user-info, query strings) in every record of the ``names`` loggers and their children.

    fsspec, aiohttp and urllib3 log full request URLs at DEBUG, signed query
    strings included; a command run with ``--log-level DEBUG`` would print
    them. This wraps the log record factory, so records are cleaned when made,
    before any handler (or a child logger's propagation) sees them; records of
    other loggers are untouched. Idempotent; ``remove_log_redaction`` undoes it.

    Args:
        names: logger names whose records (and their children's) are redacted.
    """
    prefixes = tuple(str(n) for n in names)
    with _install_lock:
        if "previous" not in _installed:
            previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                current = _installed.get("prefixes", ())
                name = record.name
                if any(name == p or name.startswith(p + ".") for p in current):
                    _redact_record(record)
                return record

            _installed["previous"] = previous
            _installed["factory"] = factory
            logging.setLogRecordFactory(factory)
        _installed["prefixes"] = tuple(sorted(set(_installed.get("prefixes", ())) | set(prefixes)))


def remove_log_redaction() -> None:
    """Undo ``install_log_redaction`` (if another factory was installed on top since, it stays inert)."""
    with _install_lock:
        previous = _installed.pop("previous", None)
        factory = _installed.pop("factory", None)
        _installed.pop("prefixes", None)
        if previous is not None and logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)
