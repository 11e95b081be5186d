"""Alert rules are created in the Django admin, through the browser form."""
import pytest

from tests.e2e.browser import screenshot
from tests.e2e.world import CLUSTER

pytestmark = pytest.mark.e2e


def fill_rule(page, name: str, threshold: str) -> None:
    page.fill("#id_name", name)
    page.select_option("#id_severity", "critical")
    page.fill("#id_cluster", CLUSTER)
    page.fill("#id_group", "shop.shipping")
    page.fill("#id_topic", "*")
    page.select_option("#id_metric", "lag")
    page.select_option("#id_op", ">")
    page.fill("#id_threshold", threshold)
    page.fill("#id_for_seconds", "60")


def test_a_staff_user_creates_an_alert_rule_in_the_admin(page, world, database):
    page.goto("/")
    page.click("nav >> text=Admin")
    page.wait_for_url("**/admin/")
    page.click("#content-main tr.model-alertrule a.addlink")
    page.wait_for_url("**/admin/monitor/alertrule/add/")
    fill_rule(page, "shipping falls behind", "500")
    screenshot(page, "admin-alert-rule")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/monitor/alertrule/")
    assert "was added successfully" in page.locator(".messagelist").inner_text()

    from monitor.models import AlertRule

    rule = database(lambda: AlertRule.objects.filter(name="shipping falls behind").values(
        "cluster", "group", "topic", "metric", "op", "threshold", "for_seconds", "severity", "enabled").first())
    assert rule == {"cluster": CLUSTER, "group": "shop.shipping", "topic": "*", "metric": "lag", "op": ">",
                    "threshold": 500.0, "for_seconds": 60, "severity": "critical", "enabled": True}


def test_a_threshold_that_is_not_a_number_is_refused_naming_the_field(page, world, database):
    page.goto("/admin/monitor/alertrule/add/")
    fill_rule(page, "shipping falls far behind", "lots")
    with page.expect_navigation():
        page.click("input[name=_save]")
    assert page.locator(".errornote").is_visible()
    assert "must be a number" in page.locator(".field-threshold .errorlist").inner_text()

    from monitor.models import AlertRule

    assert not database(lambda: AlertRule.objects.filter(name="shipping falls far behind").exists())
