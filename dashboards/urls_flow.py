"""Dashboard pages of the flow area (included by dashboards/urls.py)."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
