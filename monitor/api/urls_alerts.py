"""API routes of the alerts area (included by monitor/api/urls.py)."""
from django.urls import path

from monitor import links
from monitor.api import alerts

links.register_converters()

urlpatterns = [
    path("api/v1/alerts", alerts.alerts, name="api-alerts"),
    path("api/v1/alerts/<id:alert_id>/ack", alerts.acknowledge_alert, name="api-alert-ack"),
]
