"""An aiohttp access logger that never writes a query string or a path secret.

aiohttp's default access log line holds ``path?query``: for the perfect-reads
server the query is the origin URL (often signed), for the proxy the path
holds its access token. This logger writes the route template instead
(``/v1/clip.mp4``, ``/p/{token}/{name}``), the status, the body size and the time.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

__all__ = ["RedactedAccessLogger"]


class RedactedAccessLogger(AbstractAccessLogger):
    """``METHOD ROUTE STATUS BYTES SECONDS`` per request, no query, no path parameters."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        route = "-"
        match = getattr(request, "match_info", None)
        if match is not None and match.route.resource is not None:
            route = match.route.resource.canonical
        self.logger.info("%s %s %s %s %.3fs", request.method, route, response.status, response.body_length, time)
