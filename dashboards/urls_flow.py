"""Dashboard pages of the flow area (included by dashboards/urls.py).

Service names are free text (they may contain '/'), hence ``path:``; topic names cannot.
"""
from django.urls import path

from dashboards import flow_views, pathway_views

urlpatterns = [
    path("flow/", flow_views.flow, name="flow"),
    path("traces/", flow_views.traces, name="flow-traces"),
    path("traces/<str:trace_id>/", flow_views.trace, name="flow-trace"),
    path("services/<path:name>/", flow_views.service, name="flow-service"),
    path("event-topics/<str:name>/", flow_views.event_topic, name="flow-event-topic"),
    path("pathways/", pathway_views.pathways, name="pathways"),
    path("pathways/<int:pathway_id>/", pathway_views.pathway, name="pathway"),
    path("transactions/", pathway_views.transactions, name="transactions"),
]
