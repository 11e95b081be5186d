"""Every link the product builds, through ``reverse()``: pages, Slack, email and webhooks
point at the same URLs, quoted the same way. Names come from Kafka or from ingest and
are hostile: ``reverse()`` quotes path segments and :func:`urlencode` builds query
strings; nothing is concatenated by hand.
"""
from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from django.conf import settings
from django.urls import register_converter, reverse


def path(name: str, *args: object, query: Mapping[str, object] | None = None) -> str:
    """The site-relative path of the URL pattern ``name``, with an encoded query string."""
    url = reverse(name, args=[str(a) for a in args])
    params = {key: value for key, value in (query or {}).items() if value not in (None, "")}
    return f"{url}?{urlencode(params)}" if params else url


def base_url() -> str:
    return str(settings.MONITOR_BASE_URL).rstrip("/")


def absolute(site_path: str) -> str:
    """``site_path`` on the public address of this installation (for messages)."""
    return base_url() + site_path


def absolute_url(name: str, *args: object, query: Mapping[str, object] | None = None) -> str:
    return absolute(path(name, *args, query=query))


def group_path(cluster: str, group: str) -> str:
    return path("group", cluster, group)


def topic_path(cluster: str, topic: str) -> str:
    return path("topic", cluster, topic)


def alert_path(alert_id: int) -> str:
    return path("alert", alert_id)


def service_path(name: str) -> str:
    return path("flow-service", name)


def event_topic_path(name: str) -> str:
    return path("flow-event-topic", name)


def trace_path(trace_id: str) -> str:
    return path("flow-trace", trace_id)


def traces_path(**filters: object) -> str:
    """The traces list filtered by ``filters`` (service, topic, group, failed, q...)."""
    return path("flow-traces", query=filters)


def flow_path(**filters: object) -> str:
    """The flow graph, focused or filtered by ``filters`` (focus, group...)."""
    return path("flow", query=filters)

class AnyNameConverter:
    """A URL segment holding any name at all, ``/`` and line breaks included.

    Django's ``str``/``path`` converters are ``[^/]+``/``.+``: ``.`` does not match a
    newline, so a group named ``a\\nb`` had no URL and every page linking to it failed.
    Group and service names may contain ``/``, so a pattern using this converter must
    come after any more specific pattern that shares its prefix (``.../lag``).
    """

    regex = r"[\s\S]*"  # empty too: Kafka allows the empty group id

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class RowIdConverter:
    """A database row id: digits within the id column's range (32-bit ``AutoField``).

    ``<int:...>`` takes any digits, and an id past the column's range made the database
    refuse the query (read as an outage, 503); out of range now matches no URL (404)."""

    regex = r"[0-9]{1,10}"
    MAX = 2**31 - 1

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self.MAX:
            raise ValueError(f"{value} is past the largest id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def register_converters() -> None:
    """Make ``<name:...>`` and ``<id:...>`` available to the URL confs (idempotent)."""
    from django.urls.converters import get_converters

    converters = get_converters()
    if "name" not in converters:
        register_converter(AnyNameConverter, "name")
    if "id" not in converters:
        register_converter(RowIdConverter, "id")
