"""The lag side in the browser: overview, a group's chart, a topic, the clusters."""
import pytest

from tests.e2e.browser import plotted_points, screenshot, zoom_to_data
from tests.e2e.world import CLUSTER, GROUPS, STOPPED_GROUP, TOPICS

pytestmark = pytest.mark.e2e


def test_the_overview_lists_every_seeded_group_with_its_status(page, world):
    page.goto("/")
    rows = page.locator("#groups-table tbody tr")
    shown = {rows.nth(i).locator("td").nth(1).inner_text(): rows.nth(i).get_attribute("data-status")
             for i in range(rows.count())}
    assert set(shown) == set(GROUPS)
    assert shown[STOPPED_GROUP] == "stopped"
    stopped_row = page.locator("#groups-table tbody tr", has_text=STOPPED_GROUP)
    assert stopped_row.locator(".status").first.inner_text().strip() == "Stopped"
    assert all(status for status in shown.values())
    screenshot(page, "overview", readme=True)


def test_filtering_the_overview_to_problems_keeps_only_the_groups_that_need_attention(page, world):
    page.goto("/")
    page.select_option("#filter-status", "problems")  # applies at once (the Apply button is for no-JS)
    page.wait_for_url("**status=problems**")
    # The table refreshes in place; wait for the healthy groups to leave it.
    page.wait_for_function("() => !document.querySelector('#groups-table tbody tr[data-status=ok]')")
    statuses = page.locator("#groups-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert "stopped" in statuses
    assert page.locator("#groups-table tbody tr", has_text=STOPPED_GROUP).count() == 1
    page.reload()  # the filter is in the URL: a deep link
    assert page.input_value("#filter-status") == "problems"
    assert page.locator("#groups-table tbody tr[data-status=ok]").count() == 0


def test_a_group_page_charts_its_lag_with_several_points(page, world):
    page.goto("/")
    page.click(f"#groups-table >> text={STOPPED_GROUP}")
    page.wait_for_url(f"**{world.group_path(STOPPED_GROUP)}")
    assert page.locator("h1").inner_text() == STOPPED_GROUP
    page.locator(".segmented a[data-range='15m']").click()
    page.wait_for_url("**range=15m**")
    points = plotted_points(page, "#charts .chart")
    assert points[0] > 1, points
    assert page.locator("#charts h2").first.inner_text() == f"{world.namespace}.orders.events"
    assert "Stopped" in page.locator("#group-summary").inner_text()
    zoom_to_data(page, "#charts .chart")
    screenshot(page, "group", readme=True)


def test_a_topic_page_charts_the_groups_reading_it(page, world):
    page.goto(f"/clusters/{CLUSTER}/topics/{TOPICS[0]}/")
    assert page.locator("h1").inner_text() == TOPICS[0]
    readers = page.locator("#readers-table tbody tr td:first-child").all_inner_texts()
    assert {STOPPED_GROUP, f"{world.namespace}.payments"} <= set(readers)
    assert max(plotted_points(page, ".chart")) > 1
    screenshot(page, "topic")


def test_the_clusters_page_shows_the_cluster_reachable(page, world):
    page.goto("/clusters/")
    row = page.locator("#clusters tbody tr", has_text=CLUSTER)
    assert row.locator(".status").first.inner_text().strip() == "OK"
    screenshot(page, "clusters")
