"""Shared pytest fixtures. Each engineer appends their own section; keep the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))


# --- media corpus (owner: media engineer; recipes in tests/media.py) --------------------


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """Folder holding the generated media corpus (built once per test session)."""
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def corpus(corpus_dir) -> dict[str, Path]:
    """``{name: path}`` for every entry of ``media.KINDS`` (h264_faststart, ..., ts_h264)."""
    import media

    return media.make_corpus(corpus_dir)


# --- loopback HTTP server (owner: io engineer; see tests/server.py) ---------------------


@pytest.fixture
def http_server():
    """A fresh ``LoopbackServer`` on 127.0.0.1 (random port), stopped after the test."""
    from server import LoopbackServer

    with LoopbackServer() as server:
        yield server
