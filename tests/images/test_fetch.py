"""Fetching images by URL: SSRF refusals without connecting, and a real local server."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spyglass.errors import InvalidRequest, PayloadTooLarge
from spyglass.images import decode_image, fetch_image
from spyglass.images.fetch import MAX_REDIRECTS, refusal
from tests.conftest import SHARED_DATA

PHOTO = SHARED_DATA / "photos" / "color" / "skimage_coffee.png"
MAX_BYTES = 20 * 1024 * 1024


@dataclass
class Server:
    url: str
    port: int
    connections: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    record: Server
    release: threading.Event

    def verify_request(self, request: object, client_address: object) -> bool:
        self.record.connections.append(str(client_address))
        return True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up on a slow answer is part of the tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.record.hosts.append(self.headers.get("Host", ""))
        path = self.path
        if path == "/photo.png":
            self.answer(200, PHOTO.read_bytes(), "image/png")
        elif path == "/redirect":
            self.redirect("/photo.png")
        elif path == "/redirect-absolute":
            self.redirect(f"http://127.0.0.1:{self.server.server_port}/photo.png")
        elif path.startswith("/chain/"):  # /chain/N: N redirects, then the photo
            left = int(path.rsplit("/", 1)[1])
            if left:
                self.redirect(f"/chain/{left - 1}")
            else:
                self.answer(200, PHOTO.read_bytes(), "image/png")
        elif path == "/to-file":
            self.redirect("file:///etc/passwd")
        elif path == "/announced-big":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"\x00" * 1000)
        elif path == "/streamed-big":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\x00" * 10_000)
        elif path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"\x00" * 10)
        elif path == "/slow":
            self.server.release.wait(30)
            self.answer(200, b"late", "text/plain")
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while not self.server.release.wait(0.05):
                self.wfile.write(b"\x00")
                self.wfile.flush()
        else:
            self.answer(404, b"no such thing", "text/plain")

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    port = server.server_port
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    server.record = Server(url=f"{scheme}://127.0.0.1:{port}", port=port)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.record
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


def fetch(
    url: str,
    *,
    max_bytes: int = MAX_BYTES,
    timeout: float = 5.0,
    allow_private: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> bytes:
    return fetch_image(
        url,
        field="image_url",
        max_bytes=max_bytes,
        timeout=timeout,
        allow_private=allow_private,
        tls_context=tls_context,
    )


def refused(url: str, kind: type[Exception] = InvalidRequest, **options: Any) -> str:
    with pytest.raises(kind) as info:
        fetch(url, **options)
    assert type(info.value) is kind
    assert getattr(info.value, "field", None) == "image_url"
    return str(info.value)


# refusals, before any connection


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("2130706433", "loopback"),  # 127.0.0.1 as one decimal number
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("localhost", "loopback"),
        ("localhost.", "loopback"),
        ("images.localhost", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.10", "private"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fd00::1]", "private"),
        ("100.64.0.1", "not a public"),
        ("224.0.0.1", "multicast"),
        ("[2002:7f00:1::]", "loopback"),  # 6to4 wrapping 127.0.0.1
    ],
)
def test_private_addresses_are_refused_without_connecting(
    server: Server, host: str, reason: str
) -> None:
    detail = refused(f"http://{host}:{server.port}/photo.png")
    assert reason in detail
    assert server.connections == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/cat.png",
        "gopher://example.com/",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "/relative/cat.png",
        "",
    ],
)
def test_only_http_urls(url: str) -> None:
    assert "only http and https" in refused(url)


def test_malformed_urls() -> None:
    assert "credentials" in refused("http://user:secret@example.com/cat.png")
    assert "no host" in refused("http:///cat.png")
    assert "not a valid URL" in refused("http://example.com:99999/cat.png")


def test_refusal_judges_addresses() -> None:
    for public in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2002:808:808::"):
        assert refusal(ipaddress.ip_address(public)) is None, public
    for private in ("127.0.0.1", "::1", "::ffff:10.0.0.1", "169.254.0.1", "192.0.2.1", "::"):
        assert refusal(ipaddress.ip_address(private)) is not None, private


# a real server on loopback, with private addresses allowed


def test_fetches_an_image(server: Server) -> None:
    data = fetch(f"{server.url}/photo.png", allow_private=True)
    assert data == PHOTO.read_bytes()
    image = decode_image(data, field="image_url", max_bytes=MAX_BYTES, max_pixels=40_000_000)
    assert image.size == (600, 400)
    assert server.hosts == [f"127.0.0.1:{server.port}"]


def test_sends_the_url_host_while_connecting_to_the_vetted_address(server: Server) -> None:
    fetch(f"http://localhost:{server.port}/photo.png", allow_private=True)
    assert server.hosts == [f"localhost:{server.port}"]


@pytest.mark.parametrize("path", ["/redirect", "/redirect-absolute", f"/chain/{MAX_REDIRECTS}"])
def test_follows_redirects(server: Server, path: str) -> None:
    assert fetch(f"{server.url}{path}", allow_private=True) == PHOTO.read_bytes()


def test_too_many_redirects(server: Server) -> None:
    detail = refused(f"{server.url}/chain/{MAX_REDIRECTS + 1}", allow_private=True)
    assert "redirects" in detail
    assert len(server.hosts) == MAX_REDIRECTS + 1


def test_each_redirect_is_vetted_again(server: Server) -> None:
    assert "only http and https" in refused(f"{server.url}/to-file", allow_private=True)


def test_an_announced_oversized_body(server: Server) -> None:
    detail = refused(f"{server.url}/announced-big", PayloadTooLarge, allow_private=True)
    assert str(10**9) in detail


def test_a_streamed_oversized_body(server: Server) -> None:
    detail = refused(
        f"{server.url}/streamed-big", PayloadTooLarge, allow_private=True, max_bytes=50_000
    )
    assert "50000" in detail
    assert len(fetch(f"{server.url}/streamed-big", allow_private=True)) == 1_000_000


def test_a_body_shorter_than_announced(server: Server) -> None:
    assert "10 of the 1000" in refused(f"{server.url}/short", allow_private=True)


def test_not_found(server: Server) -> None:
    assert "404" in refused(f"{server.url}/missing.png", allow_private=True)


def test_a_slow_answer(server: Server) -> None:
    assert "did not answer" in refused(f"{server.url}/slow", allow_private=True, timeout=0.3)


def test_a_trickling_answer_is_cut_at_the_deadline(server: Server) -> None:
    # One byte every 50 ms never trips a per-read timeout; the total deadline does.
    assert "did not answer" in refused(f"{server.url}/trickle", allow_private=True, timeout=0.5)


def test_nothing_listening() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as probe:  # a port just freed
        port = probe.server_port
    assert "could not connect" in refused(f"http://127.0.0.1:{port}/", allow_private=True)


# TLS: the certificate is checked against the URL's host, not the IP connected to


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _serve(context)


def test_https_checks_the_certificate_against_the_url_host(
    tls_server: Server, certificate: tuple[Path, Path]
) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    url = f"https://localhost:{tls_server.port}/photo.png"
    # The certificate names only "localhost": this works only if the TLS name is
    # the URL's host while the socket goes to the vetted 127.0.0.1.
    assert fetch(url, allow_private=True, tls_context=trust) == PHOTO.read_bytes()
    detail = refused(
        f"https://127.0.0.1:{tls_server.port}/photo.png", allow_private=True, tls_context=trust
    )
    assert "certificate" in detail.lower() or "ssl" in detail.lower()
    assert "certificate" in refused(url, allow_private=True).lower()  # system CAs: untrusted
