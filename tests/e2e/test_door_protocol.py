"""The door in uvicorn's HTTP protocol, spoken to over raw sockets of a real server.

One search slot and no queue; a search whose body never arrives holds the slot, so
every other search is refused in the protocol, before it becomes a task. What a
client sees must still be plain HTTP/1.1: the refused request's body is read and
dropped, the connection stays usable, pipelined answers keep their order, and a
connection that cannot be kept is closed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server, running

pytestmark = pytest.mark.e2e

BODY = json.dumps({"vector": [0.5, 0.5], "k": 1}).encode()


def request(
    method: str, path: str, body: bytes = b"", *, version: str = "1.1", extra: str = ""
) -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock`` (``buffer`` keeps what came after it)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed mid-body")
        rest += chunk
    buffer[:] = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


def closed(sock: socket.socket) -> bool:
    sock.settimeout(30)
    return sock.recv(1) == b""


@contextmanager
def full(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """A one-worker server whose only search slot is held by a body that never comes."""
    env = {"SPYGLASS_ADMISSION_SEARCH_IN_FLIGHT": "1", "SPYGLASS_ADMISSION_SEARCH_QUEUE": "0"}
    env.update(extra_env or {})
    with running(tmp / "data", workers=1, log=tmp / "server.log", env=env) as server:
        created = httpx.put(f"{server.url}/collections/v", json={"dim": 2, "metric": "l2"})
        assert created.status_code == 201, created.text
        items = {"items": [{"id": "a", "vector": [0.0, 1.0]}]}
        assert httpx.post(f"{server.url}/collections/v/items", json=items).status_code == 200
        assert httpx.post(f"{server.url}/collections/v/search", content=BODY).status_code == 200
        port = int(server.url.rsplit(":", 1)[1])
        holder = socket.create_connection(("127.0.0.1", port))
        holder.sendall(request("POST", "/collections/v/search", BODY)[:-5])  # 5 bytes short
        for _ in range(1000):  # until the holder has the slot: then searches are refused
            if httpx.post(f"{server.url}/collections/v/search", content=BODY).status_code == 503:
                break
        else:
            raise AssertionError("the held slot never filled the search lane")
        try:
            yield server
        finally:
            holder.close()


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with full(tmp_path_factory.mktemp("door")) as server:
        yield server


@pytest.fixture(scope="module")
def paced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same, sending at most one refusal a second."""
    env = {"SPYGLASS_ADMISSION_REFUSAL_RATE": "1"}
    with full(tmp_path_factory.mktemp("paced"), env) as server:
        yield server


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    sock.settimeout(30)
    return sock


def test_a_refusal_drops_the_body_and_keeps_the_connection(full_server: Server) -> None:
    with connect(full_server) as sock:
        buffer = bytearray()
        sock.sendall(request("POST", "/collections/v/search", BODY))
        status, headers, body = read_response(sock, buffer)
        assert status == 503
        assert headers["retry-after"] == "1" and headers["cache-control"] == "no-store"
        assert headers["content-type"] == "application/problem+json"
        assert headers["x-content-type-options"] == "nosniff" and "date" in headers
        assert "connection" not in headers
        problem = json.loads(body)
        assert problem["type"] == "urn:spyglass:problem:unavailable" and problem["status"] == 503
        sock.sendall(request("GET", "/livez"))  # the same connection, after the dropped body
        status, _, body = read_response(sock, buffer)
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_pipelined_requests_are_answered_in_order(full_server: Server) -> None:
    with connect(full_server) as sock:
        buffer = bytearray()
        search = request("POST", "/collections/v/search", BODY)
        sock.sendall(search + request("GET", "/livez") + search + request("GET", "/collections/v"))
        statuses = [read_response(sock, buffer)[0] for _ in range(4)]
        assert statuses == [503, 200, 503, 200]


@pytest.mark.parametrize(
    "version, extra",
    [("1.0", ""), ("1.1", "Connection: close\r\n"), ("1.1", "Expect: 100-continue\r\n")],
)
def test_a_connection_that_cannot_be_kept_is_closed_after_the_refusal(
    full_server: Server, version: str, extra: str
) -> None:
    with connect(full_server) as sock:
        buffer = bytearray()
        sock.sendall(request("POST", "/collections/v/search", BODY, version=version, extra=extra))
        status, headers, _ = read_response(sock, buffer)
        assert status == 503 and headers["connection"] == "close"
        assert closed(sock)


def test_the_lane_counts_what_the_door_let_in_until_it_is_answered(full_server: Server) -> None:
    search = f"{full_server.url}/collections/v/search"
    for _ in range(3):  # refused at the door: never counted
        assert httpx.post(search, content=BODY).status_code == 503
    with connect(full_server) as sock:  # let in, then gone before its body is whole
        sock.sendall(request("POST", "/collections/v/items", b'{"items": []}')[:-3])
    assert httpx.get(f"{full_server.url}/livez").status_code == 200
    lanes = httpx.get(f"{full_server.url}/status").json()["admission"]
    assert lanes["search"]["entered"] == 1  # the holder's search, whose body never comes
    for _ in range(200):  # the abandoned write's task ends once its disconnect is seen
        if httpx.get(f"{full_server.url}/status").json()["admission"]["ingest"]["entered"] == 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("a request whose client went away stayed counted in its lane")


def test_refusals_past_the_pace_wait_for_it_and_still_come_as_plain_503s(
    paced_server: Server,
) -> None:
    socks = [connect(paced_server) for _ in range(4)]
    try:
        for sock in socks:  # four at once: one refusal may go now, the rest wait for theirs
            sock.sendall(request("POST", "/collections/v/search", BODY))
        for sock in socks:
            buffer = bytearray()
            status, headers, body = read_response(sock, buffer)
            assert status == 503 and headers["retry-after"] == "1"
            assert json.loads(body)["type"] == "urn:spyglass:problem:unavailable"
            sock.sendall(request("GET", "/livez"))  # the connection is read again after it
            assert read_response(sock, buffer)[0] == 200
    finally:
        for sock in socks:
            sock.close()
    door = httpx.get(f"{paced_server.url}/status").json()["door"]
    assert door["refusal_rate"] == 1 and door["parked"] == 0 and door["parked_total"] >= 1


def test_a_parked_refusal_is_answered_before_the_request_pipelined_behind_it(
    paced_server: Server,
) -> None:
    with connect(paced_server) as sock:
        buffer = bytearray()
        search = request("POST", "/collections/v/search", BODY)
        sock.sendall(search + search + request("GET", "/livez"))  # the second is parked
        statuses = [read_response(sock, buffer)[0] for _ in range(3)]
        assert statuses == [503, 503, 200]
