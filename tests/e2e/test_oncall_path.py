"""The on-call path (issue 15): from the overview's incident strip to the cause of each of
the demo's alerts in at most three clicks, on a desktop and on a phone; a drag-zoom that
survives the chart refresh; dark mode from the operating system's setting."""
from __future__ import annotations

import re

import pytest

from tests.e2e.browser import PAGE_TIMEOUT_MS, plotted_points, screenshot
from tests.e2e.world import (
    DRIFT_RULE, FAILURE_RULE, LAG_RULE, STOPPED_GROUP, STOPPED_RULE, STORM_RULE, TRACE_PAGE,
)

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}


class Clicks:
    """Counts the clicks of one walk; the goal is at most three from the overview."""

    def __init__(self, page) -> None:
        self.page, self.count = page, 0

    def click(self, locator) -> None:
        self.count += 1
        assert self.count <= 3, "more than three clicks from the overview to the cause"
        locator.click()


def overflowing(page) -> list[str]:
    """The elements that stick out past the right edge of the screen without a scrolling
    box of their own around them (for the failure message)."""
    return page.evaluate("""() => {
        const clipped = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
            const o = getComputedStyle(p).overflowX; if (o !== 'visible') return true; } return false; };
        const wide = [...document.querySelectorAll('body *')]
          .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1 && !clipped(el))
          .map(el => `${el.tagName.toLowerCase()}#${el.id}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`);
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        const range = document.createRange();
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          range.selectNodeContents(node);
          const right = range.getBoundingClientRect().right;
          if (right > window.innerWidth + 1 && !clipped(node.parentElement) && node.textContent.trim()) {
            wide.push(`text in ${node.parentElement.tagName.toLowerCase()}.${node.parentElement.className}: ${node.textContent.trim().slice(0, 40)} ${Math.round(right)}`);
          }
        }
        return wide.slice(0, 10);
    }""")


def incident(page, rule: str):
    row = page.locator("#incident-list .incident[data-kind=alert]", has_text=rule)
    assert row.count() == 1, f"{rule!r} is not in the incident strip: {page.locator('#incidents').inner_text()}"
    return row


RULES = (LAG_RULE, STOPPED_RULE, FAILURE_RULE, STORM_RULE, DRIFT_RULE)


def open_overview(page) -> None:
    page.goto("/")
    # On a phone the nav is collapsed; its menu button carries the same count.
    badge = page.locator("#menu-firing-badge" if getattr(page, "phone", False) else "#firing-badge")
    assert badge.is_visible()
    assert int(badge.inner_text()) >= len(RULES)


def test_every_demo_alert_fires_in_the_test_world(world):
    missing = set(RULES) - set(world.notes["firing"])
    assert not missing, f"not firing: {missing}; firing: {world.notes['firing']}; {world.notes['evaluations']}"


def assert_stopped_group(page) -> None:
    page.wait_for_url(re.compile(re.escape(f"/groups/{STOPPED_GROUP}/")))
    assert "Stopped" in page.locator("main").inner_text()
    assert plotted_points(page, "#charts .chart")[0] > 1


def walk_lag(page, clicks: Clicks) -> None:
    row = incident(page, LAG_RULE)
    assert row.get_attribute("data-severity") == "critical"
    assert "since" in row.locator(".incident-since").inner_text()
    clicks.click(row.locator(".incident-title"))  # the alert page is the hub
    page.wait_for_url(re.compile(r"/alerts/\d+/$"))
    assert page.locator("[data-state=firing]").count() == 1
    plotted_points(page, "#chart-alert")
    phone = getattr(page, "phone", False)
    screenshot(page, "alert-hub-phone" if phone else "alert-hub", readme=not phone)
    shapes = page.evaluate("() => document.querySelector('#chart-alert').layout.annotations.map(a => a.text)")
    assert any(text.startswith("threshold 20") for text in shapes) and any(text.startswith("onset") for text in shapes)
    assert page.locator("#alert-links a[data-role=traces]").get_attribute("href").endswith("failed=1")
    clicks.click(page.locator("#alert-links a[data-role=group]"))
    assert_stopped_group(page)


def walk_stopped(page, clicks: Clicks) -> None:
    row = incident(page, STOPPED_RULE)
    reason = row.locator(".incident-summary").inner_text()  # the group's status reason, inline
    assert reason
    clicks.click(row.locator("a[data-role=group]"))
    assert_stopped_group(page)
    assert reason in page.locator("#group-summary .reason").inner_text()
    assert STOPPED_RULE in page.locator("#group-firing").inner_text()  # next to the status line


def walk_dead_letters(page, clicks: Clicks) -> None:
    row = incident(page, FAILURE_RULE)
    clicks.click(row.locator("a[data-role=trace]"))
    page.wait_for_url(TRACE_PAGE)
    stages = set(page.locator("#trace-events .stage").all_inner_texts())
    assert stages & {"failed", "dead_lettered"}, stages


def walk_storm(page, clicks: Clicks) -> None:
    row = incident(page, STORM_RULE)
    clicks.click(row.locator("a[data-role=trace]"))
    page.wait_for_url(TRACE_PAGE)
    reports = int(page.locator(".stat .value").nth(1).inner_text().replace(",", ""))
    assert reports >= 50, reports  # the fan-out is the cause


def walk_drift(page, clicks: Clicks) -> None:
    row = incident(page, DRIFT_RULE)
    clicks.click(row.locator("a[data-role=event-topic]"))
    page.wait_for_url(re.compile(r"/event-topics/"))
    drift = page.locator("#topic-schema table[data-drift=true]")
    assert drift.count() >= 1 and "2" in drift.first.inner_text()


WALKS = {"lag": walk_lag, "stopped": walk_stopped, "dead-letters": walk_dead_letters, "storm": walk_storm,
         "schema-drift": walk_drift}


@pytest.mark.parametrize("name", list(WALKS))
def test_from_the_incident_strip_to_the_cause_in_at_most_three_clicks(page, world, name):
    open_overview(page)
    if name == "lag":
        screenshot(page, "incidents", readme=True)
    clicks = Clicks(page)
    WALKS[name](page, clicks)
    assert clicks.count <= 3
    screenshot(page, f"cause-{name}")


@pytest.mark.parametrize("name", list(WALKS))
def test_the_same_walk_on_a_phone(browser, world, signed_in_state, name):
    context = browser.new_context(base_url=world.url, viewport=PHONE, storage_state=signed_in_state,
                                  color_scheme="light", has_touch=True, is_mobile=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.phone = True
    try:
        open_overview(page)
        # Nothing runs off the side of the screen: the nav is behind a menu button, groups are
        # cards, tables scroll in place (also on the event-topic page: its columns shrink to fit).
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], overflowing(page)
        clicks = Clicks(page)
        WALKS[name](page, clicks)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], overflowing(page)
        if name == "lag":
            screenshot(page, "phone-group")
    finally:
        context.close()


def test_on_a_phone_the_nav_opens_from_a_menu_button_and_groups_are_cards(browser, world, signed_in_state):
    context = browser.new_context(base_url=world.url, viewport=PHONE, storage_state=signed_in_state,
                                  color_scheme="light", has_touch=True, is_mobile=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto("/")
        nav = page.locator("#site-nav")
        assert not nav.get_by_role("link", name="Clusters").is_visible()
        page.locator("#nav-toggle").tap()
        assert page.locator("#nav-toggle").get_attribute("aria-expanded") == "true"
        for name in ("Clusters", "Admin"):
            link = nav.get_by_role("link", name=name)
            assert link.is_visible()
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        logout = page.get_by_role("button", name="Log out")
        box = logout.bounding_box()
        assert logout.is_visible() and box is not None and box["x"] + box["width"] <= PHONE["width"]
        # No element is wider than the screen: the groups are stacked cards, not a wide table.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], overflowing(page)
        card = page.locator("#groups-table tbody tr", has_text=STOPPED_GROUP)
        assert card.count() == 1
        card_box = card.bounding_box()
        assert card_box is not None and card_box["x"] + card_box["width"] <= PHONE["width"]
        for cell in (".group-name", ".status-cell", ".total-lag", ".time-lag"):
            part = card.locator(cell)
            assert part.is_visible(), cell
            part_box = part.bounding_box()
            assert part_box is not None and part_box["x"] + part_box["width"] <= PHONE["width"] + 1, cell
        assert STOPPED_GROUP in card.locator(".group-name").inner_text()
        label = card.locator(".total-lag").evaluate("el => getComputedStyle(el, '::before').content")
        assert "Total lag" in label
        assert card.locator(".status-cell .status").count() >= 1
        screenshot(page, "phone-overview")
        page.locator("#nav-toggle").tap()
        assert not nav.get_by_role("link", name="Clusters").is_visible()
    finally:
        context.close()


def test_a_drag_zoom_survives_the_chart_refresh(page, world):
    page.goto(world.group_path(STOPPED_GROUP))
    selector = "#charts .chart"
    plotted_points(page, selector)
    before = page.evaluate(f"() => document.querySelector('{selector}')._fullLayout.xaxis.range.slice()")
    box = page.locator(f"{selector} .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=8)
    page.mouse.up()
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel)._fullLayout.xaxis.range[0] !== before[0]",
        arg=[selector, before])
    zoomed = page.evaluate(f"() => document.querySelector('{selector}')._fullLayout.xaxis.range.slice()")
    page.evaluate("() => document.dispatchEvent(new CustomEvent('monitor:refresh'))")
    page.wait_for_function("() => document.querySelector('#charts').dataset.refreshes === '1'")
    after = page.evaluate(f"() => document.querySelector('{selector}')._fullLayout.xaxis.range.slice()")
    assert after == zoomed != before


def test_dark_mode_follows_the_operating_system_until_the_user_chooses(browser, world, signed_in_state):
    context = browser.new_context(base_url=world.url, viewport={"width": 1440, "height": 900},
                                  storage_state=signed_in_state, color_scheme="dark")
    page = context.new_page()
    try:
        page.goto("/")
        assert page.get_attribute("html", "data-theme") == "dark"
        assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != "rgb(255, 255, 255)"
        screenshot(page, "overview-dark", readme=True)
        page.click("#theme-toggle")  # the user's choice wins over the system's from now on
        page.reload()
        assert page.get_attribute("html", "data-theme") == "light"
    finally:
        context.close()


def test_the_flow_focus_applies_as_soon_as_it_is_picked_and_a_whole_edge_hovers(page, world):
    page.goto("/flow/")
    page.wait_for_function("() => document.querySelector('#flow-graph')._fullLayout")
    hit = page.evaluate("""() => document.querySelector('#flow-graph').data
        .filter(t => t.meta && t.meta.part === 'edge-hit').map(t => t.x.length)""")
    assert hit and hit[0] > 0
    service = page.locator("#flow-focus option").nth(1).get_attribute("value")
    page.select_option("#flow-focus", service)
    page.wait_for_url(re.compile(r"focus="))
    assert service in page.locator("h1").inner_text()
