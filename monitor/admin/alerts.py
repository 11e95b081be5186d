"""Admin for alerting: channels (secrets write-only, "send a test notification"), alert
rules (validated like apply_config, with a backtest before saving), alerts, the
notification outbox with its delivery attempts, silences and maintenance windows."""
from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from monitor.alerts import metrics as metric_registry
from monitor.alerts.backtest import DEFAULT_DAYS, BacktestResult, backtest
from monitor.alerts.config import webhook_url_problem
from monitor.alerts.engine import AcknowledgeError, acknowledge, rule_spec
from monitor.humanize import duration as format_duration
from monitor.alerts.rules import RuleSpec, validate_rule_fields
from monitor.alerts.silences import matcher_problems, parse_weekdays
from monitor.choices import AlertState, ChannelKind, NotificationKind
from monitor.models import (
    Alert, AlertRule, Channel, Cluster, ConsumerGroup, DeliveryAttempt, MaintenanceWindow, Notification, Silence,
)
from monitor.notify import render
from monitor.notify.delivery import Outcome, deliver

# -- channels ---------------------------------------------------------------------------------


class ChannelForm(forms.ModelForm):
    # Write-only: the saved URL (it carries Slack's token) is never rendered back into the page.
    webhook_url = forms.CharField(
        required=False, max_length=1000, widget=forms.PasswordInput(render_value=False),
        help_text="Slack incoming webhook or webhook URL. Write-only: leave empty to keep the current one.",
    )

    class Meta:
        model = Channel
        fields = ["name", "kind", "webhook_url", "email_to", "enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        url = data.get("webhook_url") or ""
        if not url and self.instance.pk:
            url = self.instance.webhook_url
        data["webhook_url"] = url
        if kind in (ChannelKind.SLACK, ChannelKind.WEBHOOK):
            problem = webhook_url_problem(url)
            if problem:
                self.add_error("webhook_url", f"The webhook URL {problem}.")
        elif kind == ChannelKind.EMAIL:
            data["webhook_url"] = ""
            recipients = [r.strip() for r in (data.get("email_to") or "").replace("\n", ",").split(",") if r.strip()]
            if not recipients:
                self.add_error("email_to", "An email channel needs at least one recipient.")
            for address in recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    self.add_error("email_to", f"{address!r} is not an email address.")
        return data


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "target", "enabled", "health", "last_error_at"]
    list_filter = ["kind", "enabled", "failing"]
    search_fields = ["name"]
    readonly_fields = ["failing", "last_error", "last_error_at", "created_at", "updated_at"]
    actions = ["send_test_notification"]

    @admin.display(description="Target")
    def target(self, channel: Channel) -> str:
        if channel.kind == ChannelKind.EMAIL:
            return ", ".join(channel.recipients)
        host = urlsplit(channel.webhook_url).hostname if channel.webhook_url else None
        return f"{host} (URL hidden)" if host else "—"

    @admin.display(description="Health", ordering="failing")
    def health(self, channel: Channel) -> str:
        if channel.failing:
            return format_html('<strong style="color:#d64545">failing</strong>: {}', channel.last_error[:120])
        return "ok"

    def save_model(self, request: HttpRequest, obj: Channel, form: forms.ModelForm, change: bool) -> None:
        if change and {"webhook_url", "email_to", "kind"} & set(form.changed_data):
            obj.failing = False  # the failing flag was about the previous configuration
        super().save_model(request, obj, form, change)

    change_form_template = "admin/monitor/channel/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        return [path("<int:channel_id>/test/", self.admin_site.admin_view(self.test_view),
                     name="monitor_channel_test"), *super().get_urls()]

    def test_view(self, request: HttpRequest, channel_id: int) -> HttpResponse:
        """The "Send a test notification" button on a channel's page (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        channel = Channel.objects.filter(pk=channel_id).first()
        if channel is None:
            raise Http404(f"No channel {channel_id}")
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        self.send_test_notification(request, Channel.objects.filter(pk=channel_id))
        return redirect(reverse("admin:monitor_channel_change", args=[channel_id]))

    @admin.action(description="Send a test notification")
    def send_test_notification(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        now = timezone.now()
        for channel in queryset:
            notification = Notification.objects.create(
                channel=channel, kind=NotificationKind.TEST, payload=render.test_payload(channel.name, now),
                created_at=now, due_at=now,
            )
            result = deliver(notification.pk, now)
            status = f"HTTP {result.status_code}" if result.status_code and channel.kind != ChannelKind.EMAIL else ""
            if result.outcome == Outcome.SENT:
                self.message_user(request, f"{channel.name}: delivered ({status + ', ' if status else ''}"
                                           f"{result.duration_seconds:.2f} s).", messages.SUCCESS)
                continue
            # A test is tried once: it must not be retried behind the admin's back.
            Notification.objects.filter(pk=notification.pk, sent_at=None).update(failed_at=now, claimed_at=now)
            if result.outcome == Outcome.FAILED:
                extra = " The channel is marked failing." if result.channel_broken else ""
                self.message_user(request, f"{channel.name}: failed permanently: {result.error}.{extra}",
                                  messages.ERROR)
            else:
                self.message_user(request, f"{channel.name}: failed ({result.error or result.outcome.value}); "
                                           "alerts would be retried.", messages.WARNING)


# -- rules ------------------------------------------------------------------------------------


def threshold_text(metric_name: str, value: float | None) -> str:
    if value is None:
        return ""
    try:
        metric = metric_registry.get(metric_name)
    except KeyError:
        return f"{value:g}"
    if metric.categorical:
        return metric.format_value(value)
    return f"{value:g}"


class AlertRuleForm(forms.ModelForm):
    # A new rule starts on the metric most rules watch.
    metric = forms.ChoiceField(choices=metric_registry.choices, initial="lag")
    threshold = forms.CharField(
        max_length=100,
        help_text="A number (messages, seconds ...). For status: a status name, e.g. stopped; "
                  f"statuses are ordered {' < '.join(metric_registry.STATUS_RANK)}.",
    )

    class Meta:
        model = AlertRule
        fields = ["name", "enabled", "cluster", "group", "topic", "metric", "op", "threshold", "for_seconds",
                  "keep_firing_seconds", "repeat_seconds", "severity", "channels"]
        # The known names as suggestions (a datalist in the change form); any glob still goes.
        widgets = {"cluster": forms.TextInput(attrs={"list": "rule-cluster-names"}),
                   "group": forms.TextInput(attrs={"list": "rule-group-names"})}
        help_texts = {
            "cluster": "Glob, e.g. prod or prod-*; * for every cluster.",
            "group": "Pick a group from the list or type a glob, e.g. billing*; * for every group.",
            "topic": "Glob; * for every topic. Topic-level metrics alert per (cluster, group, topic).",
            "for_seconds": "The condition must hold this long before the alert fires (0 = at once).",
            "keep_firing_seconds": "The condition must stay clear this long before the alert resolves "
                                   "(damps flapping).",
            "repeat_seconds": "Reminder interval while firing and not acknowledged; 0 = no reminders.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["threshold"] = threshold_text(self.instance.metric, self.instance.threshold)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        metric_name = data.get("metric")
        raw = data.get("threshold")
        if metric_name and raw not in (None, ""):
            try:
                data["threshold"] = metric_registry.get(metric_name).parse_threshold(raw)
            except (KeyError, ValueError) as exc:
                self.add_error("threshold", str(exc).strip("'\""))
                return data
        values = {k: data[k] for k in ("cluster", "group", "topic", "metric", "op", "threshold", "for_seconds",
                                       "keep_firing_seconds", "repeat_seconds", "severity") if k in data}
        if "threshold" not in values or isinstance(values["threshold"], str):
            values.pop("threshold", None)
            values["threshold"] = 0.0
        for problem in validate_rule_fields(values, metric_registry.all_metrics()):
            if problem.field in self.fields and problem.field not in self.errors:
                self.add_error(problem.field, problem.message)
        return data

    def rule_spec(self) -> RuleSpec:
        data = self.cleaned_data
        return RuleSpec(
            name=data["name"], metric=data["metric"], op=data["op"], threshold=data["threshold"],
            cluster=data["cluster"], group=data["group"], topic=data["topic"], for_seconds=data["for_seconds"],
            keep_firing_seconds=data["keep_firing_seconds"], repeat_seconds=data["repeat_seconds"],
            severity=data["severity"],
        )


def backtest_context(result: BacktestResult) -> dict[str, Any]:
    """The backtest with its durations and values formatted for the change form."""
    metric = metric_registry.all_metrics().get(result.metric)
    return {
        "backtest": result,
        "backtest_total": format_duration(result.total_firing_seconds),
        "backtest_longest": format_duration(result.longest_firing_seconds),
        "backtest_incidents": [
            {"subject": incident.subject.key, "fired_at": incident.fired_at, "resolved_at": incident.resolved_at,
             "firing_for": format_duration(incident.firing_seconds(result.until)),
             "worst": metric.format_value(incident.peak) if metric else incident.peak}
            for incident in reversed(result.incidents[-20:])
        ],
    }


def known_group_names(limit: int = 2000) -> list[str]:
    """Names of the groups the poller knows (not gone), for the rule form's suggestions."""
    return list(ConsumerGroup.objects.filter(gone_at=None).order_by("name").values_list("name", flat=True)
                .distinct()[:limit])


def known_cluster_names() -> list[str]:
    return list(Cluster.objects.order_by("name").values_list("name", flat=True))


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    change_form_template = "admin/monitor/alertrule/change_form.html"
    list_display = ["name", "condition", "scope", "severity", "enabled", "open_alerts"]
    list_filter = ["enabled", "severity", "metric"]
    search_fields = ["name", "group", "topic"]
    filter_horizontal = ["channels"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "severity"]}),
        ("Scope", {"fields": ["cluster", "group", "topic"]}),
        ("Condition", {"fields": ["metric", "op", "threshold", "for_seconds", "keep_firing_seconds"]}),
        ("Notifications", {"fields": ["channels", "repeat_seconds"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertRule]:
        return super().get_queryset(request).annotate(
            open_count=Count("alerts", filter=Q(alerts__state__in=[AlertState.FIRING, AlertState.PENDING])))

    @admin.display(description="Condition")
    def condition(self, rule: AlertRule) -> str:
        text = f"{rule.metric} {rule.op} {threshold_text(rule.metric, rule.threshold)}"
        return f"{text} for {rule.for_seconds}s" if rule.for_seconds else text

    @admin.display(description="Scope")
    def scope(self, rule: AlertRule) -> str:
        return f"{rule.cluster} / {rule.group} / {rule.topic}"

    @admin.display(description="Open alerts", ordering="open_count")
    def open_alerts(self, rule: AlertRule) -> int:
        return int(getattr(rule, "open_count", 0))

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "backtest_days": DEFAULT_DAYS,
                         "group_names": known_group_names(), "cluster_names": known_cluster_names()}
        if request.method == "POST" and "_backtest" in request.POST:
            return self._backtest_unsaved(request, object_id, form_url, extra_context)
        if object_id and request.method == "GET":
            rule = self.get_object(request, unquote(object_id))
            if rule is not None:
                extra_context.update(backtest_context(backtest(rule_spec(rule), timezone.now())))
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _backtest_unsaved(self, request: HttpRequest, object_id: str | None, form_url: str,
                          extra_context: dict[str, Any]) -> HttpResponse:
        """Re-render the form as submitted, with the backtest of its values; save nothing."""
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        add = obj is None
        if (add and not self.has_add_permission(request)) or (not add and not self.has_change_permission(request, obj)):
            raise PermissionDenied
        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(request, obj, change=not add, fields=flatten_fieldsets(fieldsets))
        form = form_class(request.POST, request.FILES, instance=obj)
        if form.is_valid():
            extra_context.update(backtest_context(backtest(form.rule_spec(), timezone.now())))  # type: ignore[attr-defined]
            extra_context["backtest_unsaved"] = True
        admin_form = helpers.AdminForm(form, list(fieldsets), self.get_prepopulated_fields(request, obj),  # type: ignore[arg-type]
                                       self.get_readonly_fields(request, obj), model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": ("Add %s" if add else "Change %s") % self.opts.verbose_name,
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form, "object_id": object_id, "original": obj,
            "is_popup": False, "to_field": None, "media": self.media + admin_form.media,
            "inline_admin_formsets": [], "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request), **extra_context,
        }
        return self.render_change_form(request, context, add=add, change=not add, obj=obj, form_url=form_url)


# -- alerts and the outbox -------------------------------------------------------------------------


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["id", "rule", "subject_text", "state", "value", "started_at", "fired_at", "resolved_at",
                    "acknowledged_by"]

    @admin.display(description="Subject", ordering="subject")
    def subject_text(self, alert: Alert) -> str:
        """``payments / orders.events``: the stored key's empty cluster is no leading slash."""
        return alert.subject_label
    list_filter = ["state", "rule__severity", "no_data", "cluster"]
    search_fields = ["subject", "rule__name"]
    list_select_related = ["rule"]
    actions = ["acknowledge_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # alerts come from evaluation only

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset.exclude(state=AlertState.RESOLVED):
            try:
                acknowledge(alert.id, by=request.user.get_username(), note="acknowledged in the admin")
                done += 1
            except AcknowledgeError:
                pass
        self.message_user(request, f"{done} alert(s) acknowledged.")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["at", "finished_at", "ok", "status_code", "duration_seconds", "error"]
    readonly_fields = ["at", "finished_at", "ok", "status_code", "duration_seconds", "error"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "kind", "channel", "alert", "outcome", "attempts", "last_status_code",
                    "due_at"]
    list_filter = ["kind", "muted", "channel"]
    list_select_related = ["channel", "alert"]
    exclude = ["payload"]
    readonly_fields = ["alert", "channel", "kind", "idempotency_key", "created_at", "due_at", "claimed_at", "sent_at", "failed_at",
                       "attempts", "last_status_code", "last_error", "muted", "message"]
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Outcome")
    def outcome(self, n: Notification) -> str:
        if n.muted:
            return "muted"
        if n.sent_at:
            return "sent"
        if n.failed_at:
            return "failed"
        return "retrying" if n.attempts else "queued"

    @admin.display(description="Message")
    def message(self, n: Notification) -> str:
        return render.fallback_text(n.payload) if n.payload else ""

    @admin.action(description="Deliver again now (e.g. after fixing the channel)")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = queryset.filter(sent_at=None, muted=False).update(
            failed_at=None, claimed_at=None, due_at=timezone.now())
        self.message_user(request, f"{count} notification(s) queued; the next sweep delivers them.")


# -- silences and maintenance windows ----------------------------------------------------------------


class MatcherFormMixin(forms.ModelForm):
    def clean_matchers(self, data: dict[str, Any]) -> None:
        problems = matcher_problems(data.get("cluster", ""), data.get("group", ""), data.get("topic", ""))
        for field_name, message in problems.items():
            self.add_error(field_name, message)


class SilenceForm(MatcherFormMixin, forms.ModelForm):
    class Meta:
        model = Silence
        fields = ["rule", "cluster", "group", "topic", "starts_at", "ends_at", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self.clean_matchers(data)
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", "The silence must end after it starts.")
        return data


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    form = SilenceForm
    list_display = ["id", "matcher", "starts_at", "ends_at", "active", "created_by", "reason"]
    readonly_fields = ["created_by", "created_at"]
    list_select_related = ["rule"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        now = timezone.now()
        initial.setdefault("starts_at", now)  # type: ignore[arg-type]
        initial.setdefault("ends_at", now + timedelta(hours=2))  # type: ignore[arg-type]
        return initial

    @admin.display(description="Matches")
    def matcher(self, silence: Silence) -> str:
        text = f"{silence.cluster} / {silence.group} / {silence.topic}"
        return f"rule {silence.rule.name}: {text}" if silence.rule else text

    @admin.display(boolean=True, description="Active")
    def active(self, silence: Silence) -> bool:
        return silence.starts_at <= timezone.now() < silence.ends_at

    def save_model(self, request: HttpRequest, obj: Silence, form: forms.ModelForm, change: bool) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


class MaintenanceWindowForm(MatcherFormMixin, forms.ModelForm):
    class Meta:
        model = MaintenanceWindow
        fields = ["name", "enabled", "cluster", "group", "topic", "weekdays", "start_time", "duration_minutes"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self.clean_matchers(data)
        try:
            data["weekdays"] = ",".join(str(d) for d in sorted(parse_weekdays(data.get("weekdays") or "")))
        except ValueError as exc:
            self.add_error("weekdays", str(exc))
        if data.get("duration_minutes") == 0:
            self.add_error("duration_minutes", "A window lasts at least one minute.")
        return data


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    form = MaintenanceWindowForm
    list_display = ["name", "enabled", "weekdays", "start_time", "duration_minutes", "cluster", "group", "topic"]
