"""Following HTTP redirects ourselves, so credentials never travel to another origin.

aiohttp follows redirects on its own but only strips ``Authorization`` (and,
in recent versions, ``Cookie``) when the origin changes; custom credential
headers such as ``X-Api-Key`` from ``storage_options["headers"]`` would still
reach the other host. Here every hop is one request with
``allow_redirects=False``; once a hop changes scheme, host or port, the rest
of the chain is sent with only our own headers (``Range``,
``Accept-Encoding``): every user header, ``auth`` and ``cookies`` are dropped
unless the caller opted in with ``forward_headers_on_redirect=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import SourceError

if TYPE_CHECKING:  # pragma: no cover - aiohttp and yarl are imported lazily
    from aiohttp import ClientResponse, ClientSession, ClientTimeout
    from yarl import URL

__all__ = ["MAX_REDIRECTS", "OWN_OPTIONS", "REDIRECT_STATUSES", "Redirects", "fsspec_options", "origin"]

MAX_REDIRECTS = 10
"""Hops followed before giving up (a loop or a misconfigured CDN)."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
OWN_OPTIONS = frozenset({"forward_headers_on_redirect"})
"""``storage_options`` keys that are ours, not fsspec's (fsspec would pass them on to aiohttp)."""
# Request options that carry credentials for the origin (not for a proxy).
_CREDENTIAL_OPTIONS = ("auth", "cookies")


def fsspec_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``storage_options`` without our own keys, safe to hand to ``fsspec.open`` / ``url_to_fs``."""
    return {k: v for k, v in (storage_options or {}).items() if k not in OWN_OPTIONS}


def origin(url: str | URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL (a str or a ``yarl.URL``); the port defaults by scheme."""
    from yarl import URL

    u = url if isinstance(url, URL) else URL(str(url))
    return (u.scheme or "").lower(), (u.host or "").lower(), u.port


class Redirects:
    """Sends one request and follows its redirects, stripping credentials across origins.

    Args:
        url: the URL asked for (may hold secrets: never put it in a message).
        redacted: the same URL, safe for messages.
        user_headers: headers from ``storage_options`` (all dropped on a cross-origin hop).
        request_kwargs: other aiohttp request options (``auth`` and ``cookies``
            are dropped on a cross-origin hop; ``ssl``, ``proxy`` kept).
        forward: keep everything on cross-origin hops (the caller opted in).
    """

    def __init__(
        self,
        url: str,
        *,
        redacted: str,
        user_headers: Mapping[str, str],
        request_kwargs: Mapping[str, Any],
        forward: bool,
    ) -> None:
        self._url = url
        self._redacted = redacted
        self._user_headers = dict(user_headers)
        self._kwargs = dict(request_kwargs)
        self._stripped_kwargs = {k: v for k, v in self._kwargs.items() if k not in _CREDENTIAL_OPTIONS}
        self._forward = forward

    async def send(
        self,
        session: ClientSession,
        method: str,
        own_headers: Mapping[str, str],
        timeout: ClientTimeout,
        counter: list[int],
    ) -> ClientResponse:
        """The final (non-redirect) ``ClientResponse``; the caller releases it.

        Args:
            session: the aiohttp session.
            method: ``GET`` or ``HEAD``.
            own_headers: our headers (``Range``, ``Accept-Encoding``), sent on every hop.
            timeout: an ``aiohttp.ClientTimeout`` for each hop.
            counter: ``counter[0]`` grows by the body bytes of every redirect reply read.

        Raises:
            SourceError: too many redirects, or a redirect to a non-HTTP URL.
        """
        from yarl import URL

        url: str | URL = self._url
        first = origin(url)
        with_credentials = True
        for _ in range(MAX_REDIRECTS + 1):
            headers = {**self._user_headers, **own_headers} if with_credentials else dict(own_headers)
            kwargs = self._kwargs if with_credentials else self._stripped_kwargs
            resp = await session.request(method, url, headers=headers, timeout=timeout, allow_redirects=False, **kwargs)
            location = resp.headers.get("Location")
            if resp.status not in REDIRECT_STATUSES or not location:
                return resp
            try:
                await _discard(resp, counter)
            finally:
                resp.release()
            try:
                target = resp.url.join(URL(location))
            except (ValueError, TypeError):
                target = None
            if target is None or target.scheme not in ("http", "https") or not target.host:
                raise SourceError(
                    f"{self._redacted}: HTTP {resp.status} redirects to a URL that is not http(s) or has no host; "
                    "only http(s) redirects are followed."
                )
            if with_credentials and not self._forward and origin(target) != first:
                with_credentials = False
            url = target
        raise SourceError(
            f"{self._redacted}: more than {MAX_REDIRECTS} HTTP redirects (a redirect loop?); "
            "point the URL at the object itself."
        )


async def _discard(resp: ClientResponse, counter: list[int]) -> None:
    """Read a redirect's (small) body so the connection can be reused, counting its bytes."""
    length = resp.content_length
    if length is not None and length > 64 * 1024:
        resp.close()
        return
    got = 0
    try:
        while got <= 64 * 1024:
            chunk = await resp.content.read(64 * 1024)
            if not chunk:
                return
            got += len(chunk)
        resp.close()
    except Exception:
        resp.close()
    finally:
        content = resp.content
        counter[0] += int(getattr(content, "total_raw_bytes", None) or getattr(content, "total_bytes", 0) or 0)
