"""A local, bandwidth-tracking HTTP proxy for decoders that only take a URL.

::

    from videoloader.proxy import TrackingProxy

    with TrackingProxy() as proxy:
        url = proxy.url_for("https://host/v.mp4?signature=...")
        av.open(url)                      # any FFmpeg-based reader
        print(proxy.stats()["upstream_bytes"])

Every HEAD and Range GET the decoder makes becomes validated, retried,
recorded range reads through ``videoloader.io.RangeSource``; ``stats()`` (and
``GET /v1/stats``) give upstream (origin) and downstream (decoder) bytes,
waste and one record per request. The proxy listens on loopback by default
and its paths carry an unguessable token; the origin URL never appears in
the proxy URL, the logs or the records. See docs/perfect_reads.md.
"""

from __future__ import annotations

from typing import Any

from ..serve._thread import BackgroundServer
from ._app import ProxyRecord, ProxyState, make_proxy_app

__all__ = ["ProxyRecord", "ProxyState", "TrackingProxy", "make_proxy_app"]


class TrackingProxy:
    """The proxy served from a background thread for the life of a ``with`` block.

    Args:
        host: address to listen on (loopback by default: the proxy reads
            origins with your credentials, so do not expose it).
        port: port to listen on (0: a free one).
        storage_options: RangeSource options for every origin (headers, auth...).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, storage_options: dict[str, Any] | None = None):
        self.state = ProxyState(storage_options)
        self._server = BackgroundServer(make_proxy_app(self.state), host=host, port=port)
        self._started = False

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running proxy."""
        return self._server.base_url

    def start(self) -> TrackingProxy:
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def url_for(self, url: str, storage_options: dict[str, Any] | None = None) -> str:
        """A loopback URL that serves ``url`` through the proxy (any FFmpeg-based reader can open it)."""
        self.start()
        return self.base_url + self.state.register(url, storage_options)

    def usage(self, url: str) -> dict[str, int]:
        """Totals of one URL that ``url_for`` returned (see :meth:`ProxyState.usage`)."""
        return self.state.usage(url.removeprefix(self.base_url))

    def stats(self) -> dict[str, Any]:
        """Totals (``upstream_bytes``, ``downstream_bytes``, ``wasted_bytes``, ``num_requests``,
        ``upstream_requests``) and ``records``, URLs redacted; same JSON as ``GET /v1/stats``."""
        return self.state.stats()

    def close(self) -> None:
        if self._started:
            self._server.close()
            self._started = False
        self.state.close()

    def __enter__(self) -> TrackingProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
