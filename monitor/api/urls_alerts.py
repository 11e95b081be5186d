"""API routes of the alerts area (included by monitor/api/urls.py)."""
from django.urls import path

from monitor.api import alerts

urlpatterns = [
    path("api/v1/alerts", alerts.alerts, name="api-alerts"),
    path("api/v1/alerts/<int:alert_id>/ack", alerts.acknowledge_alert, name="api-alert-ack"),
]
