"""The dashboard as a whole: every page loads without a script error, works with no
network beyond this machine, and remembers dark mode."""
import pytest

from tests.e2e.browser import VIEWPORT, PageWatch, screenshot
from tests.e2e.world import CLUSTER, STOPPED_GROUP, TOPICS

pytestmark = pytest.mark.e2e


def every_page(world) -> list[tuple[str, str]]:
    return [
        ("overview", "/"),
        ("clusters", "/clusters/"),
        ("cluster", f"/clusters/{CLUSTER}/"),
        ("group", world.group_path(STOPPED_GROUP)),
        ("topic", f"/clusters/{CLUSTER}/topics/{TOPICS[0]}/"),
        ("flow", "/flow/"),
        ("traces", "/traces/"),
        ("trace", f"/traces/{world.failed_trace_id}/"),
        ("service", "/services/payments/"),
        ("event-topic", f"/event-topics/{TOPICS[0]}/"),
        ("alerts", "/alerts/"),
        ("alert", f"/alerts/{world.firing_alert_id}/"),
        ("admin", "/admin/"),
    ]


def test_every_page_loads_without_errors_and_only_talks_to_this_server(browser, world, signed_in_state):
    context = browser.new_context(base_url=world.url, viewport=VIEWPORT, storage_state=signed_in_state)
    # Offline: anything not served by the dashboard itself fails, as on an air-gapped network.
    blocked: list[str] = []

    def only_local(route):
        if route.request.url.startswith(world.url + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    log_start = world.server.log_path.stat().st_size
    page = context.new_page()
    watch = PageWatch(page)
    try:
        for name, path in every_page(world):
            response = page.goto(path)
            assert response.status == 200, (path, response.status)
            page.wait_for_load_state("networkidle")
            for chart in page.locator(".chart").all():
                if chart.is_visible():  # Plotly came from /static/ and drew it
                    assert chart.evaluate("el => !!el._fullLayout"), (path, chart.get_attribute("id"))
            scripts = page.locator("script[src]").evaluate_all("els => els.map(e => e.getAttribute('src'))")
            assert all(src.startswith("/static/") for src in scripts), (path, scripts)
            screenshot(page, f"page-{name}")
    finally:
        context.close()
    assert not blocked
    assert not watch.problems(), "\n".join(watch.problems())
    with open(world.server.log_path, "rb") as log:  # also what the browser fetches on its own (favicon)
        log.seek(log_start)
        server_log = log.read().decode(errors="replace")
    assert "Not Found" not in server_log and "ERROR" not in server_log, server_log


def test_dark_mode_is_remembered_across_pages_and_reloads_and_recolours_charts(page, world):
    page.goto(world.group_path(STOPPED_GROUP))
    page.wait_for_function("() => document.querySelector('#charts .chart')._fullLayout")
    light_font = page.evaluate("() => document.querySelector('#charts .chart')._fullLayout.font.color")
    assert page.get_attribute("html", "data-theme") == "light"
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "dark"
    page.wait_for_function(
        "(before) => document.querySelector('#charts .chart')._fullLayout.font.color !== before", arg=light_font)
    page.reload()
    assert page.get_attribute("html", "data-theme") == "dark"
    page.goto("/flow/")
    assert page.get_attribute("html", "data-theme") == "dark"
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    page.wait_for_function("() => document.querySelector('#flow-graph')._fullLayout")
    screenshot(page, "flow-dark")
    page.click("#theme-toggle")
    page.reload()
    assert page.get_attribute("html", "data-theme") == "light"
