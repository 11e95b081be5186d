"""Admin of the events area: the registry (services, event types), event reports
(read-only), expected subscriptions (editable) and detector findings (read-only)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from monitor.models import Event, EventType, ExpectedSubscription, Finding, Service


def trace_url(trace_id: str) -> str:
    """The trace view of the dashboards (flow area), wherever it is mounted."""
    try:
        return reverse("flow-trace", args=[trace_id])
    except NoReverseMatch:
        return f"/traces/{trace_id}/"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by ingestion or the detectors: viewable, deletable, never edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Service)
class ServiceAdmin(ReadOnlyAdmin):
    list_display = ["name", "first_seen_at", "last_seen_at"]
    search_fields = ["name"]


@admin.register(EventType)
class EventTypeAdmin(ReadOnlyAdmin):
    list_display = ["name", "first_seen_at", "last_seen_at"]
    search_fields = ["name"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "event_id", "type", "service", "stage", "topic", "partition", "offset",
                    "consumer_group", "trace_link"]
    list_filter = ["stage"]
    search_fields = ["=event_id", "=trace_id", "=key"]
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is too slow
    list_per_page = 50

    @admin.display(description="trace")
    def trace_link(self, obj: Event) -> str:
        if not obj.trace_id:
            return "-"
        return format_html('<a href="{}">{}</a>', trace_url(obj.trace_id), obj.trace_id[:12])


@admin.register(ExpectedSubscription)
class ExpectedSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["topic", "consumer_group", "enabled", "learned", "first_seen_at"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "learned"]
    search_fields = ["topic", "consumer_group"]
    fields = ["topic", "consumer_group", "enabled", "learned", "first_seen_at"]
    readonly_fields = ["learned"]

    def save_model(self, request: HttpRequest, obj: ExpectedSubscription, form: object, change: bool) -> None:
        if not change:
            obj.learned = False  # added by a person, not learned from traffic
        super().save_model(request, obj, form, change)


@admin.register(Finding)
class FindingAdmin(ReadOnlyAdmin):
    list_display = ["last_seen_at", "kind", "summary", "value", "consumer_group", "topic", "event_type"]
    list_filter = ["kind"]
    search_fields = ["summary", "consumer_group", "topic", "event_type", "service"]
    readonly_fields = ["kind", "summary", "value", "service", "topic", "consumer_group", "event_type",
                       "example_links", "first_seen_at", "last_seen_at", "fingerprint"]
    exclude = ["examples"]

    @admin.display(description="examples")
    def example_links(self, obj: Finding) -> str:
        items = [item for item in obj.examples or [] if isinstance(item, dict)]
        if not items:
            return "-"
        rows = [
            format_html('<li>event {} - <a href="{}">trace {}</a></li>', item.get("event_id", ""),
                        trace_url(str(item["trace_id"])), item["trace_id"])
            if item.get("trace_id") else format_html("<li>event {}</li>", item.get("event_id", ""))
            for item in items
        ]
        return format_html("<ul>{}</ul>", format_html_join("", "{}", ((row,) for row in rows)))
