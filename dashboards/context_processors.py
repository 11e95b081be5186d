"""Template context shared by every dashboard page."""
from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest

NAV_ITEMS = [
    ("overview", "Overview", "/"),
    ("flow", "Flow", "/flow/"),
    ("traces", "Traces", "/traces/"),
    ("alerts", "Alerts", "/alerts/"),
    ("findings", "Findings", "/findings/"),
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
        # Also lazy: the badge on "Alerts" (firing, not silenced) costs two small queries per page.
        context["firing_count"] = lambda: _safe_firing_count(timezone.now())
    return context


def _safe_firing_count(now: datetime) -> int | None:
    """The nav badge must never break a page (it is rendered on the outage page too)."""
    from django.db import DatabaseError

    from monitor.alerts.incidents import firing_count

    try:
        return firing_count(now)
    except DatabaseError:
        return None
