"""Configuration as code: parsing with line numbers, validation naming each field, and
the plan/apply of clusters, channels and rules."""
from __future__ import annotations

import textwrap

import pytest

from monitor.alerts import config
from monitor.alerts.metrics import STATUS_RANK
from monitor.choices import ChannelKind
from monitor.models import AlertRule, Channel, Cluster

CONTRACT_EXAMPLE = textwrap.dedent("""\
    clusters:
      - name: prod
        bootstrap: ["kafka-1:9092", "kafka-2:9092"]
        poll_interval_seconds: 30          # optional
    channels:
      - name: oncall-slack
        kind: slack                        # slack | email | webhook
        webhook_url: https://hooks.slack.com/services/T000/B000/XXXX
      - name: team-email
        kind: email
        to: ["oncall@example.com"]
    rules:
      - name: billing falls behind
        cluster: prod
        group: "billing*"                  # glob; "*" = every group
        topic: "*"                         # glob
        metric: lag                        # lag | time_lag_seconds | status | and the event metrics
        op: ">"                            # > >= < <= ==
        threshold: 1000
        for_seconds: 60                    # must hold this long before firing (0 = at once)
        keep_firing_seconds: 0             # optional: must stay clear this long before resolving (damps flapping)
        repeat_seconds: 14400              # optional: reminder interval while firing; 0 = no reminders
        severity: critical                 # info | warning | critical
        channels: [oncall-slack, team-email]
    """)


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as error:
        config.load(textwrap.dedent(text), source="alerts.yaml")
    return str(error.value).splitlines()


def test_the_contract_example_loads(db):
    document = config.load(CONTRACT_EXAMPLE)
    [cluster] = document.clusters
    assert cluster.fields["bootstrap_servers"] == "kafka-1:9092,kafka-2:9092"
    assert [c.fields["kind"] for c in document.channels] == [ChannelKind.SLACK, ChannelKind.EMAIL]
    [rule] = document.rules
    assert rule.fields["threshold"] == 1000.0 and rule.fields["group"] == "billing*"
    assert rule.channels == ["oncall-slack", "team-email"]


def test_the_issue_bad_inputs_are_refused_naming_line_and_field(db):
    found = problems("""\
        channels:
          - name: oncall
            kind: slack
            webhook_url: https://hooks.slack.com/services/T/B/X
        rules:
          - name: a
            group: "billing["
            metric: lag
            threshold: -5
            channels: [oncall, pager]
          - name: b
            metric: lagg
            threshold: 1
        """)
    assert found == [
        "alerts.yaml:7: rules[0].group: glob 'billing[' has an unclosed '['",
        "alerts.yaml:9: rules[0].threshold: must not be negative (got -5)",
        "alerts.yaml:10: rules[0].channels[1]: unknown channel 'pager'",
        "alerts.yaml:12: rules[1].metric: unknown metric 'lagg'; known: " + ", ".join(sorted(
            config.metric_registry.all_metrics())),
    ]


def test_a_status_threshold_is_a_status_name(db):
    document = config.load("rules:\n  - {name: stopped, metric: status, op: '==', threshold: stopped}\n")
    assert document.rules[0].fields["threshold"] == STATUS_RANK["stopped"]
    assert problems("rules:\n  - {name: s, metric: status, threshold: sleepy}\n") == [
        "alerts.yaml:2: rules[0].threshold: status thresholds are one of: " + ", ".join(STATUS_RANK)
        + " (got 'sleepy')"]


def test_unknown_sections_and_fields_are_refused(db):
    assert problems("""\
        rule:
          - name: typo
        channels:
          - name: c
            kind: webhook
            url: https://example.com/hook
        """) == [
        "alerts.yaml:1: rule: unknown section; use clusters, channels, rules, transactions",
        "alerts.yaml:4: channels[0].webhook_url: is required: the webhook URL",  # the entry's line
        "alerts.yaml:6: channels[0].url: unknown field; allowed: enabled, kind, name, to, webhook_url",
    ]


def test_channel_fields_are_checked_per_kind(db):
    assert problems("""\
        channels:
          - {name: mail, kind: email, to: ["not-an-address"], webhook_url: "https://x.example/"}
          - {name: pager, kind: sms}
          - {name: hook, kind: webhook, webhook_url: "ftp://x.example/"}
        """) == [
        "alerts.yaml:2: channels[0].to[0]: 'not-an-address' is not an email address",
        "alerts.yaml:2: channels[0].webhook_url: is for slack and webhook channels; email channels use 'to'",
        "alerts.yaml:3: channels[1].kind: must be one of slack, email, webhook (got 'sms')",
        "alerts.yaml:4: channels[2].webhook_url: must start with https:// (or http:// for a local receiver)",
    ]


def test_cluster_fields_use_the_model_validation(db):
    assert problems("""\
        clusters:
          - name: "bad name"
            bootstrap: ["kafka-1"]
            poll_interval_seconds: 1
        """) == [
        "alerts.yaml:2: clusters[0].name: Use letters, digits, '.', '_' and '-' (no spaces or slashes).",
        "alerts.yaml:3: clusters[0].bootstrap: 'kafka-1' is not host:port.",
        "alerts.yaml:4: clusters[0].poll_interval_seconds: must be at least 5 (got 1)",
    ]


def test_duplicate_names_and_keys_are_refused(db):
    assert problems("""\
        channels:
          - {name: c, kind: webhook, webhook_url: "https://x.example/"}
          - {name: c, kind: webhook, webhook_url: "https://y.example/"}
        rules:
          - name: r
            metric: lag
            metric: time_lag_seconds
            threshold: 1
        """) == [
        "alerts.yaml:3: channels[1].name: 'c' is defined twice in channels",
        "alerts.yaml:7: rules[0].metric: appears twice",
    ]


def test_invalid_yaml_names_the_line(db):
    [message] = problems("rules:\n  - name: a\n    threshold: [1\n")
    assert message.startswith("alerts.yaml:4: not valid YAML")


def test_an_empty_or_scalar_file_is_refused(db):
    assert problems("") == ["alerts.yaml: the file is empty"]
    assert problems("just text") == ["alerts.yaml:1: the file must be a mapping with clusters, channels, rules, transactions"]


def test_secrets_can_come_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("SLACK_HOOK", "https://hooks.slack.com/services/T/B/FROM-ENV")
    document = config.load("channels:\n  - {name: c, kind: slack, webhook_url: '${SLACK_HOOK}'}\n")
    assert document.channels[0].fields["webhook_url"] == "https://hooks.slack.com/services/T/B/FROM-ENV"
    monkeypatch.delenv("SLACK_HOOK")
    assert problems("channels:\n  - {name: c, kind: slack, webhook_url: '${SLACK_HOOK}'}\n")[0] == (
        "alerts.yaml:2: channels[0].webhook_url: environment variable SLACK_HOOK is not set")


def test_a_rule_may_use_a_channel_that_already_exists(db):
    Channel.objects.create(name="legacy", kind=ChannelKind.EMAIL, email_to="a@example.com")
    document = config.load("rules:\n  - {name: r, metric: lag, threshold: 5, channels: [legacy]}\n")
    assert document.rules[0].channels == ["legacy"]


def test_apply_creates_then_updates_then_changes_nothing(db):
    first = config.apply(config.load(CONTRACT_EXAMPLE))
    assert [(c.section, c.name, c.action) for c in first] == [
        ("clusters", "prod", "create"), ("channels", "oncall-slack", "create"),
        ("channels", "team-email", "create"), ("rules", "billing falls behind", "create")]
    rule = AlertRule.objects.get()
    assert sorted(rule.channels.values_list("name", flat=True)) == ["oncall-slack", "team-email"]
    assert Cluster.objects.get().bootstrap_list == ["kafka-1:9092", "kafka-2:9092"]

    assert {c.action for c in config.apply(config.load(CONTRACT_EXAMPLE))} == {"unchanged"}

    edited = CONTRACT_EXAMPLE.replace("threshold: 1000", "threshold: 500").replace(
        "channels: [oncall-slack, team-email]", "channels: [oncall-slack]").replace("XXXX", "YYYY")
    changes = {c.name: c for c in config.apply(config.load(edited))}
    assert changes["billing falls behind"].details == (
        "threshold 1000.0 -> 500.0", "channels ['oncall-slack', 'team-email'] -> ['oncall-slack']")
    assert changes["oncall-slack"].details == ("webhook_url changed",)  # never the secret itself
    assert AlertRule.objects.get().threshold == 500


def test_a_changed_channel_is_no_longer_marked_failing(db):
    config.apply(config.load(CONTRACT_EXAMPLE))
    Channel.objects.filter(name="oncall-slack").update(failing=True, last_error="HTTP 404")
    config.apply(config.load(CONTRACT_EXAMPLE.replace("XXXX", "ZZZZ")))
    assert not Channel.objects.get(name="oncall-slack").failing


def test_a_dry_run_plans_without_writing(db):
    changes = config.apply(config.load(CONTRACT_EXAMPLE), dry_run=True)
    assert [c.format(dry_run=True) for c in changes][:2] == ["would create cluster 'prod'",
                                                              "would create channel 'oncall-slack'"]
    assert not AlertRule.objects.exists() and not Channel.objects.exists() and not Cluster.objects.exists()
