"""The night-time path: from a firing alert to the group behind, and on to a trace that
shows where one order got stuck."""
import pytest

from tests.e2e.browser import plotted_points, screenshot
from tests.e2e.world import FAILURE_RULE, LAG_RULE, STOPPED_GROUP, TRACE_PAGE

pytestmark = pytest.mark.e2e


def test_from_a_lag_alert_to_its_group_and_on_to_a_trace(page, world):
    page.goto("/")
    page.click("nav >> text=Alerts")
    firing = page.locator(".alerts-table[data-state=firing] tbody tr", has_text=LAG_RULE)
    assert firing.locator(".status").inner_text() == "critical"
    screenshot(page, "alerts")
    firing.locator("a", has_text=LAG_RULE).click()
    page.wait_for_url(f"**/alerts/{world.firing_alert_id}/")
    assert page.locator("[data-state=firing]").count() == 1
    screenshot(page, "alert")

    page.click("text=group page")
    page.wait_for_url(f"**{world.group_path(STOPPED_GROUP)}")
    assert plotted_points(page, "#charts .chart")[0] > 1

    page.click("#group-links >> text=Traces through this group")
    page.wait_for_url("**/traces/?group=**")
    page.locator("#traces-table tbody tr a").first.click()
    page.wait_for_url(TRACE_PAGE)
    assert STOPPED_GROUP in page.locator("#trace-links").inner_text()
    assert len(plotted_points(page, "#trace-timeline")) > 0


def test_from_a_failure_alert_to_the_trace_of_a_dead_lettered_order(page, world):
    page.goto("/alerts/")
    page.locator(".alerts-table[data-state=firing] a", has_text=FAILURE_RULE).click()
    page.click("#alert-traces")  # the alert's traces link is already filtered to failures
    page.wait_for_url("**/traces/?group=**failed=1**")
    dead_lettered = page.locator("#traces-table tbody tr").filter(has=page.locator("td.bad")).first
    dead_lettered.locator("a").first.click()
    page.wait_for_url(TRACE_PAGE)
    stages = page.locator("#trace-events .stage").all_inner_texts()
    assert "failed" in stages


def test_a_trace_timeline_draws_every_report_in_causal_order(page, world):
    page.goto(f"/traces/{world.failed_trace_id}/")
    assert page.locator("#trace-id").inner_text() == world.failed_trace_id
    reports = int(page.locator(".stat .value").nth(1).inner_text())
    rows = page.locator("#trace-events tbody tr")
    assert rows.count() == reports > 1
    # The order starts in the orders service's outbox; its relay then publishes it.
    assert rows.locator(".stage").all_inner_texts()[:2] == ["outbox", "published"]
    assert "dead_lettered" in page.locator("#trace-events").inner_text()
    assert "Stopped here" in page.locator("#trace-stuck").inner_text()
    drawn = page.evaluate("() => document.querySelector('#trace-timeline').data.map(t => t.meta && t.meta.part)")
    assert {"step", "mark"} <= set(drawn)
    screenshot(page, "trace", readme=True)


def test_searching_by_an_orders_key_finds_its_trace(page, world):
    page.goto(f"/traces/{world.failed_trace_id}/")
    key = page.locator("#trace-links a[href*='q=']").first.inner_text()
    page.goto("/traces/")
    page.fill("#trace-q", key)
    page.press("#trace-q", "Enter")
    page.wait_for_url(f"**/traces/**")
    assert world.failed_trace_id in page.url or world.failed_trace_id in page.locator("main").inner_text()
