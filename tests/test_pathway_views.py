"""The pathways, pathway and transactions pages: login required, routes with their
percentiles, stuck transactions with their last step, hostile names escaped."""
from datetime import timedelta

from django.utils import timezone

from monitor.models import BusinessFlow
from tests.event_reports import order_trace, report, store


def test_pages_need_a_login(client, db):
    for url in ("/pathways/", "/transactions/"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_pathways_page_lists_each_route_and_links_to_its_chart(logged_in_client):
    now = timezone.now()
    store(order_trace(now - timedelta(minutes=3), 1, 4)[1])
    page = logged_in_client.get("/pathways/").content.decode()
    assert "orders → payments → shipping" in page
    detail_url = page.split('href="/pathways/', 1)[1].split('"', 1)[0]
    detail = logged_in_client.get("/pathways/" + detail_url.replace("&amp;", "&"))
    assert detail.status_code == 200
    text = detail.content.decode()
    assert 'id="pathway-latency-figure"' in text and "Per hop, from the origin" in text
    assert logged_in_client.get("/pathways/999999/").status_code == 404


def test_the_flow_page_links_to_the_pathways(logged_in_client):
    assert 'id="flow-pathways-link"' in logged_in_client.get("/flow/").content.decode()


def test_the_transactions_page_shows_stuck_ones_with_their_last_step(logged_in_client):
    now = timezone.now()
    BusinessFlow.objects.create(name="order", start_types=["OrderPlaced"], success_types=["OrderShipped"],
                                slo_seconds=60)
    store([report("orders", "published", now - timedelta(minutes=10), key="<script>o-1</script>"),
           report("payments", "processed", now - timedelta(minutes=9), type="PaymentTaken",
                  key="<script>o-1</script>")])
    page = logged_in_client.get("/transactions/").content.decode()
    assert "&lt;script&gt;o-1&lt;/script&gt;" in page and "<script>o-1" not in page
    assert "PaymentTaken" in page and "payments" in page
    assert logged_in_client.get("/transactions/?state=bogus").status_code == 200
