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
    context: dict[str, object] = {"nav_items": NAV_ITEMS}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # A callable: the template calls it only when it renders the banners (not in fragments).
        from django.utils import timezone

        from dashboards.banners import safe_page_banners

        context["banners"] = lambda: safe_page_banners(timezone.now())
    return context
