"""Page plumbing shared by every dashboard page: login required, a database outage
becomes a 503 page with a banner, and the common context (time, banners, navigation).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone

from dashboards import banners

log = logging.getLogger(__name__)
View = Callable[..., HttpResponse]


def unavailable_response(message: str) -> HttpResponse:
    """A plain page with a banner, rendered without touching the database."""
    html = render_to_string(
        "unavailable.html",
        {"user": AnonymousUser(), "nav_items": [], "banners": [{"level": "error", "text": message}]},
    )
    response = HttpResponse(html, status=503)
    response["Retry-After"] = "10"
    return response


def dashboard_page(view: View) -> View:
    """Login required (pages redirect to the login, fragments answer 401); a database
    outage becomes a 503 page with a banner, not a crash."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            if not request.user.is_authenticated:
                if "part" in request.GET:
                    # A live refresh after the session expired: a login page is no fragment.
                    return HttpResponse("Log in again to see live data.", status=401, content_type="text/plain")
                return redirect_to_login(request.get_full_path())
            return view(request, *args, **kwargs)
        except DatabaseError as exc:
            log.warning("page %s failed: database unavailable (%s)", request.path, type(exc).__name__)
            return unavailable_response(
                "The database is unreachable, so no data can be shown. The page will work again "
                "as soon as it answers; reload in a few seconds."
            )

    return wrapper


def page(request: HttpRequest, template: str, context: dict[str, object], active_nav: str) -> HttpResponse:
    now = timezone.now()
    return render(
        request, template, {"now": now, "banners": banners.page_banners(now), "active_nav": active_nav, **context}
    )
