"""URL redaction: what is safe to log, put in records and in exception messages."""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact_text", "redact_url"]

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
    parts = _split_chain(url)
    if len(parts) > 1:
        return "::".join(redact_url(part) for part in parts)
    if "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
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
