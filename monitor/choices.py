"""Every enumerated value the product stores or exposes, in one place."""
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


class TimeLagMethod(models.TextChoices):
    EXACT = "exact", "Exact (caught up)"
    INTERPOLATED = "interpolated", "Interpolated"
    EXTRAPOLATED = "extrapolated", "Extrapolated"
    UNKNOWN = "unknown", "Unknown"


class GroupEventKind(models.TextChoices):
    GROUP_CREATED = "group_created", "Group appeared"
    GROUP_DELETED = "group_deleted", "Group disappeared"
    TOPIC_ADDED = "topic_added", "Group started reading a topic"
    TOPIC_DROPPED = "topic_dropped", "Group stopped reading a topic"
    PARTITIONS_ADDED = "partitions_added", "Partitions added"
    OFFSET_RESET = "offset_reset", "Offset reset"
    DATA_LOSS = "data_loss", "Messages deleted before they were consumed"


class Stage(models.TextChoices):
    PUBLISHED = "published", "Published"
    CONSUMED = "consumed", "Consumed"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"
    DEAD_LETTERED = "dead_lettered", "Dead-lettered"


class FindingKind(models.TextChoices):
    LOST = "lost", "Lost event"
    DUPLICATE = "duplicate", "Duplicate delivery"
    OUT_OF_ORDER = "out_of_order", "Out-of-order processing"
    SCHEMA_DRIFT = "schema_drift", "Schema drift"
    CASCADE_STORM = "cascade_storm", "Cascade storm"
    FAILURE_RATE = "failure_rate", "Failures"


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
