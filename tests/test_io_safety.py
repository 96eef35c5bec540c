"""videoloader.io against hostile or unreachable sources: lying sizes, pipes and devices,
cross-origin redirects, secrets in errors and logs, permanent network failures, chained URLs.

Everything runs against real loopback servers (tests/server.py) and real local files.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import pickle
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from videoloader._errors import (
    SourceError,
    SourceNotFoundError,
    SourceUnreachableError,
    TransferError,
)
from videoloader.io import RangeSource, RetryPolicy, TransferStats, install_log_redaction
from videoloader.io._redact import remove_log_redaction

from server import LoopbackServer

pytestmark = pytest.mark.timeout(60)

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_seconds=0.01, max_delay_seconds=0.05)
DATA = os.urandom(300_000)
SECRETS = ("SECRET", "hunter2")


@pytest.fixture
def other_server() -> Iterator[LoopbackServer]:
    """A second loopback server: another port, so another origin."""
    with LoopbackServer() as server:
        yield server


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [e]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]


def assert_no_secret(e: BaseException) -> None:
    """No exception on ``e``'s cause/context chain shows a secret in str, repr or args."""
    for item in _chain(e):
        for text in (str(item), repr(item), *map(repr, item.args)):
            for secret in SECRETS:
                assert secret not in text, f"{type(item).__name__} leaks {secret!r}: {text}"


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


# -- sizes claimed by a server buy no memory ------------------------------------------------------


def test_claimed_object_size_costs_no_memory(http_server):
    claimed = 50 * 10**9  # "50 GB", backed by 300 KB
    url = http_server.add("lie.bin", DATA, claim_size=claimed)
    with RangeSource(url, retry=FAST_RETRY) as src:
        assert src.read(0, 1000) == DATA[:1000]
        assert src.size == claimed  # what the server says; it only bounds what may be asked
        gc.collect()
        before = _rss()
        with pytest.raises(TransferError):  # 4 GiB announced, 300 KB sent, then the connection closes
            src.read(0, 4 * 2**30)
        f = src.open_file()
        with pytest.raises(TransferError):
            f.read()  # readall(): pieces, never one buffer of the claimed size
        with pytest.raises(SourceError):
            src.read(claimed - 10, claimed)  # nothing there at all
        grown = _rss() - before
    assert grown < 50 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
    received = sum(r.bytes_received for r in src.stats.records)
    assert received == http_server.bytes_sent <= 20 * len(DATA)


def test_readall_in_pieces_returns_every_byte(http_server):
    url = http_server.add("v.bin", DATA)
    with RangeSource(url) as src:
        f = src.open_file(read_ahead_bytes=1000)
        f.seek(123)
        assert f.read() == DATA[123:] and f.read() == b""


# -- pipes, devices and sockets are refused before any blocking open --------------------------------


def _size_in_thread(source: str) -> BaseException | None:
    """``RangeSource(source).size`` in a thread; fails the test if it blocks."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            with RangeSource(source) as src:
                _ = src.size
            result.append(None)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():
        if source.startswith("file://"):
            source = source[len("file://") :]
        with open(os.open(source, os.O_WRONLY | os.O_NONBLOCK), "wb"):  # release the blocked reader
            pass
        t.join(5)
        pytest.fail(f"RangeSource({source!r}).size blocked")
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_fifo_is_refused_without_blocking(tmp_path, as_url):
    fifo = tmp_path / "video.mp4"
    os.mkfifo(fifo)
    source = f"file://{fifo}" if as_url else str(fifo)
    err = _size_in_thread(source)
    assert isinstance(err, SourceError), err
    assert str(fifo) in str(err) and "FIFO" in str(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_video_reader_refuses_fifo(tmp_path):
    import videoloader

    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            videoloader.VideoReader(str(fifo))
            result.append(None)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        pytest.fail("VideoReader(fifo) blocked")
    assert isinstance(result[0], SourceError) and "FIFO" in str(result[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_character_device_is_refused():
    err = _size_in_thread("/dev/zero")
    assert isinstance(err, SourceError) and "/dev/zero" in str(err) and "character device" in str(err)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
def test_socket_path_is_refused(tmp_path):
    path = tmp_path / "s.sock"
    if len(str(path)) > 100:
        pytest.skip("tmp path too long for a unix socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        err = _size_in_thread(str(path))
    assert isinstance(err, SourceError) and "socket" in str(err)


def test_directory_is_still_not_found(tmp_path):
    assert isinstance(_size_in_thread(str(tmp_path)), SourceNotFoundError)


# -- credentials never follow a redirect to another origin -----------------------------------------

CREDENTIALS = {"X-Api-Key": "k-123", "Cookie": "session=abc", "Proxy-Authorization": "Basic eHg6eXk="}


def _saw_credentials(server: LoopbackServer, path: str) -> list[bool]:
    """Per request for ``path``: did it carry any credential header?"""
    names = {"x-api-key", "cookie", "authorization", "proxy-authorization"}
    return [bool(names & set(headers)) for _, p, headers in server.request_headers if p == path]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # aiohttp 3.14 deprecates BasicAuth
def test_cross_origin_redirect_drops_credentials(http_server, other_server):
    import aiohttp

    other_server.add("v.bin", DATA)
    url = http_server.add_redirect("go.bin", other_server.url("v.bin"))
    for options in (
        {"headers": CREDENTIALS},
        {"auth": aiohttp.BasicAuth("alice", "pw"), "cookies": {"c": "1"}},
        {"client_kwargs": {"headers": CREDENTIALS}},
    ):
        with RangeSource(url, storage_options=options) as src:
            assert src.size == len(DATA)
            assert src.read(1000, 2000) == DATA[1000:2000]
    assert all(_saw_credentials(http_server, "/go.bin"))  # the origin asked for got them
    assert _saw_credentials(other_server, "/v.bin") and not any(_saw_credentials(other_server, "/v.bin"))


def test_same_origin_redirect_keeps_credentials(http_server):
    http_server.add("v.bin", DATA)
    url = http_server.add_redirect("old.bin", "v.bin")
    with RangeSource(url, storage_options={"headers": CREDENTIALS}) as src:
        assert src.read(0, 100) == DATA[:100]
    assert all(_saw_credentials(http_server, "/v.bin")) and _saw_credentials(http_server, "/v.bin")


def test_forwarding_credentials_is_opt_in(http_server, other_server):
    other_server.add("v.bin", DATA)
    url = http_server.add_redirect("go.bin", other_server.url("v.bin"))
    options = {"headers": CREDENTIALS, "forward_headers_on_redirect": True}
    with RangeSource(url, storage_options=options) as src:
        assert src.read(0, 100) == DATA[:100]
    seen = _saw_credentials(other_server, "/v.bin")
    assert seen and all(seen)
    assert pickle.loads(pickle.dumps(src))._storage_options["forward_headers_on_redirect"] is True


def test_redirect_option_is_not_passed_to_fsspec():
    import fsspec

    fsspec.filesystem("memory").pipe("/safety/v.bin", DATA)
    with RangeSource("memory://safety/v.bin", storage_options={"forward_headers_on_redirect": True}) as src:
        assert src.read(10, 20) == DATA[10:20]


def test_redirect_loop_is_a_bounded_source_error(http_server):
    http_server.add_redirect("a.bin", "b.bin")
    url = http_server.add_redirect("b.bin", "a.bin")
    with (
        RangeSource(url + "?token=SECRET", retry=FAST_RETRY) as src,
        pytest.raises(SourceError, match="redirects") as info,
    ):
        _ = src.size
    assert len(src.stats.records) == 1
    assert_no_secret(info.value)


# -- no secret in any raised error or its chain ----------------------------------------------------


def _refused_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    return s, s.getsockname()[1]


@pytest.mark.parametrize("where", ["404", "refused", "dns", "chained-404", "chained-refused"])
def test_errors_hold_no_secret(http_server, tmp_path, where):
    sock, port = _refused_port()
    hosts = {
        "404": f"127.0.0.1:{http_server.port}",
        "refused": f"127.0.0.1:{port}",
        "dns": "no-such-host.invalid",
    }
    host = hosts.get(where.replace("chained-", ""))
    url = f"http://alice:hunter2@{host}/missing.bin?token=SECRET&X-Amz-Signature=SECRET"
    options = {}
    if where.startswith("chained"):
        url = "simplecache::" + url
        options = {"simplecache": {"cache_storage": str(tmp_path)}}
    with sock, RangeSource(url, retry=FAST_RETRY, storage_options=options) as src:
        with pytest.raises(SourceError) as info:
            src.read(0, 100)
        assert_no_secret(info.value)
        for record in src.stats.records:
            assert not any(s in f"{record.url} {record.error}" for s in SECRETS)
        assert not any(s in repr(src) for s in SECRETS)


# -- DNS, refused and TLS failures are permanent: raised at once, saying what failed ----------------


def test_refused_connection_is_not_retried():
    sock, port = _refused_port()
    with sock, RangeSource(f"http://127.0.0.1:{port}/v.bin", retry=RetryPolicy(base_delay_seconds=1.0)) as src:
        t0 = time.perf_counter()
        with pytest.raises(SourceUnreachableError, match=rf"connection refused by 127\.0\.0\.1:{port}") as info:
            src.read(0, 100)
        assert time.perf_counter() - t0 < 1.0
    assert isinstance(info.value, ConnectionError) and not isinstance(info.value, TransferError)
    assert len(src.stats.records) <= 2


def test_dns_failure_is_not_retried():
    with RangeSource("http://no-such-host.invalid/v.bin", retry=RetryPolicy(base_delay_seconds=1.0)) as src:
        t0 = time.perf_counter()
        with pytest.raises(SourceUnreachableError, match=r"DNS lookup failed for host no-such-host\.invalid"):
            _ = src.size
        assert time.perf_counter() - t0 < 10.0  # the resolver's own time; no retries on top
    assert len(src.stats.records) <= 2


def test_chained_url_to_refused_port_is_unreachable(tmp_path):
    sock, port = _refused_port()
    url = f"simplecache::http://127.0.0.1:{port}/v.bin"
    with sock, RangeSource(url, retry=RetryPolicy(base_delay_seconds=1.0)) as src:
        t0 = time.perf_counter()
        with pytest.raises(SourceUnreachableError, match="refused"):
            _ = src.size
        assert time.perf_counter() - t0 < 1.0


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
    else:
        _write_cert_with_cryptography(cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def _write_cert_with_cryptography(cert: Path, key: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def test_tls_certificate_failure_is_not_retried(tmp_path):
    with LoopbackServer(ssl_context=_self_signed(tmp_path)) as server:
        url = server.add("v.bin", DATA) + "?token=SECRET"
        with RangeSource(url, retry=RetryPolicy(base_delay_seconds=1.0)) as src:
            t0 = time.perf_counter()
            with pytest.raises(SourceUnreachableError, match="TLS certificate verification failed") as info:
                src.read(0, 100)
            assert time.perf_counter() - t0 < 1.0
            assert len(src.stats.records) <= 2
            assert_no_secret(info.value)
        # The same server with verification off (the caller's choice) is read fine.
        with RangeSource(url, storage_options={"ssl": False}) as src:
            assert src.read(0, 100) == DATA[:100]


# -- chained fsspec URLs: real network bytes, or marked untracked -----------------------------------


def test_chained_url_is_marked_untracked(http_server, tmp_path):
    http_server.add("x.mp4", DATA)
    url = f"simplecache::{http_server.url('x.mp4')}"
    total = TransferStats()
    options = {"simplecache": {"cache_storage": str(tmp_path)}}
    with RangeSource(url, storage_options=options, stats=TransferStats(parent=total)) as src:
        assert src.read(1000, 2000) == DATA[1000:2000]
        stats = src.stats
        assert stats.bytes_received < http_server.bytes_sent  # the cache downloaded the whole object...
        assert not stats.tracked and not total.tracked  # ...so the totals say they are not the whole story
        assert "not counted" in repr(stats) and "tracked=False" in repr(stats)
        assert "not counted" in (stats.untracked_reason or "")
        assert not stats.snapshot().tracked
    assert not pickle.loads(pickle.dumps(src)).stats.tracked
    with RangeSource(http_server.url("x.mp4")) as plain:
        plain.read(0, 10)
        assert plain.stats.tracked and plain.stats.untracked_reason is None


def test_archive_member_over_http_is_marked_untracked(http_server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("x.mp4")
        info.size = len(DATA)
        tar.addfile(info, io.BytesIO(DATA))
    http_server.add("a.tar", buf.getvalue())
    with RangeSource(f"tar://x.mp4::{http_server.url('a.tar')}") as src:
        assert src.read(0, 100) == DATA[:100]
        assert not src.stats.tracked


# -- logs ---------------------------------------------------------------------------------------------


def test_log_redaction_cleans_library_loggers(caplog):
    install_log_redaction()
    try:
        caplog.set_level(logging.DEBUG)
        url = "https://alice:hunter2@cdn.example.com/v.mp4?X-Amz-Signature=SECRET"
        logging.getLogger("fsspec.http").debug("GET %s", url)
        logging.getLogger("aiohttp.client").debug("redirect to %s", url)
        logging.getLogger("urllib3.connectionpool").debug(
            '%s://%s:%s "%s %s %s" %s %s',
            "https",
            "cdn.example.com",
            443,
            "GET",
            "/v.mp4?sig=SECRET",
            "HTTP/1.1",
            206,
            10,
        )
        try:
            raise ValueError(f"failed for {url}")
        except ValueError:
            logging.getLogger("fsspec").exception("boom")
        logging.getLogger("someone.else").debug("keep ?q=1 as is")
        texts = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
        assert len(texts) == 5
        for text in texts[:4]:
            assert not any(s in text for s in SECRETS), text
        assert "cdn.example.com/v.mp4" in texts[0]
        assert texts[4] == "keep ?q=1 as is"
    finally:
        remove_log_redaction()
