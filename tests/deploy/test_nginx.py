"""deploy/nginx.conf, run by Debian's nginx in front of two real `spyglass serve` processes.

The file is written for compose (`server spyglass:8000`, `listen 80`), and nginx resolves
upstream host names when it loads a config, so both `nginx -t` and the running proxy get
the file with exactly two kinds of line rewritten: the upstream block's `server` lines
(two loopback instances instead of the compose service) and the `listen` line (a free
loopback port). A test checks that nothing else differs. Paths (prefix, pid, logs) come
from nginx's command line, as in compose.
"""

from __future__ import annotations

import difflib
import http.client
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from spyglass.settings import Settings
from tests.deploy.conftest import DEPLOY
from tests.e2e.server import Server, free_port, running

CONF = DEPLOY / "nginx.conf"
SEARCH = "/collections/{name}/search"
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def directive(conf: str, name: str) -> list[str]:
    """The arguments of every `name ...;` in the config."""
    return [m.strip() for m in re.findall(rf"^\s*{name}\s+([^;]*);", conf, re.M)]


def size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", value.lower()).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()  # type: ignore[union-attr]
    return int(number) * TIME_UNITS[unit or "s"]


def render(conf: str, upstreams: list[str], listen: str) -> str:
    """deploy/nginx.conf with other upstream servers and another listen address, only."""
    block = re.search(r"^(\s*)upstream spyglass \{\n(.*?)^\1\}", conf, re.M | re.S)
    assert block is not None, "no `upstream spyglass { ... }` block"
    servers = re.findall(r"^(\s*)server\s+\S+((?:\s+[^;\s]+)*);\n", block.group(2), re.M)
    assert len(servers) == 1, servers
    indent, parameters = servers[0]
    new_lines = "".join(f"{indent}server {upstream}{parameters};\n" for upstream in upstreams)
    body = re.sub(r"^\s*server\s+\S+[^;]*;\n", new_lines, block.group(2), flags=re.M)
    conf = conf[: block.start(2)] + body + conf[block.end(2) :]
    conf, listens = re.subn(r"^(\s*)listen\s+[^;]+;", rf"\g<1>listen {listen};", conf, flags=re.M)
    assert listens == 1
    return conf


@dataclass
class Nginx:
    url: str
    prefix: Path
    process: subprocess.Popen[bytes]

    @property
    def access_log(self) -> list[dict[str, Any]]:
        lines = (self.prefix / "access.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def nginx_command(binary: Path, prefix: Path, *flags: str, foreground: bool = False) -> list[str]:
    """nginx with everything it writes under `prefix`: temp files, pid, logs."""
    settings = f"pid {prefix}/nginx.pid;" + (" daemon off;" if foreground else "")
    return [
        str(binary),
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "error.log"),
        "-g",
        settings,
        *flags,
    ]


@contextmanager
def nginx_prefix(conf: str) -> Iterator[Path]:
    """A prefix directory holding the config, its logs and nginx's temp directories.

    Under /tmp and readable by all: when the tests run as root, nginx's workers run as
    `nobody` and write request bodies into the temp directories here.
    """
    prefix = Path(tempfile.mkdtemp(prefix="spyglass-nginx-"))
    try:
        prefix.chmod(0o755)
        (prefix / "nginx.conf").write_text(conf)
        yield prefix
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@contextmanager
def running_nginx(binary: Path, conf: str, url: str) -> Iterator[Nginx]:
    """nginx in the foreground (daemon off) with this config, until it answers at `url`."""
    with nginx_prefix(conf) as prefix:
        argv = nginx_command(binary, prefix, foreground=True)
        with open(prefix / "access.log", "ab") as out, open(prefix / "stderr.log", "ab") as err:
            process = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
        try:
            for _ in range(600):  # until it answers (bounded; not a timing assertion)
                assert process.poll() is None, (prefix / "stderr.log").read_text()
                try:
                    if httpx.get(url + "/livez", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            else:
                raise AssertionError("nginx did not answer: " + (prefix / "stderr.log").read_text())
            yield Nginx(url=url, prefix=prefix, process=process)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait for a log line written after the response was sent (bounded)."""
    for _ in range(200):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def host_port(url: str) -> str:
    return url.removeprefix("http://")


# --- the file itself ----------------------------------------------------------------------


def test_rendering_changes_only_upstream_servers_and_listen() -> None:
    original = CONF.read_text()
    rendered = render(original, ["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3")
    changed = [
        line[1:].strip()
        for line in difflib.unified_diff(original.splitlines(), rendered.splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(changed) == sorted(
        [
            "server spyglass:8000 max_fails=3 fail_timeout=10s;",
            "server 127.0.0.1:1 max_fails=3 fail_timeout=10s;",
            "server 127.0.0.1:2 max_fails=3 fail_timeout=10s;",
            "listen 80;",
            "listen 127.0.0.1:3;",
        ]
    )


def test_nginx_accepts_the_config(nginx: Path) -> None:
    conf = render(CONF.read_text(), ["127.0.0.1:8001", "127.0.0.1:8002"], "127.0.0.1:8080")
    with nginx_prefix(conf) as prefix:
        result = subprocess.run(
            nginx_command(nginx, prefix, "-t"), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_fails_a_config_it_should(nginx: Path) -> None:
    """nginx -t and its exit status are real: an unknown directive fails the same check."""
    conf = render(CONF.read_text(), ["127.0.0.1:8001"], "127.0.0.1:8080")
    conf = conf.replace("least_conn;", "least_connections;")
    with nginx_prefix(conf) as prefix:
        result = subprocess.run(
            nginx_command(nginx, prefix, "-t"), capture_output=True, text=True, timeout=60
        )
    assert result.returncode != 0
    assert 'unknown directive "least_connections"' in result.stderr


def test_body_limit_is_spyglass_largest_body_limit() -> None:
    """nginx lets through every body Spyglass may accept, and no bigger."""
    fields = Settings.model_fields
    limits = ("max_search_body_bytes", "max_ingest_body_bytes", "max_body_bytes")
    largest = max(int(fields[name].default) for name in limits)
    (value,) = directive(CONF.read_text(), "client_max_body_size")
    assert size_bytes(value) == largest


def test_timeouts_outlast_spyglass_budgets_and_keepalive_is_below_uvicorns() -> None:
    conf = CONF.read_text()
    fields = Settings.model_fields
    budgets = ("search_timeout_s", "ingest_timeout_s", "request_timeout_s")
    longest = max(float(fields[name].default) for name in budgets)
    (read,) = directive(conf, "proxy_read_timeout")
    assert seconds(read) > longest, "Spyglass's own 503 should reach the client, not a 504"
    for name in ("proxy_connect_timeout", "proxy_send_timeout", "client_body_timeout"):
        assert len(directive(conf, name)) == 1, name
    (keepalive,) = directive(conf, "keepalive_timeout")
    assert seconds(keepalive) < uvicorn.Config("spyglass.app:app").timeout_keep_alive


def test_balancing_limits_and_forwarded_headers_are_configured() -> None:
    conf = CONF.read_text()
    assert re.search(r"upstream spyglass \{\s*least_conn;", conf)
    (zone,) = directive(conf, "limit_req_zone")
    assert zone.startswith("$binary_remote_addr zone=spyglass_per_client:")
    assert directive(conf, "limit_req") == ["zone=spyglass_per_client burst=100 nodelay"]
    assert directive(conf, "limit_req_status") == ["429"]
    headers = dict(h.split(None, 1) for h in directive(conf, "proxy_set_header"))
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Request-ID"] == "$spyglass_request_id"


# --- nginx in front of two real instances -------------------------------------------------


@dataclass
class Stack:
    proxy: Nginx
    instances: list[Server]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, nginx: Path, redis_url: str) -> Iterator[Stack]:
    """nginx on a loopback port in front of two `spyglass serve` processes that share a
    data directory (the embedded store) and Redis, and believe nginx's X-Forwarded-For."""
    root = tmp_path_factory.mktemp("nginx-stack")
    env = {
        "SPYGLASS_REDIS_URL": redis_url,
        "SPYGLASS_TRUSTED_PROXIES": "127.0.0.1",
        "SPYGLASS_RATE_LIMIT_OTHER": "1000/hour",
        "SPYGLASS_METRICS_PUBLIC": "true",
    }
    with ExitStack() as stack:
        instances = [
            stack.enter_context(running(root / "data", log=root / f"spyglass-{n}.log", env=env))
            for n in (1, 2)
        ]
        port = free_port()
        conf = render(CONF.read_text(), [host_port(i.url) for i in instances], f"127.0.0.1:{port}")
        proxy = stack.enter_context(running_nginx(nginx, conf, f"http://127.0.0.1:{port}"))
        yield Stack(proxy=proxy, instances=instances)


def searches_served(instance: Server) -> float:
    """POST searches this instance answered with 200, from its own /metrics."""
    text = httpx.get(instance.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spyglass_http_requests_total" and sample.labels == {
                "route": SEARCH,
                "method": "POST",
                "status": "200",
            }:
                return sample.value
    return 0.0


@pytest.mark.e2e
@pytest.mark.redis
def test_nginx_spreads_requests_over_both_instances(stack: Stack) -> None:
    url = stack.proxy.url
    pids = {int(httpx.get(i.url + "/livez").json()["checks"]["pid"]) for i in stack.instances}
    assert len(pids) == 2
    with httpx.Client(base_url=url, timeout=30) as client:
        seen = {int(client.get("/livez").json()["checks"]["pid"]) for _ in range(20)}
        assert seen == pids

        assert client.put("/collections/spread", json={"dim": 2}).status_code == 201
        items = [{"id": f"i{n}", "vector": [float(n), 1.0]} for n in range(5)]
        assert client.post("/collections/spread/items", json={"items": items}).status_code == 200
        before = [searches_served(i) for i in stack.instances]
        for _ in range(10):
            r = client.post("/collections/spread/search", json={"vector": [1.0, 1.0], "k": 2})
            assert r.status_code == 200 and len(r.json()["hits"]) == 2
    served = [searches_served(i) - b for i, b in zip(stack.instances, before, strict=True)]
    assert sum(served) == 10 and min(served) >= 1, served
    upstreams = {line["upstream"] for line in stack.proxy.access_log}
    assert {host_port(i.url) for i in stack.instances} <= upstreams


def logged_ids(path: Path) -> set[str]:
    ids = set()
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            ids.add(json.loads(line).get("request_id"))
    return ids


@pytest.mark.e2e
@pytest.mark.redis
def test_request_ids_reach_spyglass_and_come_back(stack: Stack) -> None:
    def in_spyglass_logs(request_id: str) -> bool:
        return any(request_id in logged_ids(i.log) for i in stack.instances)

    def in_nginx_log(request_id: str) -> bool:
        return any(line["request_id"] == request_id for line in stack.proxy.access_log)

    with httpx.Client(base_url=stack.proxy.url, timeout=30) as client:
        r = client.get("/collections", headers={"X-Request-ID": "trace-42.a_b"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42.a_b"
        eventually(lambda: in_spyglass_logs("trace-42.a_b"), "the client's id in Spyglass's log")

        made = client.get("/collections").headers["x-request-id"]  # nginx makes one
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        eventually(lambda: in_spyglass_logs(made), "nginx's id in Spyglass's log")
        eventually(lambda: in_nginx_log(made), "nginx's id in its own log")

        # An id Spyglass would not keep is replaced by nginx, so both logs still agree.
        replaced = client.get("/collections", headers={"X-Request-ID": "not ok!"})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


def remaining(response: httpx.Response) -> int:
    """Requests left in the caller's `other` budget, from Spyglass's RateLimit header."""
    assert response.status_code == 200, response.text
    match = re.search(r'"other-3600s";r=(\d+)', response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return int(match.group(1))


@pytest.mark.e2e
@pytest.mark.redis
def test_each_client_address_reaches_spyglass_through_x_forwarded_for(stack: Stack) -> None:
    """Spyglass counts rate limits per client address; behind nginx that address can only
    come from nginx's X-Forwarded-For. Two clients on two loopback addresses get a budget
    each, shared by both instances through Redis, and a forged X-Forwarded-For changes
    nothing (Spyglass believes only the hop nginx adds)."""
    first, second = (
        str(ipaddress.ip_address("127.0.0.0") + n) for n in random.sample(range(2, 2**24 - 1), 2)
    )
    a = httpx.Client(
        base_url=stack.proxy.url, transport=httpx.HTTPTransport(local_address=first), timeout=30
    )
    b = httpx.Client(
        base_url=stack.proxy.url, transport=httpx.HTTPTransport(local_address=second), timeout=30
    )
    with a, b:
        quota = 1000
        # Three requests from one address, alternating between the instances: one budget.
        assert [remaining(a.get("/collections")) for _ in range(3)] == [
            quota - 1,
            quota - 2,
            quota - 3,
        ]
        assert remaining(b.get("/collections")) == quota - 1
        forged = a.get("/collections", headers={"X-Forwarded-For": second})
        assert remaining(forged) == quota - 4
        assert remaining(b.get("/collections")) == quota - 2
    clients = {line["client"] for line in stack.proxy.access_log}
    assert {first, second} <= clients


@pytest.mark.e2e
@pytest.mark.redis
def test_nginx_refuses_a_body_over_the_limit_and_spyglass_the_smaller_ones(stack: Stack) -> None:
    (limit,) = directive(CONF.read_text(), "client_max_body_size")
    too_big = size_bytes(limit) + 1
    host, port = host_port(stack.proxy.url).split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        # The length alone condemns the body: nginx answers before reading it.
        connection.putrequest("POST", "/collections/big/items")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(too_big))
        connection.putheader("X-Request-ID", "too-big-1")
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert body["type"] == "urn:spyglass:problem:payload-too-large" and body["status"] == 413

    # A body under nginx's limit but over Spyglass's for its route class (1 MiB for
    # `other` routes) goes through nginx and gets Spyglass's own 413.
    with httpx.Client(base_url=stack.proxy.url, timeout=60) as client:
        r = client.post(
            "/collections/big/unknown",
            content=b"x" * (2 * 1024 * 1024),
            headers={"X-Request-ID": "too-big-2"},
        )
    assert r.status_code == 413
    assert r.json()["type"] == "urn:spyglass:problem:payload-too-large"
    assert r.headers["x-content-type-options"] == "nosniff"  # Spyglass's own headers

    def upstream_of(request_id: str) -> str | None:
        for line in stack.proxy.access_log:
            if line["request_id"] == request_id:
                return str(line["upstream"])
        return None

    eventually(lambda: upstream_of("too-big-2") is not None, "the 413s in nginx's log")
    assert upstream_of("too-big-1") == "", "nginx refused it without asking an instance"
    assert upstream_of("too-big-2") in {host_port(i.url) for i in stack.instances}


@pytest.mark.e2e
@pytest.mark.redis
def test_metrics_are_not_served_through_nginx(stack: Stack) -> None:
    r = httpx.get(stack.proxy.url + "/metrics")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert httpx.get(stack.instances[0].url + "/metrics").status_code == 200
