"""Modal app: the perfect-reads server (``videoloader serve``) as a public web endpoint.

Deploy (from the repository root; needs ``pip install 'videoloader[modal]'`` and ``modal token new``)::

    modal serve modal_jobs/perfect_reads_app.py      # a temporary URL, reloads on edits
    modal deploy modal_jobs/perfect_reads_app.py     # https://<workspace>--videoloader-perfect-reads-web.modal.run
    VIDEOLOADER_MODAL_ALLOW_HOSTS='*.example.com,cdn.example.org' modal deploy modal_jobs/perfect_reads_app.py

Then ``GET https://.../v1/clip.mp4?url=URL&i=120&i=480`` (or ``&t=SECONDS``),
``GET https://.../v1/index?url=URL`` and ``GET https://.../v1/health``, as in
docs/perfect_reads.md.

What runs where:

* image: Debian slim + Python 3.12, the core dependencies from
  ``pyproject.toml`` (torch from the CPU wheel index: the server decodes
  nothing), the ``videoloader`` source last. No GPU.
* :func:`web` (``@modal.web_server(PORT)``, ``@modal.concurrent``): starts
  ``python -m videoloader.cli serve --host 0.0.0.0 --port PORT`` with the
  module's limits (:func:`serve_command`) in the container; Modal routes the
  endpoint's HTTPS traffic to that port. The aiohttp app is the same
  ``videoloader.serve.make_app`` as ``videoloader serve`` runs, unchanged:
  ``@modal.web_server`` forwards any HTTP server, so no ASGI adapter is needed.
  Each container keeps its own in-memory index cache.
* Origin rules: the public endpoint never passes ``--allow-private``, so
  origins on private, loopback, link-local and cloud-metadata addresses are
  refused (403), every redirect hop included. ``ALLOW_HOSTS``
  (``VIDEOLOADER_MODAL_ALLOW_HOSTS``, comma-separated ``fnmatch`` patterns)
  narrows origins further; empty allows any public host. The endpoint is
  open to anyone with its URL unless ``REQUIRES_PROXY_AUTH``
  (``VIDEOLOADER_MODAL_PROXY_AUTH=1``: Modal then asks for a workspace proxy
  token in the ``Modal-Key`` / ``Modal-Secret`` headers).

Limits are module constants (tested), overridable by environment variables at
``modal serve`` / ``modal deploy`` time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from videoloader._optional import require

modal: Any = require("modal", purpose="the Modal app (modal_jobs/perfect_reads_app.py)")

APP_NAME = "videoloader-perfect-reads"
PYTHON_VERSION = "3.12"
PORT = 8000
"""Port the server listens on inside the container (what ``@modal.web_server`` forwards to)."""
ALLOW_HOSTS = tuple(p.strip() for p in os.environ.get("VIDEOLOADER_MODAL_ALLOW_HOSTS", "").split(",") if p.strip())
"""Origin host patterns (``fnmatch``); empty: any public host."""
MAX_FRAMES = int(os.environ.get("VIDEOLOADER_MODAL_MAX_FRAMES", "256"))
"""Most frames one clip request may name (413 above)."""
MAX_RESPONSE_BYTES = int(os.environ.get("VIDEOLOADER_MODAL_MAX_RESPONSE_BYTES", str(256 * 1024 * 1024)))
"""Most sample bytes one clip may hold (413 above)."""
REQUIRES_PROXY_AUTH = os.environ.get("VIDEOLOADER_MODAL_PROXY_AUTH", "") not in ("", "0", "false", "False")
"""Ask Modal to require a workspace proxy-auth token on every request."""
MAX_INPUTS = 64
"""Requests one container serves at once (the server is asyncio; blocking work runs in threads)."""
CPU = 2.0
MEMORY_MB = 2048
STARTUP_TIMEOUT_SECONDS = 120.0
"""Time for the server to bind its port after the container starts (importing torch dominates)."""
SCALEDOWN_SECONDS = 300
"""Idle seconds before a container (and its index cache) goes away."""
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
REPO_ROOT = Path(__file__).resolve().parent.parent


def pip_requirements() -> list[str]:
    """The core dependencies from ``pyproject.toml`` but torch (installed from the CPU wheel index)."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [r for r in project.get("dependencies", []) if not r.replace(" ", "").startswith("torch")]


def torch_requirement() -> str:
    """The torch requirement of ``pyproject.toml`` (``torch>=...``)."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return next(r for r in project.get("dependencies", []) if r.replace(" ", "").startswith("torch"))


def serve_command(*, host: str = "0.0.0.0", port: int | None = None) -> list[str]:
    """The ``videoloader serve`` command line the endpoint runs (never ``--allow-private``)."""
    argv = [
        sys.executable,
        "-m",
        "videoloader.cli",
        "serve",
        "--host",
        host,
        "--port",
        str(PORT if port is None else port),
        "--max-frames",
        str(MAX_FRAMES),
        "--max-response-bytes",
        str(MAX_RESPONSE_BYTES),
    ]
    for pattern in ALLOW_HOSTS:
        argv += ["--allow-host", pattern]
    return argv


def start_server(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``argv`` (a ``videoloader serve`` command) and wait for its banner.

    Returns:
        The process and its base URL (``http://HOST:PORT``, from the first line of stdout).

    Raises:
        RuntimeError: the server exited before printing its address.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("serving on "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"videoloader serve did not start (exit status {proc.poll()}, first line {line!r})")
    # Whatever it prints later goes on to this process's stdout (the container log), so the pipe never fills.
    threading.Thread(target=_forward, args=(proc.stdout,), name="serve-stdout", daemon=True).start()
    return proc, line.removeprefix("serving on ")


def _forward(stream: Any) -> None:
    for line in stream:
        sys.stdout.write(line)


image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .pip_install(torch_requirement(), index_url=TORCH_CPU_INDEX)
    .pip_install(*pip_requirements())
    .add_local_python_source("videoloader")
)

app = modal.App(APP_NAME, image=image)

_servers: list[subprocess.Popen[str]] = []
"""The server processes :func:`web` started in this process (one per container)."""


@app.function(cpu=CPU, memory=MEMORY_MB, scaledown_window=SCALEDOWN_SECONDS)
@modal.concurrent(max_inputs=MAX_INPUTS)
@modal.web_server(PORT, startup_timeout=STARTUP_TIMEOUT_SECONDS, requires_proxy_auth=REQUIRES_PROXY_AUTH)
def web() -> None:
    """Start the perfect-reads server on ``PORT``; Modal forwards the endpoint to it."""
    proc, _base = start_server(serve_command())
    _servers.append(proc)
