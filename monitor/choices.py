"""Every enumerated value the product stores or exposes, in one place."""
from collections.abc import Iterable

from django.db import models


class ClusterStatus(models.TextChoices):
    OK = "ok", "OK"
    UNREACHABLE = "unreachable", "Unreachable"
    UNKNOWN = "unknown", "Unknown"


class SecurityProtocol(models.TextChoices):
    PLAINTEXT = "PLAINTEXT", "PLAINTEXT"
    SSL = "SSL", "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT", "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL", "SASL_SSL"


class SaslMechanism(models.TextChoices):
    NONE = "", "None"
    PLAIN = "PLAIN", "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256", "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512", "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER", "OAUTHBEARER (OIDC client credentials)"
    AWS_MSK_IAM = "AWS_MSK_IAM", "AWS MSK IAM"
    GSSAPI = "GSSAPI", "GSSAPI (Kerberos)"


class GroupProtocol(models.TextChoices):
    """How a group coordinates its members (CONTRACT: group detail ``protocol``)."""

    CLASSIC = "classic", "Classic"
    CONSUMER = "consumer", "Consumer (KIP-848)"
    SHARE = "share", "Share group (KIP-932)"
    UNKNOWN = "unknown", "Unknown"


class GroupStatus(models.TextChoices):
    OK = "ok", "OK"
    GROWING = "growing", "Falling behind"
    STALLED = "stalled", "Stalled"
    STOPPED = "stopped", "Stopped"
    REWIND = "rewind", "Rewound"
    IDLE = "idle", "Idle"
    EMPTY = "empty", "No active members"
    DATA_LOSS = "data_loss", "Lost data"
    GONE = "gone", "Gone"
    UNKNOWN = "unknown", "Unknown"


# The one on-call order of group statuses: what needs a human first. Pages sort by it,
# the flow graph colours a consuming group by it, alert rules compare statuses by it
# (the ranks alert states store are pinned to it by a test).
STATUS_SEVERITY: tuple[GroupStatus, ...] = (
    GroupStatus.DATA_LOSS,
    GroupStatus.STOPPED,
    GroupStatus.STALLED,
    GroupStatus.GROWING,
    GroupStatus.REWIND,
    GroupStatus.EMPTY,
    GroupStatus.UNKNOWN,
    GroupStatus.IDLE,
    GroupStatus.OK,
    GroupStatus.GONE,
)
# Higher is worse.
STATUS_SEVERITY_RANK: dict[str, int] = {status.value: len(STATUS_SEVERITY) - index
                                        for index, status in enumerate(STATUS_SEVERITY)}
PROBLEM_STATUSES: frozenset[str] = frozenset(s.value for s in STATUS_SEVERITY[:6])


def worst_status(statuses: Iterable[str]) -> str | None:
    """The status that needs a human first (None for no statuses)."""
    return max(statuses, key=lambda status: STATUS_SEVERITY_RANK.get(status, 0), default=None)


class MetricsGranularity(models.TextChoices):
    """How fine /metrics' lag series are (like kafka-minion's ``granularity``)."""

    PARTITION = "partition", "Per partition and per topic"
    TOPIC = "topic", "Per topic"
    GROUP = "group", "Per group only"


class TimeLagMethod(models.TextChoices):
    EXACT = "exact", "Exact (caught up)"
    RECORD = "record", "Record timestamp"
    INTERPOLATED = "interpolated", "Interpolated"
    EXTRAPOLATED = "extrapolated", "Extrapolated"
    UNKNOWN = "unknown", "Unknown"
    # The record was not read because the cycle's fetch budget went to partitions that
    # lag more; the log-end history answered instead.
    INTERPOLATED_BUDGET = "interpolated (budget)", "Interpolated (record not read: fetch budget)"
    EXTRAPOLATED_BUDGET = "extrapolated (budget)", "Extrapolated (record not read: fetch budget)"
    UNKNOWN_BUDGET = "unknown (budget)", "Unknown (record not read: fetch budget)"


class GroupEventKind(models.TextChoices):
    GROUP_CREATED = "group_created", "Group appeared"
    GROUP_DELETED = "group_deleted", "Group disappeared"
    TOPIC_ADDED = "topic_added", "Group started reading a topic"
    TOPIC_DROPPED = "topic_dropped", "Group stopped reading a topic"
    PARTITIONS_ADDED = "partitions_added", "Partitions added"
    OFFSET_RESET = "offset_reset", "Offset reset"
    DATA_LOSS = "data_loss", "Messages deleted before they were consumed"


class Stage(models.TextChoices):
    OUTBOX = "outbox", "Written to the outbox"
    PUBLISHED = "published", "Published"
    CONSUMED = "consumed", "Consumed"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"
    DEAD_LETTERED = "dead_lettered", "Dead-lettered"


# Stage sets, defined once: who reports a stage, and what it means for an event.
CONSUMER_STAGES: frozenset[str] = frozenset({Stage.CONSUMED, Stage.PROCESSED, Stage.FAILED, Stage.DEAD_LETTERED})
RECEIPT_STAGES: tuple[Stage, ...] = (Stage.CONSUMED, Stage.PROCESSED)  # the consumer has the event
HANDLED_STAGES: frozenset[str] = frozenset(RECEIPT_STAGES)
FAILURE_STAGES: tuple[Stage, ...] = (Stage.FAILED, Stage.DEAD_LETTERED)
# Where reports of one moment go in a trace: written, published, consumed, then an outcome.
STAGE_ORDER: dict[str, int] = {Stage.OUTBOX: 0, Stage.PUBLISHED: 1, Stage.CONSUMED: 2, Stage.PROCESSED: 3,
                               Stage.FAILED: 3, Stage.DEAD_LETTERED: 4}


class FindingKind(models.TextChoices):
    LOST = "lost", "Lost event"
    DUPLICATE = "duplicate", "Duplicate delivery"
    OUT_OF_ORDER = "out_of_order", "Out-of-order processing"
    SCHEMA_DRIFT = "schema_drift", "Schema drift"
    CASCADE_STORM = "cascade_storm", "Cascade storm"
    FAILURE_RATE = "failure_rate", "Failures"
    UNPUBLISHED_OUTBOX = "unpublished_outbox", "Outbox rows never published"


class TransactionState(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    COMPLETED = "completed", "Completed"
    COMPENSATED = "compensated", "Compensated"
    STUCK = "stuck", "Stuck"


class TransactionKey(models.TextChoices):
    KEY = "key", "The event key"
    TRACE_ID = "trace_id", "The trace id"


class AlertState(models.TextChoices):
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class ChannelKind(models.TextChoices):
    SLACK = "slack", "Slack"
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class Operator(models.TextChoices):
    GT = ">", ">"
    GE = ">=", ">="
    LT = "<", "<"
    LE = "<=", "<="
    EQ = "==", "=="


class NotificationKind(models.TextChoices):
    FIRING = "firing", "Firing"
    REMINDER = "reminder", "Reminder"
    RESOLVED = "resolved", "Resolved"
    TEST = "test", "Test"


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    INGEST = "ingest", "Ingest"
    ACK = "ack", "Acknowledge alerts"


class FlowNodeKind(models.TextChoices):
    SERVICE = "service", "Service"
    TOPIC = "topic", "Topic"


class FlowEdgeKind(models.TextChoices):
    PUBLISH = "publish", "Publishes to"
    CONSUME = "consume", "Consumed by"


class Health(models.TextChoices):
    """Colour of a flow node or edge against the configured tolerances."""

    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    UNKNOWN = "unknown", "No data"


class StepKind(models.TextChoices):
    """One bar or mark on a trace timeline."""

    OUTBOX = "outbox", "Waiting in the outbox"
    PUBLISH = "publish", "Published"
    QUEUE_WAIT = "queue_wait", "Waiting in the topic"
    PROCESS = "process", "Processing"
    CONSUMED = "consumed", "Consumed, no outcome reported"
    FAILED = "failed", "Failed"
    DEAD_LETTERED = "dead_lettered", "Dead-lettered"
    GAP = "gap", "Nothing reported"
    MISSING = "missing", "Never consumed by an expected group"


class SeriesMetric(models.TextChoices):
    """What a lag chart or the lag series API plots."""

    LAG = "lag", "Messages behind"
    TIME_LAG_SECONDS = "time_lag_seconds", "Seconds behind"
