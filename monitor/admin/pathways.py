"""Admin of business flows (``transactions:`` in apply_config) and a read-only view of
pathways and transactions."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from monitor.models import BusinessFlow, BusinessTransaction, Pathway
from monitor.pathways.updater import backfill_flow


class TypeListField(forms.CharField):
    """Event types as comma- or line-separated text, stored as a JSON list."""

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [part.strip() for part in str(text).replace("\n", ",").split(",") if part.strip()]


class BusinessFlowForm(forms.ModelForm):
    start_types = TypeListField(help_text="event types that start one (comma separated)")
    success_types = TypeListField(help_text="event types that complete one")
    compensated_types = TypeListField(required=False, help_text="event types that end one by compensation")

    class Meta:
        model = BusinessFlow
        fields = ["name", "start_types", "success_types", "compensated_types", "key", "slo_seconds", "enabled"]


@admin.register(BusinessFlow)
class BusinessFlowAdmin(admin.ModelAdmin):
    form = BusinessFlowForm
    list_display = ["name", "key", "slo_seconds", "enabled"]

    def save_model(self, request: HttpRequest, obj: BusinessFlow, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        backfill_flow(obj)


@admin.register(Pathway)
class PathwayAdmin(admin.ModelAdmin):
    list_display = ["label", "first_seen_at"]
    readonly_fields = ["fingerprint", "services", "topics", "label", "first_seen_at"]
    search_fields = ["label"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(BusinessTransaction)
class BusinessTransactionAdmin(admin.ModelAdmin):
    list_display = ["flow", "key", "state", "started_at", "ended_at", "last_event_type", "last_service"]
    list_filter = ["flow", "state"]
    search_fields = ["key", "trace_id"]
    readonly_fields = [f.name for f in BusinessTransaction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
