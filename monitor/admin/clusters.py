from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from monitor.kafka.check import check_connection
from monitor.lag.clusters import cluster_secrets, connection_settings

from monitor.models import ApiToken, Cluster, ConsumerGroup, GroupEvent, Topic
from monitor.redaction import redact


SECRET_FIELDS = ("sasl_password", "oauth_client_secret", "schema_registry_password")


def _secret_field() -> forms.CharField:
    # Write-only: a saved secret is never rendered back into the page.
    return forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the current value; ${NAME} reads the environment "
                  "variable NAME when connecting.",
    )


class ClusterForm(forms.ModelForm):
    sasl_password = _secret_field()
    oauth_client_secret = _secret_field()
    schema_registry_password = _secret_field()

    class Meta:
        model = Cluster
        fields = "__all__"

    def _keep_secret(self, name: str) -> str:
        value = self.cleaned_data.get(name, "")
        if not value and self.instance.pk:
            return str(getattr(self.instance, name))
        return str(value)

    def clean_sasl_password(self) -> str:
        return self._keep_secret("sasl_password")

    def clean_oauth_client_secret(self) -> str:
        return self._keep_secret("oauth_client_secret")

    def clean_schema_registry_password(self) -> str:
        return self._keep_secret("schema_registry_password")


# last_error is shown redacted (shown_last_error), never as stored.
READ_ONLY = ["status", "last_poll_at", "last_success_at", "shown_last_error", "next_poll_at", "created_at"]
SECTIONS: list[tuple[str | None, list[str], str]] = [
    (None, ["name", "bootstrap_servers", "enabled", "poll_interval_seconds", "group_include", "group_exclude"], ""),
    ("Security", ["security_protocol", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_mechanism", "sasl_username",
                  "sasl_password", "oauth_token_url", "oauth_client_id", "oauth_client_secret", "oauth_scope",
                  "aws_region", "sasl_kerberos_service_name"],
     "PLAIN/SCRAM: username and password. OAUTHBEARER: token URL, client id and secret, scope. AWS_MSK_IAM: "
     "region (credentials from the workers' environment). GSSAPI: service name (ticket from the workers' keytab)."),
    ("Schema Registry", ["schema_registry_url", "schema_registry_username", "schema_registry_password"], ""),
    ("Header tap", ["tap_enabled", "tap_topics", "tap_group", "tap_sample_percent"], ""),
    ("State", READ_ONLY, ""),
]


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    form = ClusterForm
    list_display = ["name", "bootstrap_servers", "status", "last_poll_at", "poll_interval_seconds", "enabled"]
    list_filter = ["status", "enabled"]
    search_fields = ["name", "bootstrap_servers"]
    readonly_fields = READ_ONLY
    change_form_template = "admin/monitor/cluster/change_form.html"
    exclude = ["last_error"]  # shown redacted (shown_last_error), never as stored

    @admin.display(description="Last error")
    def shown_last_error(self, obj: Cluster) -> str:
        """The last poll error with the cluster's secrets cut out: an error stored before
        redaction, or quoting a secret in a new way, still shows none."""
        return redact(obj.last_error or "", cluster_secrets(obj)) or "—"

    def get_fieldsets(self, request: HttpRequest, obj: Cluster | None = None) -> list[Any]:
        """:data:`SECTIONS`, plus any field not placed in one (added later) in the first."""
        placed = {name for _, fields, _ in SECTIONS for name in fields}
        rest = [str(name) for name in super().get_fields(request, obj) if name not in placed]
        sections: list[Any] = []
        for index, (title, fields, description) in enumerate(SECTIONS):
            options: dict[str, Any] = {"fields": fields + rest if index == 0 else fields}
            if description:
                options["description"] = description
            sections.append((title, options))
        return sections

    def get_urls(self) -> list[URLPattern]:
        own = [path("<int:cluster_id>/test-connection/", self.admin_site.admin_view(self.test_connection),
                    name="monitor_cluster_test_connection")]
        return own + super().get_urls()

    def test_connection(self, request: HttpRequest, cluster_id: int) -> HttpResponse:
        """POST: check_cluster's steps, shown as messages on the change page."""
        cluster = Cluster.objects.filter(pk=cluster_id).first()
        if cluster is None or not self.has_change_permission(request, cluster):
            raise Http404("no such cluster")
        back = reverse("admin:monitor_cluster_change", args=[cluster_id])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        report = check_connection(cluster.name, connection_settings(cluster))
        failed = report.failed_step
        summary = "Every step passed." if failed is None else f"{failed.step} failed: {failed.detail}"
        level = messages.SUCCESS if failed is None else messages.ERROR
        self.message_user(request, format_html("Test connection: {}<pre>{}</pre>", summary,
                                               "\n".join(report.lines())), level)
        return HttpResponseRedirect(back)


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
