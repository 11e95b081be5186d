"""API routes of the flow area (included by monitor/api/urls.py)."""
from django.urls import path

from monitor.api import flow, pathways

urlpatterns = [
    path("api/v1/flow", flow.flow, name="api-flow"),
    path("api/v1/traces/<str:trace_id>", flow.trace, name="api-trace"),
    path("api/v1/pathways", pathways.pathways, name="api-pathways"),
    path("api/v1/transactions", pathways.transactions, name="api-transactions"),
]
