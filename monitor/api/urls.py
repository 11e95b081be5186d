from django.urls import include, path, re_path

from monitor.api import errors, health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("", include("monitor.api.urls_lag")),
    path("", include("monitor.api.urls_alerts")),
    path("", include("monitor.api.urls_events")),
    path("", include("monitor.api.urls_flow")),
    # Anything else under /api/ is a JSON 404 (a path that no pattern takes, e.g. a
    # non-numeric alert id), never the HTML error page.
    re_path(r"^api/[\s\S]*$", errors.not_found_view),
]
