"""Shared pytest fixtures: the generated media corpus, the loopback server, hardware markers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))


# --- media corpus (recipes in tests/media.py) -------------------------------------------


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """Folder holding the generated media corpus (built once per test session)."""
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def corpus(corpus_dir) -> dict[str, Path]:
    """``{name: path}`` for every entry of ``media.KINDS`` (h264_faststart, ..., ts_h264)."""
    import media

    return media.make_corpus(corpus_dir)


# --- loopback HTTP server (see tests/server.py) -----------------------------------------


@pytest.fixture
def http_server():
    """A fresh ``LoopbackServer`` on 127.0.0.1 (random port), stopped after the test."""
    from server import LoopbackServer

    with LoopbackServer() as server:
        yield server


# --- hardware markers ---------------------------------------------------------------------
# needs_cuda / needs_nvdec / needs_macos tests skip unless the hardware is here; with
# VIDEOLOADER_REQUIRE_HW=1 (GPU / Mac CI jobs) a missing capability fails the test instead,
# so a job that lost its GPU cannot pass by skipping everything.

_HW_MARKERS = {
    "needs_cuda": "needs a CUDA GPU visible to torch",
    "needs_nvdec": "needs NVDEC: a CUDA GPU, libnvcuvid.so.1 and PyNvVideoCodec",
    "needs_macos": "needs macOS with VideoToolbox",
}


def pytest_configure(config):
    for name, why in _HW_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why} (skips otherwise; VIDEOLOADER_REQUIRE_HW=1 fails)")


def _hw_missing(marker: str) -> str | None:
    """Why the capability behind ``marker`` is missing, or None when present."""
    import sys as _sys

    if marker == "needs_macos":
        if _sys.platform != "darwin":
            return "not macOS"
        from videoloader.decoders._registry import probe_backend

        ok, why = probe_backend("videotoolbox")
        return None if ok else why
    try:
        import torch
    except Exception as e:  # pragma: no cover
        return f"torch not importable: {e}"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    if marker == "needs_nvdec":
        from videoloader.decoders._registry import probe_backend

        ok, why = probe_backend("nvdec")
        return None if ok else why
    return None


def pytest_runtest_setup(item):
    import os as _os

    for marker in _HW_MARKERS:
        if item.get_closest_marker(marker) is None:
            continue
        why = _hw_missing(marker)
        if why is None:
            continue
        if _os.environ.get("VIDEOLOADER_REQUIRE_HW") == "1":
            pytest.fail(f"{marker}: {why}, and VIDEOLOADER_REQUIRE_HW=1 requires the hardware", pytrace=False)
        pytest.skip(f"{marker}: {why}")
