"""API routes of the lag area (included by monitor/api/urls.py).

Group names are any text ('/', line breaks), hence ``name:`` (monitor/links.py); the ``/lag`` route comes first so it wins.
"""
from django.urls import path

from monitor import links
from monitor.api import lag, metrics, openapi

links.register_converters()

urlpatterns = [
    path("api/v1/openapi.json", openapi.openapi_document, name="api-openapi"),
    path("api/v1/clusters", lag.clusters, name="api-clusters"),
    path("api/v1/clusters/<str:cluster>/groups", lag.cluster_groups, name="api-cluster-groups"),
    path("api/v1/clusters/<str:cluster>/groups/<name:group>/lag", lag.group_lag, name="api-group-lag"),
    path("api/v1/clusters/<str:cluster>/groups/<name:group>", lag.group_detail, name="api-group"),
    path("metrics", metrics.metrics, name="metrics"),
]
