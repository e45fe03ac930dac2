"""The web UI in a real browser (Chromium) against real servers: every view, its errors,
a phone-sized screen and the names of its controls."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.conftest import SHARED_DATA
from tests.e2e.server import Server
from tests.ui.conftest import Console, Guarded, screenshot

pytestmark = pytest.mark.e2e

expect.set_options(timeout=60_000)

CHERRY = ["#9d0208", "#d00000", "#ffccd5", "#ffffff"]  # the demo's "cherry" palette
PHOTOS = SHARED_DATA / "photos" / "color"


def open_collection(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"#collection option[value='{name}']", state="attached")
    page.get_by_label("Collection").select_option(name)
    expect(page.locator("#collection-info")).not_to_be_empty()


def use_key(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def alert(page: Page) -> Locator:
    """The alert region (role="alert"); it is not displayed while empty."""
    return page.locator("#alert[role=alert]")


def first_hit_id(page: Page) -> Locator:
    return page.locator(".results li").first.locator(".hit-id")


def text_search(page: Page, query: str) -> None:
    page.get_by_label("Search text").fill(query)
    page.get_by_role("button", name="Search", exact=True).click()


def demo_image(server: Server, item_id: str) -> Image.Image:
    answer = httpx.get(f"{server.url}/collections/colors/images/{item_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return Image.open(io.BytesIO(answer.content)).convert("RGB")


def near_duplicate(image: Image.Image) -> bytes:
    """The image cropped by a few pixels on each side and scaled down, as a JPEG."""
    w, h = image.size
    cropped = image.crop((6, 4, w - 5, h - 6)).resize((int(w * 0.9), int(h * 0.9)))
    out = io.BytesIO()
    cropped.save(out, format="JPEG", quality=90)
    return out.getvalue()


# --- text collections ----------------------------------------------------------------


def test_text_search_shows_the_expected_first_result(page: Page, demo: Server) -> None:
    open_collection(page, demo.url, "demo")
    text_search(page, "how do bees make honey")
    expect(first_hit_id(page)).to_have_text("honeybees.md#0")
    first = page.locator(".results li").first
    expect(first.locator(".hit-source")).to_have_text("honeybees.md")
    marked = {m.lower() for m in first.locator("mark").all_inner_texts()}
    assert {"honey", "bees"} & marked, marked
    expect(page.locator(".timing:visible")).to_contain_text("server")
    expect(page.locator(".timing:visible")).to_contain_text("round trip")
    screenshot(page, "text-search")


def test_search_modes_and_filter(page: Page, demo: Server) -> None:
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/search") else None)
    open_collection(page, demo.url, "demo")
    page.get_by_label("Keyword (words)").filter(visible=True).check()
    filter_box = page.get_by_label("Filter on payload fields (JSON)").filter(visible=True)
    filter_box.fill('{"source": "honeybees.md"')  # not JSON: refused before sending
    text_search(page, "honey")
    expect(alert(page)).to_contain_text("the filter is not valid JSON")
    expect(filter_box).to_have_attribute("aria-invalid", "true")
    assert sent == []

    filter_box.fill('{"source": {"$ne": "honeybees.md"}}')
    text_search(page, "water")
    expect(page.locator(".results li").first).to_be_visible()
    assert sent and sent[-1].post_data_json["mode"] == "keyword"
    assert sent[-1].post_data_json["filter"] == {"source": {"$ne": "honeybees.md"}}
    sources = page.locator(".results .hit-source").all_inner_texts()
    assert sources and "honeybees.md" not in sources
    expect(alert(page)).to_be_empty()


def test_ask_streams_an_answer_with_numbered_citations(page: Page, demo: Server) -> None:
    open_collection(page, demo.url, "demo")
    page.get_by_role("tab", name="Ask").click()
    page.get_by_label("Question").fill("How do bees make honey?")
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.get_by_role("region", name="Answer")
    citations = answer.locator(".citations").first.locator("li")
    expect(citations.first).to_be_visible()
    expect(answer.locator(".answer-text")).not_to_be_empty()
    for text in citations.all_inner_texts():
        assert re.match(r"\[[1-9]\d*\] ", text), text
    expect(answer.locator(".meta")).to_contain_text("Answered by extractive")
    expect(answer.locator(".sources summary")).to_contain_text("Retrieved passages")
    screenshot(page, "ask")


def test_ask_shows_the_reason_it_abstained(page: Page, demo: Server) -> None:
    open_collection(page, demo.url, "demo")
    page.get_by_role("tab", name="Ask").click()
    page.get_by_label("Question").fill("What is the airspeed velocity of a laden swallow in Rome?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator(".abstained")).to_contain_text("No answer.")


# --- images and colors ----------------------------------------------------------------


def test_color_palette_search_shows_swatches(page: Page, demo: Server) -> None:
    open_collection(page, demo.url, "colors")
    page.get_by_label("Color 1", exact=True).fill(CHERRY[0])  # the color picker
    page.get_by_label("Color 2 hex").fill(CHERRY[1])  # the hex text box
    add = page.get_by_role("button", name="Add a color")
    for n, hex_color in enumerate(CHERRY[2:], start=3):
        add.click()
        page.get_by_label(f"Color {n} hex").fill(hex_color)
    for n in range(1, 5):
        page.get_by_label(f"Color {n} weight").fill("50")
    add.click()
    expect(add).to_be_disabled()  # five colors at most
    page.get_by_role("button", name="Remove color 5").click()

    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/search") else None)
    page.get_by_role("button", name="Search by palette").click()
    expect(first_hit_id(page)).to_have_text(re.compile(r"^cherry-"))
    body = sent[-1].post_data_json
    assert body["colors"] == CHERRY and body["rerank"] is True
    assert body["weights"] == [0.25] * 4 and body["dominant_colors"] == 5
    cards = page.locator(".grid .card")
    expect(cards.first.locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    for card in cards.all():
        expect(card.locator(".swatch").first).to_be_attached()
    label = cards.first.locator(".swatches").get_attribute("aria-label") or ""
    assert re.search(r"#[0-9a-f]{6} \d+%", label), label
    screenshot(page, "color")

    page.get_by_label("Fast (index only)").check()
    page.get_by_role("button", name="Search by palette").click()
    expect(page.locator(".timing:visible")).to_contain_text("round trip")
    assert sent[-1].post_data_json["rerank"] is False
    expect(first_hit_id(page)).to_have_text(re.compile(r"^cherry-"))


def test_image_upload_finds_its_near_duplicate_first(
    page: Page, demo: Server, tmp_path: Path
) -> None:
    query = tmp_path / "ocean-2-cropped.jpg"
    query.write_bytes(near_duplicate(demo_image(demo, "ocean-2")))
    open_collection(page, demo.url, "colors")
    page.get_by_text("Or search with a photo’s colors").click()
    page.get_by_label("Photo to search with").set_input_files(query)
    expect(first_hit_id(page)).to_have_text("ocean-2")
    expect(page.locator(".preview")).to_be_visible()
    expect(page.locator(".grid .card").first.locator("img")).to_have_attribute(
        "src", re.compile(r"^blob:")
    )
    screenshot(page, "image-upload")


def test_pasting_an_image_searches_with_it(page: Page, demo: Server) -> None:
    data = base64.b64encode(near_duplicate(demo_image(demo, "forest-1"))).decode()
    open_collection(page, demo.url, "colors")
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const clipboard = new DataTransfer();
            clipboard.items.add(new File([bytes], 'pasted.jpg', {type: 'image/jpeg'}));
            document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: clipboard}));
        }""",
        data,
    )
    expect(first_hit_id(page)).to_have_text("forest-1")


def test_face_identification(page: Page, demo: Server, tmp_path: Path) -> None:
    astronaut = (PHOTOS / "skimage_astronaut.png").read_bytes()
    with httpx.Client(base_url=demo.url, timeout=120) as client:
        made = client.put("/collections/staff", json={"encoder": "face"})
        assert made.status_code in (200, 201), made.text
        enrolled = client.post(
            "/collections/staff/faces",
            data={"person": "eileen"},
            files={"file": ("astronaut.png", astronaut, "image/png")},
        )
        assert enrolled.status_code == 200, enrolled.text
    query = tmp_path / "astronaut.jpg"
    query.write_bytes(near_duplicate(Image.open(io.BytesIO(astronaut)).convert("RGB")))
    open_collection(page, demo.url, "staff")
    page.get_by_label("Photo to identify").set_input_files(query)
    expect(page.locator(".verdict")).to_have_text("Identified: eileen")
    expect(page.locator(".facts")).to_contain_text("Similarity")
    expect(page.locator("canvas.frame")).to_be_visible()
    screenshot(page, "face")
    page.get_by_label("Photo to identify").set_input_files(PHOTOS / "skimage_coffee.png")
    expect(page.locator(".verdict")).to_have_text("No face found")


def test_webcam_frames_are_identified(browser: Browser, demo: Server, console: Console) -> None:
    """Chromium's fake camera (a test pattern, no face): frames go to /identify until the
    webcam is stopped, each a JPEG at most 640 pixels on its long side."""
    with httpx.Client(base_url=demo.url, timeout=120) as client:
        assert client.put("/collections/doorway", json={"encoder": "face"}).status_code in (
            200,
            201,
        )
    context = browser.new_context(permissions=["camera"])
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.on("console", console.record)
    # Playwright cannot read multipart bodies holding blobs: note each frame's size in-page.
    page.add_init_script(
        """window.frames_sent = [];
        const fetched = window.fetch;
        window.fetch = async (url, init) => {
            const file = init?.body instanceof FormData ? init.body.get('file') : null;
            if (file && String(url).endsWith('/identify')) {
                const bitmap = await createImageBitmap(file);
                window.frames_sent.push([file.type, bitmap.width, bitmap.height]);
            }
            return fetched(url, init);
        };"""
    )
    try:
        open_collection(page, demo.url, "doorway")
        page.get_by_role("button", name="Start the webcam").click()
        expect(page.locator(".verdict")).to_have_text("No face found")
        expect(page.get_by_label("Webcam")).to_be_visible()
        page.wait_for_function("() => document.querySelectorAll('.verdict').length === 1")
        page.get_by_role("button", name="Stop the webcam").click()
        expect(page.get_by_label("Webcam")).to_be_hidden()
        page.wait_for_timeout(500)  # a frame already on its way may still arrive
        frames = page.evaluate("() => window.frames_sent")
        assert frames
        for kind, width, height in frames:
            assert kind == "image/jpeg" and 0 < max(width, height) <= 640
        page.wait_for_timeout(1500)  # three frame intervals: nothing more is sent
        assert page.evaluate("() => window.frames_sent.length") == len(frames)
    finally:
        context.close()
    assert console.csp_violations() == []


# --- errors ---------------------------------------------------------------------------


def test_a_bad_key_is_a_readable_401(page: Page, guarded: Guarded) -> None:
    page.goto(guarded.url)
    expect(alert(page)).to_contain_text("401")  # no key yet: the list is refused
    use_key(page, "sg_000000000000_not-a-real-key")
    expect(alert(page)).to_contain_text("Unauthorized (401)")
    expect(alert(page)).to_contain_text("Enter a valid API key")
    screenshot(page, "error-401")
    use_key(page, guarded.read_key)
    page.wait_for_selector("#collection option[value='notes']", state="attached")
    expect(alert(page)).not_to_contain_text("401")
    assert page.evaluate("() => sessionStorage.getItem('spyglass.apiKey')") == guarded.read_key
    assert guarded.read_key not in page.url


def test_rate_limited_search_shows_retry_after(page: Page, limited: Server) -> None:
    open_collection(page, limited.url, "notes")
    text_search(page, "honey")
    expect(first_hit_id(page)).to_have_text("bees")
    text_search(page, "moon")
    expect(alert(page)).to_contain_text("429")
    expect(alert(page)).to_contain_text(re.compile(r"Retry after \d+ s"))
    screenshot(page, "error-429")


def test_admin_view(page: Page, guarded: Guarded) -> None:
    page.goto(guarded.url)
    use_key(page, guarded.read_key)
    page.get_by_role("tab", name="Admin").click()
    expect(alert(page)).to_contain_text("403")  # a read key is not an admin's

    page.get_by_role("tab", name="Explore").click()
    use_key(page, guarded.admin_key)
    open_collection(page, guarded.url, "notes")
    for query in ("honey", "honey", "moon"):  # the second is a cache hit
        text_search(page, query)
        expect(page.locator(".timing:visible")).to_contain_text("round trip")
    page.get_by_role("tab", name="Admin").click()
    collections = page.get_by_role("region", name="Collections")
    expect(collections.locator("tr", has_text="notes")).to_contain_text("none")
    row = collections.locator("tr", has_text="notes").locator("td")
    expect(row.nth(2)).to_have_text("2")  # dim
    expect(row.nth(3)).to_have_text("3")  # items
    page.get_by_role("button", name="Refresh now").click()
    stats = page.locator(".stats")
    expect(stats.locator(".stat", has_text="Requests/s").locator("dd")).to_have_text(
        re.compile(r"^\d")
    )
    expect(stats.locator(".stat", has_text="Latency p95").locator("dd")).to_have_text(
        re.compile(r"^\d.* m?s")
    )
    expect(stats.locator(".stat", has_text="Cache hit rate").locator("dd")).to_have_text(
        re.compile(r"^\d+(\.\d)?%")
    )
    expect(stats.locator(".stat", has_text="Rate limited (429)").locator("dd")).to_have_text(
        re.compile(r"^\d+")
    )
    expect(page.get_by_role("region", name="Requests by route (since start)")).to_contain_text(
        "/collections/{name}/search"
    )
    expect(alert(page)).to_be_empty()
    screenshot(page, "admin")


# --- layout and accessibility ---------------------------------------------------------


def no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths


def test_phone_width_has_no_horizontal_scroll(browser: Browser, demo: Server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        open_collection(page, demo.url, "demo")
        text_search(page, "how do bees make honey")
        expect(first_hit_id(page)).to_have_text("honeybees.md#0")
        no_horizontal_scroll(page)
        screenshot(page, "phone-text")
        page.get_by_role("tab", name="Ask").click()
        page.get_by_label("Question").fill("How do bees make honey?")
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.locator(".citations li").first).to_be_visible()
        no_horizontal_scroll(page)

        page.get_by_label("Collection").select_option("colors")
        page.get_by_role("button", name="Add a color").click()
        page.get_by_role("button", name="Search by palette").click()
        expect(page.locator(".grid .card").first).to_be_visible()
        no_horizontal_scroll(page)
        screenshot(page, "phone-color")

        page.get_by_role("tab", name="Admin").click()
        expect(page.get_by_role("region", name="Collections")).to_contain_text("colors")
        no_horizontal_scroll(page)
        screenshot(page, "phone-admin")
    finally:
        context.close()


CONTROL_ROLES = "button|textbox|searchbox|combobox|spinbutton|slider|checkbox|radio|tab"
UNNAMED = re.compile(rf"^\s*- ({CONTROL_ROLES})(?: \[[^\]]*\])?(?::.*)?$", re.MULTILINE)


def assert_every_control_named(page: Page) -> None:
    """No control in the accessibility tree without a name, and every form control of the
    page reachable by its label."""
    tree = page.locator("body").aria_snapshot()
    assert not UNNAMED.findall(tree), tree
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.checkVisibility() && el.labels.length === 0
                && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []


def test_every_control_has_an_accessible_name(page: Page, demo: Server) -> None:
    open_collection(page, demo.url, "demo")
    for label in ("API key", "Collection", "Search text", "Results (k)", "Hybrid"):
        expect(page.get_by_label(label, exact=True).filter(visible=True)).to_be_visible()
    expect(
        page.get_by_label("Filter on payload fields (JSON)").filter(visible=True)
    ).to_be_visible()
    assert_every_control_named(page)

    search_tab = page.get_by_role("tab", name="Search")
    search_tab.focus()
    page.keyboard.press("ArrowRight")  # a tablist: arrows move between its tabs
    ask_tab = page.get_by_role("tab", name="Ask")
    expect(ask_tab).to_be_focused()
    expect(ask_tab).to_have_attribute("aria-selected", "true")
    expect(page.get_by_label("Question")).to_be_visible()
    assert_every_control_named(page)

    page.get_by_label("Collection").select_option("colors")
    for label in (
        "Color 1",
        "Color 1 hex",
        "Color 1 weight",
        "Accurate (rerank by color distance)",
    ):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    page.get_by_text("Or search with a photo’s colors").click()
    expect(page.get_by_label("Photo to search with")).to_be_visible()
    assert_every_control_named(page)

    page.get_by_role("tab", name="Admin").click()
    expect(page.get_by_label("Refresh", exact=True)).to_be_visible()
    assert_every_control_named(page)
