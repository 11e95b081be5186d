"""Dashboard pages of the alerts area (included by dashboards/urls.py)."""
from django.urls import path

from dashboards import alert_views, finding_views
from monitor import links

links.register_converters()

urlpatterns = [
    path("alerts/", alert_views.alerts_page, name="alerts"),
    path("alerts/<id:alert_id>/", alert_views.alert_detail, name="alert"),
    path("alerts/<id:alert_id>/ack/", alert_views.acknowledge_view, name="alert-ack"),
    path("alerts/<id:alert_id>/silence/", alert_views.silence_view, name="alert-silence"),
    path("findings/", finding_views.findings_page, name="findings"),
]
