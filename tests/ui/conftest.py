"""Real-browser tests of the web UI: Debian's Chromium, driven by Playwright, against real
``spyglass`` servers started here.

Chromium is the system's (``apt-get install chromium``): Playwright's own browser
download cannot work offline, so ``playwright install`` is never run. The flags keep
Chromium from calling home on a machine without a network.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.e2e.server import Server, start

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a camera for the webcam test: Chromium's own moving test pattern, no prompt
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One Chromium for the session; every test gets a fresh context (its own storage).

    ``launch`` gives Chromium a new, empty user-data directory of its own.
    """
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install -y --no-install-recommends chromium")
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@dataclass
class Console:
    """What the page printed: errors and Content-Security-Policy violations fail a test."""

    messages: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            self.messages.append(f"{message.type}: {message.text}")

    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A new page in a fresh context, desktop sized; it must cause no CSP violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.on("console", console.record)
    page.on("pageerror", lambda error: console.messages.append(f"pageerror: {error}"))
    yield page
    context.close()
    assert console.csp_violations() == []
    assert [m for m in console.messages if m.startswith("pageerror")] == []


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of the whole page to tests/ui/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``spyglass demo``: the text collection ``demo`` and the color collection ``colors``,
    open (no key), as a user first meets it."""
    where = tmp_path_factory.mktemp("demo")
    server = start(where / "data", log=where / "server.log", command="demo", timeout=300)
    yield server
    stop(server)


@dataclass
class Guarded:
    """A server that needs a key: its admin key and one read-only key."""

    server: Server
    admin_key: str
    read_key: str

    @property
    def url(self) -> str:
        return self.server.url


NOTES = [
    ("bees", "Honeybees make honey from the nectar of flowers."),
    ("tides", "Tides are caused by the pull of the moon on the oceans."),
    ("volcano", "A volcano erupts when magma rises through the crust."),
]


def notes_collection(url: str, key: str | None = None) -> None:
    """A small collection searched by keyword: no model to load, so the server is quick."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        created = client.put("/collections/notes", json={"dim": 2, "encoder": "none"})
        assert created.status_code == 201, created.text
        items = [
            {"id": name, "vector": [1.0, float(i)], "text": text, "payload": {"source": name}}
            for i, (name, text) in enumerate(NOTES)
        ]
        assert client.post("/collections/notes/items", json={"items": items}).status_code == 200


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """``spyglass serve`` with an admin key from the environment and a ``notes`` collection."""
    where = tmp_path_factory.mktemp("guarded")
    admin_key = secrets.token_hex(24)
    server = start(where / "data", log=where / "server.log", env={"SPYGLASS_ADMIN_KEY": admin_key})
    try:
        notes_collection(server.url, admin_key)
        made = httpx.post(
            f"{server.url}/admin/keys",
            json={"scopes": ["read"], "label": "ui tests"},
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        yield Guarded(server, admin_key, made.json()["key"])
    finally:
        stop(server)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An open ``spyglass serve`` allowing one search a minute per caller."""
    where = tmp_path_factory.mktemp("limited")
    server = start(
        where / "data",
        log=where / "server.log",
        env={"SPYGLASS_RATE_LIMIT_SEARCH": "1/minute"},
    )
    try:
        notes_collection(server.url)
        yield server
    finally:
        stop(server)
