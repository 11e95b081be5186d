"""Driving the pages like a user: headless Chromium (Debian's, driven by Playwright), a
watch over what a page did wrong, screenshots, and reading what Plotly drew."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from tests.e2e.world import ARTIFACTS_DIR, PROJECT_DIR, World

SCREENSHOTS_DIR = ARTIFACTS_DIR / "screenshots"
README_SCREENSHOTS_DIR = PROJECT_DIR / "static" / "screenshots"
# The committed README screenshots change only when asked for: every run would otherwise
# leave the checkout dirty (clocks and numbers differ from run to run).
UPDATE_README_SCREENSHOTS = os.environ.get("E2E_UPDATE_README_SCREENSHOTS", "") == "1"

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make test` installs it); Playwright never downloads one
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1440, "height": 900}
# How long a click or a navigation may wait for the page: generous, since the suite runs on a
# loaded 2-core machine (a login landing on the overview has taken over 15 s there).
PAGE_TIMEOUT_MS = 60_000


class PageWatch:
    """What a page did that a user would not want: console errors, uncaught exceptions,
    failed responses, and any request leaving the machine (the dashboard works offline)."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.foreign_requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in {"data", "blob", "about"}:
            return
        if parts.hostname != "127.0.0.1":
            self.foreign_requests.append(request.url)

    def _response(self, response) -> None:
        if response.status >= 500 or (response.status == 404 and response.url.endswith("/favicon.ico")):
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def problems(self) -> list[str]:
        return self.errors + [f"request to another host: {url}" for url in self.foreign_requests]


def new_page(browser, world: World, storage_state=None):
    context = browser.new_context(base_url=world.url, viewport=VIEWPORT, storage_state=storage_state,
                                  color_scheme="light")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    return context, page, PageWatch(page)


def screenshot(page, name: str, readme: bool = False) -> Path:
    """Full page into test-artifacts/screenshots/; the viewport into static/screenshots/
    (the README's) when asked to refresh those."""
    path = SCREENSHOTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme and UPDATE_README_SCREENSHOTS:
        README_SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOTS_DIR / f"{name}.png"))
    return path


def plotted_points(page, selector: str) -> list[int]:
    """How many points each trace of a drawn Plotly chart has (waits until it is drawn)."""
    page.wait_for_function(
        "(sel) => { const gd = document.querySelector(sel); return gd && gd.data && gd.data.length > 0 "
        "&& gd._fullLayout; }", arg=selector)
    return page.evaluate(
        "(sel) => document.querySelector(sel).data.map(t => (t.x || []).length)", selector)


def node_names(page, selector: str, kind: str) -> set[str]:
    """The labels of a flow figure's nodes of one kind ("service" or "topic"), as drawn."""
    page.wait_for_function("(sel) => { const gd = document.querySelector(sel); return gd && gd._fullLayout; }",
                           arg=selector)
    return set(page.evaluate(
        """([sel, kind]) => document.querySelector(sel).data
             .filter(t => t.meta && t.meta.part === 'node' && t.meta.kind === kind)
             .flatMap(t => t.text)""", [selector, kind]))


def click_plotted_point(page, selector: str, part: str, label: str) -> None:
    """Click a drawn point (e.g. a flow node) the way a user does: at its pixel position."""
    position = page.evaluate(
        """([sel, part, label]) => {
             const gd = document.querySelector(sel);
             const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
             for (const t of gd.data) {
               if (!t.meta || t.meta.part !== part) continue;
               const i = (t.text || []).indexOf(label);
               if (i >= 0) return {x: xa._offset + xa.l2p(t.x[i]), y: ya._offset + ya.l2p(t.y[i])};
             }
             return null;
           }""", [selector, part, label])
    assert position, f"no {part} labelled {label!r} in {selector}"
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + position["x"], box["y"] + position["y"]
    page.mouse.move(x, y)
    page.wait_for_timeout(100)  # Plotly finds the hovered point on mouse move
    page.mouse.click(x, y)


def zoom_to_data(page, selector: str, padding_seconds: float = 3) -> None:
    """Zoom a time chart to where its points are, as a user drags a box over them: the test
    world is seconds old, so a 15-minute axis would show it as a spike at the right edge."""
    page.evaluate(
        """([sel, pad]) => {
             const gd = document.querySelector(sel);
             const xa = gd._fullLayout.xaxis;
             const times = gd.data.flatMap(t => (t.x || []).map(v => xa.d2l(v)));
             return Plotly.relayout(gd, {'xaxis.range': [xa.l2r(Math.min(...times) - pad),
                                                         xa.l2r(Math.max(...times) + pad)]});
           }""", [selector, padding_seconds * 1000])
