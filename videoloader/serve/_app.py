"""The perfect-reads aiohttp application: ``/v1/clip.mp4`` and ``/v1/index``.

Each request opens a RangeSource on the origin (validated, retried, recorded
range reads, through a connector whose resolver enforces the origin policy),
takes the index from the shared cache or builds it, and answers. Blocking
work runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .._errors import ContainerError, OriginRefusedError, SourceError
from ..io import RangeSource, redact_url
from ..io._loop import run_sync
from ._clip import ClipTooLarge, VideoCache, build_clip, frames_at_times, open_video
from ._guard import OriginPolicy, guarded_client_kwargs, is_refusal

__all__ = ["ServeSettings", "make_app"]

logger = logging.getLogger("videoloader.serve")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and origin rules of a perfect-reads server.

    Args:
        allow_hosts: ``fnmatch`` patterns of origin hosts (empty: any host).
        allow_private: allow origins on private / loopback / link-local addresses.
        deny_networks: CIDR networks always refused (on top of the default rules).
        max_frames: most frames one clip request may name (413 above).
        max_response_bytes: most sample bytes one clip may hold (413 above).
        cache_dir: folder for an on-disk index cache (None: memory only).
        cache_entries: indexes kept in memory.
    """

    allow_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    deny_networks: tuple[str, ...] = ()
    max_frames: int = 256
    max_response_bytes: int = 512 * 1024 * 1024
    cache_dir: str | None = None
    cache_entries: int = 256


_SETTINGS = web.AppKey("settings", ServeSettings)
_STATE = web.AppKey("state", dict)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": kind, "status": status, "message": message}, status=status)


class _BadRequest(Exception):
    pass


def _query_url(request: web.Request) -> str:
    urls = request.query.getall("url", [])
    if len(urls) != 1 or not urls[0]:
        raise _BadRequest("give exactly one url= parameter")
    return urls[0]


def _numbers(request: web.Request, name: str, kind: type) -> list[Any]:
    out = []
    for raw in request.query.getall(name, []):
        try:
            value = kind(raw)
        except ValueError:
            raise _BadRequest(f"{name}={raw!r} is not a number") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _BadRequest(f"{name}={raw!r} is not a finite time")
        out.append(value)
    return out


async def _source(request: web.Request, url: str) -> RangeSource:
    settings = request.app[_SETTINGS]
    state = request.app[_STATE]
    policy: OriginPolicy = state["policy"]
    await policy.check_url(url)
    kwargs = state.get("client_kwargs")
    if kwargs is None:
        kwargs = state["client_kwargs"] = await asyncio.to_thread(guarded_client_kwargs, policy)
    del settings
    return RangeSource(url, storage_options={"client_kwargs": kwargs})


def _failure(e: BaseException) -> web.Response:
    """The JSON error reply for an exception from the origin, the index or the request."""
    if isinstance(e, _BadRequest):
        return _error(400, "bad_request", str(e))
    if isinstance(e, IndexError):
        return _error(400, "bad_request", str(e))
    if isinstance(e, ClipTooLarge):
        return _error(413, "too_large", str(e))
    if isinstance(e, OriginRefusedError):
        return _error(403, "refused", str(e))
    if is_refusal(e):
        return _error(403, "refused", f"refused by the server's origin policy: {e}")
    if isinstance(e, ContainerError):
        return _error(422, "unsupported", str(e))
    if isinstance(e, SourceError):
        return _error(502, "origin_failed", str(e))
    logger.error("perfect-reads request failed: %s", type(e).__name__)
    return _error(500, "internal", f"internal error ({type(e).__name__})")


async def _index(request: web.Request) -> web.Response:
    cache: VideoCache = request.app[_STATE]["cache"]
    try:
        url = _query_url(request)
        source = await _source(request, url)
        try:
            video, cached = await asyncio.to_thread(open_video, source, cache)
            upstream = source.stats.bytes_received
        finally:
            source.close()
    except Exception as e:
        return _failure(e)
    body = video.summary(redact_url(url))
    body["cached"] = cached
    return web.json_response(body, headers={"X-Videoloader-Upstream-Bytes": str(upstream)})


async def _clip(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS]
    cache: VideoCache = request.app[_STATE]["cache"]
    try:
        url = _query_url(request)
        times = _numbers(request, "t", float)
        indices = _numbers(request, "i", int)
        if bool(times) == bool(indices):
            raise _BadRequest("give frame times (t=SECONDS, repeated) or frame indices (i=INDEX, repeated), not both")
        count = len(times) or len(indices)
        if count > settings.max_frames:
            raise ClipTooLarge(f"{count} frames asked, this server's limit is {settings.max_frames}")
        source = await _source(request, url)
        try:
            video, _cached = await asyncio.to_thread(open_video, source, cache)
            index = video.index
            frames = frames_at_times(index, times) if times else indices
            for f in frames:
                if not 0 <= f < index.num_frames:
                    raise IndexError(f"frame index {f} is out of range for a video of {index.num_frames} frames")
            body = await asyncio.to_thread(build_clip, source, video, frames, max_bytes=settings.max_response_bytes)
            upstream = source.stats.bytes_received
        finally:
            source.close()
    except Exception as e:
        return _failure(e)
    pts = [float(index.pts[index.frame_to_sample[f]]) / index.timescale for f in frames]
    headers = {
        "X-Videoloader-Upstream-Bytes": str(upstream),
        "X-Videoloader-Frames": json.dumps(pts),
        "Content-Disposition": 'inline; filename="clip.mp4"',
    }
    return web.Response(body=body, content_type="video/mp4", headers=headers)


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _close_connector(app: web.Application) -> None:
    kwargs = app[_STATE].get("client_kwargs")
    if kwargs is not None:
        connector = kwargs["connector"]

        async def close() -> None:
            await connector.close()

        await asyncio.to_thread(run_sync, close())


def make_app(settings: ServeSettings | None = None, **overrides: Any) -> web.Application:
    """The perfect-reads server as an aiohttp Application.

    Args:
        settings: limits and origin rules (defaults: public origins only).
        **overrides: ServeSettings fields to change, e.g. ``allow_private=True``.

    Returns:
        An app serving ``GET /v1/clip.mp4``, ``GET /v1/index`` and ``GET /v1/health``.
    """
    if settings is None:
        settings = ServeSettings(**overrides)
    elif overrides:
        settings = ServeSettings(**{**settings.__dict__, **overrides})
    app = web.Application()
    app[_SETTINGS] = settings
    app[_STATE] = {
        "policy": OriginPolicy(
            allow_hosts=tuple(settings.allow_hosts),
            allow_private=settings.allow_private,
            deny_networks=tuple(settings.deny_networks),
        ),
        "cache": VideoCache(max_entries=settings.cache_entries, directory=settings.cache_dir),
    }
    app.on_cleanup.append(_close_connector)
    app.router.add_get("/v1/clip.mp4", _clip)
    app.router.add_get("/v1/index", _index)
    app.router.add_get("/v1/health", _health)
    return app
