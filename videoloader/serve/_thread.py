"""Run an aiohttp Application on its own event loop in a background thread.

``TrackingProxy`` uses it so a Python program (or a test) gets a live local
server inside a ``with`` block; the command-line servers run in the foreground
instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from aiohttp import web

from ._log import RedactedAccessLogger

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """``app`` served on ``host:port`` (port 0: a free one) from a daemon thread.

    Use as a context manager, or call ``start()`` / ``close()``.
    """

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "BackgroundServer is not started"
        return self._loop

    def start(self) -> BackgroundServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            runner = web.AppRunner(
                self._app,
                access_log_class=RedactedAccessLogger,
                access_log=logging.getLogger("videoloader.access"),
            )
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._runner = runner
            server: Any = site._server  # the bound socket tells the port actually used
            self.port = int(server.sockets[0].getsockname()[1])

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            except BaseException as e:  # reported to start()
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="videoloader-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def close(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or self._thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_forever(app: web.Application, *, host: str, port: int, banner: str) -> None:
    """Serve ``app`` in the foreground until interrupted, printing ``{banner} on http://HOST:PORT``
    (flushed) as the first line of stdout once the socket is bound."""
    import signal
    import sys

    async def main() -> None:
        runner = web.AppRunner(
            app, access_log_class=RedactedAccessLogger, access_log=logging.getLogger("videoloader.access")
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        server: Any = site._server
        bound = int(server.sockets[0].getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        sys.stdout.write(f"{banner} on http://{shown}:{bound}\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread / Windows
                pass
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
