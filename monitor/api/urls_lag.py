"""API routes of the lag area (included by monitor/api/urls.py).

Group names may contain '/', hence ``path:``; the ``/lag`` route comes first so it wins.
"""
from django.urls import path

from monitor.api import lag, metrics, openapi

urlpatterns = [
    path("api/v1/openapi.json", openapi.openapi_document, name="api-openapi"),
    path("api/v1/clusters", lag.clusters, name="api-clusters"),
    path("api/v1/clusters/<str:cluster>/groups", lag.cluster_groups, name="api-cluster-groups"),
    path("api/v1/clusters/<str:cluster>/groups/<path:group>/lag", lag.group_lag, name="api-group-lag"),
    path("api/v1/clusters/<str:cluster>/groups/<path:group>", lag.group_detail, name="api-group"),
    path("metrics", metrics.metrics, name="metrics"),
]
