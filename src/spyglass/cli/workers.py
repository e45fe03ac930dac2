"""Several workers on one port, each with a listening socket of its own.

uvicorn's supervisor hands every worker the same listening socket. Whichever
worker wakes first then accepts every connection waiting, so a client that opens
its connections at once (a connection pool, a load balancer, a benchmark) lands
mostly on one worker: 58 of 64 keep-alive connections were measured on one of two
workers, which then queued and refused while the other idled. Here each worker
listens on its own socket bound with ``SO_REUSEPORT``, and the kernel spreads new
connections over the sockets by their address hash, as nginx's ``reuse_port``
does. The supervisor keeps every socket open: the connections that arrive for a
worker that died wait in its socket's queue for its replacement instead of being
refused.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("uvicorn.error")


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host:port`` with ``SO_REUSEPORT`` (port 0: a free
    one), inheritable by the workers, who listen on them.

    The port is first bound without ``SO_REUSEPORT``, so that a port another server
    holds (Spyglass included) is refused as in use instead of shared with it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Workers(Multiprocess):
    """uvicorn's supervisor (health checks, restarts, signals), each worker with its
    own socket: a replacement takes over the socket of the worker it replaces."""

    def __init__(self, config: Config, sockets: Sequence[socket.socket]) -> None:
        super().__init__(config, sockets=list(sockets))
        self.own = list(sockets)

    def _spawn(self, idx: int) -> Process:
        process = Process(self.config, [self.own[idx]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._spawn(idx) for idx in range(len(self.own))]

    def restart_all(self) -> None:
        """Replace each worker in turn, the new one serving before the old one stops."""
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(idx)
            timeout = self.config.timeout_worker_healthcheck
            if not new.wait_until_ready(timeout, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("worker [%s] was not ready in time; restart aborted", new.pid)
                return
            old.terminate()
            old.join()
            self.processes[idx] = new

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or hangs, unless it never started (then stop)."""
        for idx, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker [%s] failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("worker [%s] died; starting another", process.pid)
            self.processes[idx] = self._spawn(idx)
