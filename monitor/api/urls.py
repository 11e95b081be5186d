from django.urls import path

from monitor.api import health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
]
