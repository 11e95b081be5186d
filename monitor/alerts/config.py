"""Configuration as code: clusters, notification channels and alert rules from YAML.

``load`` parses and validates a whole file, collecting every problem with its line
number (from PyYAML's node marks) and field path; ``plan`` compares the file with the
database; ``apply`` writes the plan in one transaction. A bad file changes nothing.

The file is declarative for what it names: an optional field left out takes its
default. Objects the file does not name are left alone. ``${NAME}`` in a string is
replaced by the environment variable ``NAME`` so secrets (webhook URLs, SASL
passwords) need not live in git; secrets are never printed, only "changed".
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from monitor.notify.targets import url_target_problem
from monitor.alerts import metrics as metric_registry
from monitor.alerts.rules import validate_rule_fields
from monitor.choices import ChannelKind, Operator, SaslMechanism, SecurityProtocol, Severity

SECTIONS = ("clusters", "channels", "rules", "transactions")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

CLUSTER_TEXT_FIELDS = (
    "ssl_certfile", "ssl_keyfile", "oauth_token_url", "oauth_client_id", "oauth_scope", "aws_region",
    "schema_registry_url", "schema_registry_username",
)
CLUSTER_SECRET_FIELDS = ("sasl_password", "oauth_client_secret", "schema_registry_password")
CLUSTER_FIELDS = {
    "name", "bootstrap", "poll_interval_seconds", "security_protocol", "sasl_mechanism", "sasl_username",
    "ssl_cafile", "group_include", "group_exclude", "enabled", "sasl_kerberos_service_name",
    *CLUSTER_TEXT_FIELDS, *CLUSTER_SECRET_FIELDS, *(f"{name}_file" for name in CLUSTER_SECRET_FIELDS),
}
CHANNEL_FIELDS = {"name", "kind", "webhook_url", "to", "enabled"}
RULE_FIELDS = {
    "name", "cluster", "group", "topic", "metric", "op", "threshold", "for_seconds", "keep_firing_seconds",
    "repeat_seconds", "severity", "channels", "enabled",
}
TRANSACTION_FIELDS = {"name", "start", "success", "compensated", "key", "slo_seconds", "enabled"}
SECRET_FIELDS = {"webhook_url", *CLUSTER_SECRET_FIELDS}


@dataclass(frozen=True)
class Problem:
    line: int | None
    path: str
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem], source: str = "config") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        self.source = source
        super().__init__("\n".join(p.format(source) for p in self.problems))


@dataclass
class Item:
    """One object of the file: the model fields it wants, where it is, and its M2M."""

    section: str
    name: str
    fields: dict[str, Any]
    line: int | None
    channels: list[str] | None = None


@dataclass
class Document:
    clusters: list[Item] = field(default_factory=list)
    channels: list[Item] = field(default_factory=list)
    rules: list[Item] = field(default_factory=list)
    transactions: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    section: str
    name: str
    action: str  # create | update | unchanged
    details: tuple[str, ...] = ()

    def format(self, dry_run: bool = False) -> str:
        kind = self.section[:-1]
        if self.action == "unchanged":
            return f"unchanged {kind} {self.name}"
        verb = {"create": "create", "update": "update"}[self.action] if dry_run else \
            {"create": "created", "update": "updated"}[self.action]
        text = f"{'would ' if dry_run else ''}{verb} {kind} {self.name!r}"
        return f"{text}: {'; '.join(self.details)}" if self.details else text


# -- parsing with line numbers ----------------------------------------------------------------

class _Located:
    """Plain values built from the YAML node tree, with the line of every path."""

    def __init__(self) -> None:
        self.lines: dict[tuple, int] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: tuple) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self.problems.append(Problem(key_node.start_mark.line + 1, _dotted(path),
                                                 f"key {key!r} must be text"))
                    continue
                if key in result:
                    self.problems.append(Problem(key_node.start_mark.line + 1, _dotted(path + (key,)), "appears twice"))
                    continue
                result[key] = self.build(value_node, path + (key,))
                self.lines[path + (key,)] = key_node.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (index,)) for index, child in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _expand_env(value: Any, path: tuple, located: _Located) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                located.problems.append(Problem(located.line(path), _dotted(path),
                                                f"environment variable {name} is not set"))
                return ""
            return os.environ[name]

        return _ENV_REFERENCE.sub(replace, value)
    if isinstance(value, list):
        return [_expand_env(v, path + (i,), located) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand_env(v, path + (k,), located) for k, v in value.items()}
    return value


def load(text: str, source: str = "config") -> Document:
    """Parse and validate a whole file; raises ConfigError listing every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError([Problem(mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem or exc}")],
                          source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(None, "", f"not valid YAML: {exc}")], source) from None
    if node is None:
        raise ConfigError([Problem(None, "", "the file is empty")], source)
    located = _Located()
    try:
        data = located.build(node, ())
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(None, "", f"not valid YAML: {exc}")], source) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(1, "", f"the file must be a mapping with {', '.join(SECTIONS)}")], source)
    data = _expand_env(data, (), located)
    problems = located.problems
    for key in data:
        if key not in SECTIONS:
            problems.append(Problem(located.line((key,)), key, f"unknown section; use {', '.join(SECTIONS)}"))
    document = Document()
    validator = _Validator(located, problems)
    document.clusters = validator.items("clusters", data.get("clusters"), CLUSTER_FIELDS, validator.cluster)
    document.channels = validator.items("channels", data.get("channels"), CHANNEL_FIELDS, validator.channel)
    file_channels = {item.name for item in document.channels}
    validator.known_channels = file_channels | _existing_channel_names()
    document.rules = validator.items("rules", data.get("rules"), RULE_FIELDS, validator.rule)
    document.transactions = validator.items("transactions", data.get("transactions"), TRANSACTION_FIELDS,
                                            validator.transaction)
    if problems:
        raise ConfigError(problems, source)
    return document


def _existing_channel_names() -> set[str]:
    from monitor.models import Channel

    return set(Channel.objects.values_list("name", flat=True))


class _Validator:
    def __init__(self, located: _Located, problems: list[Problem]) -> None:
        self.located = located
        self.problems = problems
        self.known_channels: set[str] = set()

    def problem(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.located.line(path), _dotted(path), message))

    def items(self, section: str, raw: Any, allowed: set[str], build: Any) -> list[Item]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem((section,), "must be a list")
            return []
        items, seen = [], set()
        for index, entry in enumerate(raw):
            path = (section, index)
            if not isinstance(entry, dict):
                self.problem(path, "must be a mapping with a name")
                continue
            for key in entry:
                if key not in allowed:
                    self.problem(path + (key,), f"unknown field; allowed: {', '.join(sorted(allowed))}")
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(path + ("name",), "is required (text)")
                continue
            if name in seen:
                self.problem(path + ("name",), f"{name!r} is defined twice in {section}")
                continue
            seen.add(name)
            item = build(path, entry)
            if item is not None:
                items.append(item)
        return items

    # -- sections --------------------------------------------------------------------------
    def _secret(self, path: tuple, entry: dict, name: str) -> str:
        """A secret given inline (``${ENV}`` expanded at load) or as ``<name>_file``: a
        path whose content is read now (Docker/Kubernetes secrets). Never both."""
        file_key = f"{name}_file"
        if entry.get(file_key) is None:
            return self._text(path + (name,), entry.get(name))
        if entry.get(name) is not None:
            self.problem(path + (file_key,), f"give either {name} or {file_key}, not both")
            return ""
        file_name = self._text(path + (file_key,), entry.get(file_key))
        try:
            with open(file_name, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            self.problem(path + (file_key,), f"cannot read {file_name}: {exc.strerror or exc}")
            return ""

    def _text(self, path: tuple, value: Any, default: str = "", required: bool = False) -> str:
        if value is None:
            if required:
                self.problem(path, "is required")
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problem(path, "must be text")
            return default
        return str(value)

    def _int(self, path: tuple, value: Any, default: int, minimum: int = 0) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, "must be a whole number")
            return default
        if value < minimum:
            self.problem(path, f"must be at least {minimum} (got {value})")
            return default
        return value

    def _bool(self, path: tuple, value: Any, default: bool = True) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, "must be true or false")
            return default
        return value

    def _list(self, path: tuple, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(path, "must be a list of text")
            return []
        return [v.strip() for v in value if v.strip()]

    def transaction(self, path: tuple, entry: dict) -> Item | None:
        from monitor.choices import TransactionKey

        start = self._list(path + ("start",), entry.get("start"))
        success = self._list(path + ("success",), entry.get("success"))
        compensated = self._list(path + ("compensated",), entry.get("compensated"))
        if not start:
            self.problem(path + ("start",), "needs at least one event type that starts a transaction")
        if not success:
            self.problem(path + ("success",), "needs at least one event type that completes a transaction")
        key = self._text(path + ("key",), entry.get("key"), TransactionKey.KEY)
        if key not in TransactionKey.values:
            self.problem(path + ("key",), f"must be one of {', '.join(TransactionKey.values)}")
        fields = {
            "start_types": start, "success_types": success, "compensated_types": compensated, "key": key,
            "slo_seconds": self._int(path + ("slo_seconds",), entry.get("slo_seconds"), 300, minimum=1),
            "enabled": self._bool(path + ("enabled",), entry.get("enabled")),
        }
        return Item("transactions", entry["name"], fields, self.located.line(path))

    def cluster(self, path: tuple, entry: dict) -> Item | None:
        from monitor.models import Cluster

        bootstrap = self._list(path + ("bootstrap",), entry.get("bootstrap"))
        if not bootstrap and entry.get("bootstrap") is None:
            self.problem(path + ("bootstrap",), "is required: a list of host:port")
        fields = {
            "bootstrap_servers": ",".join(bootstrap),
            "poll_interval_seconds": self._int(path + ("poll_interval_seconds",), entry.get("poll_interval_seconds"),
                                               30, 5),
            "security_protocol": self._text(path + ("security_protocol",), entry.get("security_protocol"),
                                           SecurityProtocol.PLAINTEXT),
            "sasl_mechanism": self._text(path + ("sasl_mechanism",), entry.get("sasl_mechanism"),
                                        SaslMechanism.NONE),
            "sasl_username": self._text(path + ("sasl_username",), entry.get("sasl_username")),
            "ssl_cafile": self._text(path + ("ssl_cafile",), entry.get("ssl_cafile")),
            **{name: self._text(path + (name,), entry.get(name)) for name in CLUSTER_TEXT_FIELDS},
            **{name: self._secret(path, entry, name) for name in CLUSTER_SECRET_FIELDS},
            "sasl_kerberos_service_name": self._text(path + ("sasl_kerberos_service_name",),
                                                     entry.get("sasl_kerberos_service_name"), "kafka"),
            "group_include": ",".join(self._list(path + ("group_include",), entry.get("group_include"))) or "*",
            "group_exclude": ",".join(self._list(path + ("group_exclude",), entry.get("group_exclude"))),
            "enabled": self._bool(path + ("enabled",), entry.get("enabled")),
        }
        candidate = Cluster(name=entry["name"], **fields)
        try:
            candidate.full_clean(validate_unique=False, exclude=["status"])
        except ValidationError as exc:
            yaml_names = {"bootstrap_servers": "bootstrap"}
            for field_name, messages in exc.message_dict.items():
                key = yaml_names.get(field_name, field_name)
                self.problem(path + (key,), " ".join(messages))
        return Item("clusters", entry["name"], fields, self.located.line(path))

    def channel(self, path: tuple, entry: dict) -> Item | None:
        kind = entry.get("kind")
        if kind not in ChannelKind.values:
            self.problem(path + ("kind",), f"must be one of {', '.join(ChannelKind.values)} (got {kind!r})")
            return None
        if len(entry["name"]) > 100:
            self.problem(path + ("name",), "is longer than 100 characters")
        url = self._text(path + ("webhook_url",), entry.get("webhook_url"))
        recipients = self._list(path + ("to",), entry.get("to"))
        if kind == ChannelKind.EMAIL:
            if url:
                self.problem(path + ("webhook_url",), "is for slack and webhook channels; email channels use 'to'")
            if not recipients:
                self.problem(path + ("to",), "is required for an email channel: a list of addresses")
            for index, address in enumerate(recipients):
                try:
                    validate_email(address)
                except ValidationError:
                    self.problem(path + ("to", index), f"{address!r} is not an email address")
        else:
            if entry.get("to") is not None:
                self.problem(path + ("to",), f"is for email channels; {kind} channels use 'webhook_url'")
            problem = webhook_url_problem(url)
            if problem:
                self.problem(path + ("webhook_url",), problem)
        fields = {"kind": kind, "webhook_url": url, "email_to": ", ".join(recipients),
                  "enabled": self._bool(path + ("enabled",), entry.get("enabled"))}
        return Item("channels", entry["name"], fields, self.located.line(path))

    def rule(self, path: tuple, entry: dict) -> Item | None:
        if len(entry["name"]) > 200:
            self.problem(path + ("name",), "is longer than 200 characters")
        metric_name = entry.get("metric")
        raw_threshold = entry.get("threshold")
        threshold: Any = raw_threshold
        known = metric_registry.all_metrics()
        if metric_name is None:
            self.problem(path + ("metric",), f"is required; known: {', '.join(sorted(known))}")
            return None
        if raw_threshold is None:
            self.problem(path + ("threshold",), "is required")
            return None
        if metric_name in known:
            try:
                threshold = known[metric_name].parse_threshold(raw_threshold)
            except ValueError as exc:
                self.problem(path + ("threshold",), str(exc))
                return None
        values = {
            "name": entry["name"],
            "cluster": self._text(path + ("cluster",), entry.get("cluster"), "*"),
            "group": self._text(path + ("group",), entry.get("group"), "*"),
            "topic": self._text(path + ("topic",), entry.get("topic"), "*"),
            "metric": metric_name,
            "op": self._text(path + ("op",), entry.get("op"), Operator.GT),
            "threshold": threshold,
            "for_seconds": self._int(path + ("for_seconds",), entry.get("for_seconds"), 0),
            "keep_firing_seconds": self._int(path + ("keep_firing_seconds",), entry.get("keep_firing_seconds"), 0),
            "repeat_seconds": self._int(path + ("repeat_seconds",), entry.get("repeat_seconds"), 0),
            "severity": self._text(path + ("severity",), entry.get("severity"), Severity.WARNING),
            "enabled": self._bool(path + ("enabled",), entry.get("enabled")),
        }
        for problem in validate_rule_fields(values, known):
            self.problem(path + (problem.field,), problem.message)
        channels = self._list(path + ("channels",), entry.get("channels"))
        for index, channel in enumerate(channels):
            if channel not in self.known_channels:
                self.problem(path + ("channels", index), f"unknown channel {channel!r}")
        values.pop("name")
        return Item("rules", entry["name"], values, self.located.line(path), channels=channels)


def webhook_url_problem(url: str) -> str | None:
    if not url:
        return "is required: the webhook URL"
    if not url.startswith(("https://", "http://")):
        return "must start with https:// (or http:// for a local receiver)"
    if any(ch.isspace() for ch in url):
        return "must not contain spaces"
    return url_target_problem(url)


# -- plan and apply --------------------------------------------------------------------------------

def _describe(name: str, old: Any, new: Any) -> str:
    if name in SECRET_FIELDS:
        return f"{name} changed"
    return f"{name} {old!r} -> {new!r}"


def _diff(instance: Any, fields: dict[str, Any]) -> list[str]:
    return [_describe(name, getattr(instance, name), value)
            for name, value in fields.items() if getattr(instance, name) != value]


def plan(document: Document) -> list[Change]:
    from monitor.models import AlertRule, BusinessFlow, Channel, Cluster

    changes: list[Change] = []
    for section, model, items in (("clusters", Cluster, document.clusters), ("channels", Channel, document.channels),
                                  ("rules", AlertRule, document.rules),
                                  ("transactions", BusinessFlow, document.transactions)):
        existing = {obj.name: obj for obj in model.objects.filter(name__in=[i.name for i in items])}
        if section == "rules":
            current_channels = {
                rule.name: sorted(c.name for c in rule.channels.all())
                for rule in AlertRule.objects.filter(name__in=existing).prefetch_related("channels")
            }
        for item in items:
            instance = existing.get(item.name)
            if instance is None:
                changes.append(Change(section, item.name, "create"))
                continue
            details = _diff(instance, item.fields)
            if item.channels is not None and sorted(item.channels) != current_channels.get(item.name, []):
                details.append(f"channels {current_channels.get(item.name, [])} -> {sorted(item.channels)}")
            changes.append(Change(section, item.name, "update" if details else "unchanged", tuple(details)))
    return changes


def apply(document: Document, dry_run: bool = False) -> list[Change]:
    """Create or update everything the document names, in one transaction."""
    from monitor.models import AlertRule, BusinessFlow, Channel, Cluster
    from monitor.pathways.updater import backfill_flow

    with transaction.atomic():
        changes = plan(document)
        if dry_run:
            return changes
        actions = {(c.section, c.name): c.action for c in changes}
        for item in document.clusters:
            _save(Cluster, item, actions)
        for item in document.channels:
            if actions[("channels", item.name)] == "update":
                # A changed configuration deserves a fresh start: the failing flag was about the old one.
                item.fields = {**item.fields, "failing": False}
            _save(Channel, item, actions)
        channels = {c.name: c for c in Channel.objects.all()}
        for item in document.rules:
            rule = _save(AlertRule, item, actions)
            if item.channels is not None:
                rule.channels.set([channels[name] for name in item.channels])
        flows = [_save(BusinessFlow, item, actions) for item in document.transactions
                 if actions[(item.section, item.name)] != "unchanged"]
    for flow in flows:  # outside the transaction: reading past events may take a while
        backfill_flow(flow)
    return changes


def _save(model: Any, item: Item, actions: dict[tuple[str, str], str]) -> Any:
    if actions[(item.section, item.name)] == "unchanged":
        return model.objects.get(name=item.name)
    instance, _ = model.objects.update_or_create(name=item.name, defaults=item.fields)
    return instance
