"""Template context shared by every dashboard page."""
from __future__ import annotations

from django.http import HttpRequest

NAV_ITEMS = [
    ("overview", "Overview", "/"),
    ("flow", "Flow", "/flow/"),
    ("traces", "Traces", "/traces/"),
    ("alerts", "Alerts", "/alerts/"),
    ("clusters", "Clusters", "/clusters/"),
]


def navigation(request: HttpRequest) -> dict[str, object]:
    return {"nav_items": NAV_ITEMS}
