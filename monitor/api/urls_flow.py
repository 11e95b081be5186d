"""API routes of the flow area (included by monitor/api/urls.py)."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
