from django.urls import include, path

from monitor.api import health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("", include("monitor.api.urls_lag")),
    path("", include("monitor.api.urls_alerts")),
    path("", include("monitor.api.urls_events")),
    path("", include("monitor.api.urls_flow")),
]
