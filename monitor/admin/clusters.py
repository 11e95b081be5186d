from django import forms
from django.contrib import admin

from monitor.models import ApiToken, Cluster, ConsumerGroup, GroupEvent, Topic


class ClusterForm(forms.ModelForm):
    # Write-only: the saved password is never rendered back into the page.
    sasl_password = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current password.",
    )

    class Meta:
        model = Cluster
        fields = "__all__"

    def clean_sasl_password(self) -> str:
        value = self.cleaned_data.get("sasl_password", "")
        if not value and self.instance.pk:
            return self.instance.sasl_password
        return value


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    form = ClusterForm
    list_display = ["name", "bootstrap_servers", "status", "last_poll_at", "poll_interval_seconds", "enabled"]
    list_filter = ["status", "enabled"]
    search_fields = ["name", "bootstrap_servers"]
    readonly_fields = ["status", "last_poll_at", "last_success_at", "last_error", "next_poll_at", "created_at"]


@admin.register(ConsumerGroup)
class ConsumerGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "cluster", "status", "total_lag", "max_time_lag_seconds", "last_seen_at", "gone_at"]
    list_filter = ["cluster", "status"]
    search_fields = ["name"]
    readonly_fields = [f.name for f in ConsumerGroup._meta.fields]


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "cluster", "partitions", "last_seen_at"]
    list_filter = ["cluster"]
    search_fields = ["name"]


@admin.register(GroupEvent)
class GroupEventAdmin(admin.ModelAdmin):
    list_display = ["at", "cluster", "group", "kind", "topic", "partition", "detail"]
    list_filter = ["kind", "cluster"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: object) -> bool:
        return False  # tokens are issued with `manage.py issue_token`, shown once

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: object, queryset: object) -> None:
        from django.utils import timezone

        queryset.update(revoked_at=timezone.now())  # type: ignore[attr-defined]
