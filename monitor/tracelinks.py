"""Links from a trace id to an external trace backend (CONTRACT: MONITOR_TRACE_URL_TEMPLATE).

The template names the spot with ``{trace_id}``; the id is percent-encoded for a path
segment or a query value (ids come from ingest: hostile until proven otherwise). Only
that placeholder is replaced, so templates with other braces (Grafana Explore's JSON
state) stay intact. Unset: no external link anywhere.
"""
from __future__ import annotations

from urllib.parse import quote

from django.conf import settings

PLACEHOLDER = "{trace_id}"


def external_trace_url(trace_id: str | None) -> str | None:
    """The backend's URL for ``trace_id``; None when no template is set or there is no id."""
    template: str = settings.MONITOR_TRACE_URL_TEMPLATE
    if not template or not trace_id:
        return None
    return template.replace(PLACEHOLDER, quote(str(trace_id), safe=""))
