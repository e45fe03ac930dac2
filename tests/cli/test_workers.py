"""The workers' listening sockets: one each on one port, never shared with another server."""

from __future__ import annotations

import socket

import pytest

from spyglass.cli.workers import listening_sockets


def test_each_worker_gets_a_socket_of_its_own_on_one_port() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) == 3 and len(ports) == 1 and 0 not in ports
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in sockets)
        assert all(sock.get_inheritable() for sock in sockets)
        for sock in sockets:  # every one can listen: the kernel spreads connections over them
            sock.listen()
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_another_server_listens_on_is_refused_not_shared(reuse_port: bool) -> None:
    with socket.socket() as other:  # another server, or another spyglass serve
        if reuse_port:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", other.getsockname()[1], 2)
