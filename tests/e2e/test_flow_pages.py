"""The event side in the browser: the flow graph of the demo's services and topics, its
clicks, and the service and topic pages it leads to."""
import pytest

from tests.e2e.browser import click_plotted_point, node_names, screenshot
from tests.e2e.world import SERVICES, STOPPED_GROUP, TOPICS

pytestmark = pytest.mark.e2e


def test_the_flow_graph_shows_the_demos_services_and_topics(page, world):
    page.goto("/")
    page.click("nav >> text=Flow")
    page.wait_for_url("**/flow/")
    assert node_names(page, "#flow-graph", "service") == set(SERVICES)
    assert set(TOPICS) <= node_names(page, "#flow-graph", "topic")
    edges = page.locator("#flow-edges tbody tr")
    assert edges.count() >= 8
    screenshot(page, "flow", readme=True)


def test_clicking_a_service_node_opens_the_service_page(page, world):
    page.goto("/flow/")
    click_plotted_point(page, "#flow-graph", "node", "payments")
    page.wait_for_url("**/services/payments/**")
    assert "payments" in page.locator("h1").inner_text()
    body = page.locator("main").inner_text()
    assert TOPICS[0] in body and f"{world.namespace}.payments" in body
    screenshot(page, "service")


def test_focusing_on_a_group_keeps_only_its_neighbourhood(page, world):
    page.goto(f"/flow/?group={STOPPED_GROUP}")
    services = node_names(page, "#flow-graph", "service")
    assert "analytics" in services and "shipping" not in services
    assert TOPICS[0] in node_names(page, "#flow-graph", "topic")


def test_an_edges_traces_link_lists_traces_through_that_edge(page, world):
    page.goto("/flow/")
    row = page.locator("#flow-edges tbody tr", has_text="payments").filter(has_text=TOPICS[0]).filter(
        has_text=f"{world.namespace}.payments").first
    row.locator("a", has_text="all").click()
    page.wait_for_url("**/traces/?**")
    assert page.locator("#traces-table tbody tr a").count() > 0
    screenshot(page, "traces")


def test_the_event_topic_page_shows_producers_consumers_and_schema_versions(page, world):
    page.goto(f"/event-topics/{TOPICS[2]}/")
    body = page.locator("main").inner_text()
    assert "inventory" in body and f"{world.namespace}.shipping" in body
    screenshot(page, "event-topic")
