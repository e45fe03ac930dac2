"""Fetching image bytes from a client's URL without opening the server's network to it.

Off unless the ``image_urls`` setting is on. A URL a client sends could point at
the server's own network (a database port, a cloud metadata service at
169.254.169.254), so :func:`fetch_image`:

* accepts only ``http`` and ``https`` URLs without credentials;
* resolves the host itself and refuses the URL, before any connection, if ANY
  address it resolves to is loopback, private, link-local, multicast, reserved,
  unspecified or otherwise not global (IPv4-mapped and 6to4 IPv6 addresses are
  judged by the IPv4 address inside), and ``localhost`` names outright;
* connects to the vetted address itself, sending the URL's host in the ``Host``
  header and as the TLS server name (the certificate is checked against it), so a
  second DNS answer cannot swap in another address between check and connect;
* follows at most :data:`MAX_REDIRECTS` redirects itself, vetting each target;
* stops reading past ``max_bytes`` and gives up when ``timeout`` seconds have
  passed in all (the status line, headers and body share that one deadline).

It uses ``http.client`` from the standard library rather than httpx: no new core
dependency, no proxy settings taken from the environment, no automatic
redirects, and pinning the connection to one IP while keeping the SNI name is a
ten-line ``connect`` override. Failures of the remote end (no answer, a non-200
status, a bad certificate) are the client's URL's fault: ``InvalidRequest`` naming
the field. Blocking: call it from a worker thread.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from spyglass.errors import InvalidRequest, PayloadTooLarge

#: Redirects followed per fetch, each re-vetted.
MAX_REDIRECTS = 3
#: Bytes read per call while streaming the body.
CHUNK_SIZE = 64 * 1024
USER_AGENT = "spyglass-image-fetch/1"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def fetch_image(
    url: str,
    *,
    field: str,
    max_bytes: int,
    timeout: float,
    allow_private: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> bytes:
    """The body of a ``200`` answer to ``GET url``, at most ``max_bytes`` long.

    Raises :class:`InvalidRequest` (naming ``field``) for a refused or malformed
    URL, a host that does not resolve or answer, a non-200 status, too many
    redirects or ``timeout`` seconds passing; :class:`PayloadTooLarge` when the
    body is longer than ``max_bytes``. ``allow_private`` lifts the address check
    (for a deployment whose images live on its own network). ``tls_context``
    replaces the system's default certificate checks (a private CA).
    """
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        target = _Target.parse(url, field=field, allow_private=allow_private)
        addresses = _resolve(target, field=field, allow_private=allow_private)
        location = _get(
            target,
            addresses,
            field=field,
            max_bytes=max_bytes,
            deadline=deadline,
            timeout=timeout,
            tls_context=tls_context,
        )
        if isinstance(location, bytes):
            return location
        url = urljoin(url, location)
    raise InvalidRequest(f"more than {MAX_REDIRECTS} redirects", field=field)


def refusal(address: IPAddress) -> str | None:
    """Why a fetch must not connect to ``address``, or ``None`` if it is public."""
    judged: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
        judged = [*embedded, address]
    for a in judged:
        shown = str(address) if a is address else f"{address} ({a})"
        for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
            if getattr(a, f"is_{kind}"):
                return f"{shown} is a {kind.replace('_', '-')} address"
        if not a.is_global:
            return f"{shown} is not a public address"
    return None


@dataclass(frozen=True)
class _Target:
    """One URL taken apart into what the request needs."""

    https: bool
    host: str
    port: int
    host_header: str
    path: str

    @classmethod
    def parse(cls, url: str, *, field: str, allow_private: bool) -> _Target:
        try:
            parts = urlsplit(url.strip())
            explicit_port = parts.port
        except ValueError as exc:
            raise InvalidRequest(f"not a valid URL: {exc}", field=field) from exc
        if parts.scheme not in ("http", "https"):
            raise InvalidRequest(
                f"only http and https URLs can be fetched, not {parts.scheme or 'this'!r}",
                field=field,
            )
        if parts.username is not None or parts.password is not None:
            raise InvalidRequest("URLs with credentials are not fetched", field=field)
        hostname = (parts.hostname or "").rstrip(".")
        if not hostname:
            raise InvalidRequest("the URL has no host", field=field)
        if not allow_private and (hostname == "localhost" or hostname.endswith(".localhost")):
            raise InvalidRequest(f"{hostname} is a loopback name", field=field)
        try:
            host = hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidRequest(f"not a valid host name: {hostname}", field=field) from exc
        https = parts.scheme == "https"
        port = (443 if https else 80) if explicit_port is None else explicit_port
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if explicit_port is None else f"{shown}:{explicit_port}"
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_PATH_SAFE)
        return cls(https, host, port, host_header, path)


def _resolve(target: _Target, *, field: str, allow_private: bool) -> list[str]:
    """The host's addresses, all vetted; refuses the lot if any one is not public."""
    try:
        infos = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        raise InvalidRequest(f"could not resolve {target.host}", field=field) from exc
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0])
        if text not in addresses:
            addresses.append(text)
    if not allow_private:
        for text in addresses:
            reason = refusal(ipaddress.ip_address(text))
            if reason is not None:
                raise InvalidRequest(f"refused to fetch from {target.host}: {reason}", field=field)
    if not addresses:
        raise InvalidRequest(f"could not resolve {target.host}", field=field)
    return addresses


def _get(
    target: _Target,
    addresses: list[str],
    *,
    field: str,
    max_bytes: int,
    deadline: float,
    timeout: float,
    tls_context: ssl.SSLContext | None,
) -> bytes | str:
    """The body of a 200 answer, or the ``Location`` of a redirect."""
    tls = (tls_context or ssl.create_default_context()) if target.https else None
    connection = _connect(target, addresses, field=field, deadline=deadline, tls=tls)
    response: http.client.HTTPResponse | None = None
    try:
        connection.request(
            "GET",
            target.path,
            headers={
                "Host": target.host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/*",
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
        )
        response = connection.getresponse()
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise InvalidRequest(
                    f"{target.host} redirected ({response.status}) without a Location",
                    field=field,
                )
            return location
        if response.status != 200:
            raise InvalidRequest(
                f"{target.host} answered {response.status} {response.reason}".rstrip(),
                field=field,
            )
        return _read_body(response, target=target, field=field, max_bytes=max_bytes)
    except TimeoutError as exc:
        raise InvalidRequest(
            f"{target.host} did not answer within {timeout:g} s", field=field
        ) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise InvalidRequest(f"could not fetch from {target.host}: {exc}", field=field) from exc
    finally:
        if response is not None:
            response.close()  # with "Connection: close" the response owns the socket
        connection.close()


def _read_body(
    response: http.client.HTTPResponse, *, target: _Target, field: str, max_bytes: int
) -> bytes:
    declared = response.getheader("Content-Length")
    length = int(declared) if declared is not None and declared.strip().isdigit() else None
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(
            f"the image at {target.host} is {length} bytes; the most is {max_bytes}",
            field=field,
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read1(CHUNK_SIZE):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(
                f"the image at {target.host} is over {max_bytes} bytes", field=field
            )
        chunks.append(chunk)
    if length is not None and total != length:
        raise InvalidRequest(
            f"{target.host} sent {total} of the {length} bytes it announced", field=field
        )
    return b"".join(chunks)


def _connect(
    target: _Target,
    addresses: list[str],
    *,
    field: str,
    deadline: float,
    tls: ssl.SSLContext | None,
) -> _PinnedConnection:
    """A connection to the first vetted address that accepts one."""
    failure: OSError | None = None
    for address in addresses:
        try:
            connection = _PinnedConnection(address, target.port, deadline, tls, target.host)
        except OSError as exc:
            failure = exc
            break
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            failure = exc
            continue
        return connection
    if isinstance(failure, TimeoutError):
        raise InvalidRequest(f"{target.host} did not accept a connection in time", field=field)
    raise InvalidRequest(f"could not connect to {target.host}: {failure}", field=field)


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to one IP address, on behalf of ``server_name``.

    ``connect`` opens TCP to the IP and, for HTTPS, runs TLS with ``server_name``
    as SNI and as the name the certificate must carry. Every read of the answer
    waits at most until ``deadline`` (``time.monotonic()``), so a server trickling
    bytes cannot hold the fetch past it.
    """

    def __init__(
        self,
        address: str,
        port: int,
        deadline: float,
        tls: ssl.SSLContext | None,
        server_name: str,
    ) -> None:
        super().__init__(address, port, timeout=_remaining(deadline))
        self._deadline = deadline
        self._tls = tls
        self._server_name = server_name
        self.response_class = _deadline_response(deadline)

    def connect(self) -> None:
        super().connect()
        if self._tls is not None:
            self.sock.settimeout(_remaining(self._deadline))
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the fetch deadline passed")
    return remaining


class _DeadlineReader(io.RawIOBase):
    """Socket reads that each wait only for what is left of one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer) or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def _deadline_response(deadline: float) -> type[http.client.HTTPResponse]:
    class DeadlineResponse(http.client.HTTPResponse):
        def __init__(
            self,
            sock: socket.socket,
            debuglevel: int = 0,
            method: str | None = None,
            url: str | None = None,
        ) -> None:
            super().__init__(sock, debuglevel, method, url)
            buffered = self.fp
            self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))
            buffered.close()

    return DeadlineResponse
