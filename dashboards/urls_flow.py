"""Dashboard pages of the flow area (included by dashboards/urls.py).

Service and topic names are free text (``/``, line breaks), hence ``name:`` (monitor/links.py).
"""
from django.urls import path

from dashboards import flow_views, pathway_views
from monitor import links

links.register_converters()

urlpatterns = [
    path("flow/", flow_views.flow, name="flow"),
    path("traces/", flow_views.traces, name="flow-traces"),
    path("traces/<str:trace_id>/", flow_views.trace, name="flow-trace"),
    path("services/<name:name>/", flow_views.service, name="flow-service"),
    path("event-topics/<name:name>/", flow_views.event_topic, name="flow-event-topic"),
    path("pathways/", pathway_views.pathways, name="pathways"),
    path("pathways/<int:pathway_id>/", pathway_views.pathway, name="pathway"),
    path("transactions/", pathway_views.transactions, name="transactions"),
]
