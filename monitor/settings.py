"""Project settings: read only from environment variables (see README, Configuration).

Safe defaults for production: DEBUG is off unless asked for, SECRET_KEY is required
when DEBUG is off, cookies are secure unless DEBUG.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from monitor.envconf import env_bool, env_int, env_list, env_str, parse_bootstrap_clusters

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "monitor.apps.MonitorConfig",
    "dashboards.apps.DashboardsConfig",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "monitor.middleware.DatabaseUnavailableMiddleware",
    "monitor.middleware.RefuseNulMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed logins for one username
# from one address, that pair is locked out for AXES_COOLOFF_HOURS; the login page says so.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "locked.html"
AXES_VERBOSE = False

# Content-Security-Policy (django-csp): scripts only from this site (no inline script;
# Plotly is served from static/vendor), no plugins, no framing. Plotly sets inline styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "monitor.urls"
WSGI_APPLICATION = "monitor.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboards.context_processors.navigation",
            ],
        },
    }
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'monitor.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # WAL lets the demo's web server, worker and beat read while one of them writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
# Every statement has a time limit: a request or task stuck on a lock or a slow query
# fails instead of holding a connection forever. Web requests get the short one; Celery
# processes switch to the task limit at start-up (monitor/celery.py).
MONITOR_DB_STATEMENT_TIMEOUT_SECONDS = env_int("MONITOR_DB_STATEMENT_TIMEOUT_SECONDS", 30, minimum=1)
MONITOR_TASK_STATEMENT_TIMEOUT_SECONDS = env_int("MONITOR_TASK_STATEMENT_TIMEOUT_SECONDS", 300, minimum=1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "options": f"-c statement_timeout={MONITOR_DB_STATEMENT_TIMEOUT_SECONDS * 1000}",
        "connect_timeout": 5,
    })
    # A kept-open connection is checked before reuse: after a database restart the next
    # request or task reconnects instead of failing on the dead connection.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Tests running side by side (developers, CI) may each choose their own test database.
_test_db_name = env_str("MONITOR_TEST_DB_NAME")
if _test_db_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("MONITOR_CACHE_PREFIX", "monitor"),
            "TIMEOUT": 300,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL == "filesystem://":
    # Embedded transport for the demo when no Redis is reachable: processes on one
    # machine exchange messages through folders under var/celery/ (never in the repo root:
    # kombu's default control folder is ./control).
    _celery_dir = BASE_DIR / "var" / "celery"
    for _folder in ("queue", "control", "processed"):
        (_celery_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "control_folder": str(_celery_dir / "control"),
        "processed_folder": str(_celery_dir / "processed"),
    }
else:
    # visibility_timeout: a message taken by a worker that died (acks_late: unacked) is
    # handed out again after this many seconds. It must exceed the longest task (300 s):
    # a task still running when it expires is run a second time. Every task is
    # idempotent (claims, locks), so that costs work, never a duplicate notification; and
    # nothing waits for it: the outbox sweep (30 s) re-sends a dead worker's notification
    # once its claim's lease expires, the poll scheduler re-claims clusters.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 3, "max_retries": 3,
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 600, minimum=60),
    }
    # Several deployments (or test runs) sharing one Redis keep their queues apart.
    _broker_key_prefix = env_str("MONITOR_BROKER_KEY_PREFIX")
    if _broker_key_prefix:
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = _broker_key_prefix
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# print() in tasks (e.g. the console email backend of the demo) is output, not a warning.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "monitor.staticfiles.HashedStaticFiles"},
}

# Security: secure by default, relaxed only with DEBUG.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Probes speak plain HTTP to the process itself: answer them, never redirect to https.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = False
# No SECURE_PROXY_SSL_HEADER: Django would believe X-Forwarded-Proto from any client.
# gunicorn sets the scheme from it only for peers in --forwarded-allow-ips (the proxy).
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SILENCED_SYSTEM_CHECKS = ["security.W021"] if not SECURE_HSTS_PRELOAD else []

EMAIL_URL = env_str("EMAIL_URL")
if EMAIL_URL:
    from urllib.parse import unquote, urlparse

    _email = urlparse(EMAIL_URL)
    if _email.scheme not in {"smtp", "smtps", "submission"}:
        raise ImproperlyConfigured("EMAIL_URL must be smtp://, smtps:// or submission://")
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _email.hostname or "localhost"
    EMAIL_PORT = _email.port or (465 if _email.scheme == "smtps" else 587 if _email.scheme == "submission" else 25)
    EMAIL_HOST_USER = unquote(_email.username or "")
    EMAIL_HOST_PASSWORD = unquote(_email.password or "")
    EMAIL_USE_SSL = _email.scheme == "smtps"
    EMAIL_USE_TLS = _email.scheme == "submission"
else:
    EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
    EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "kafka-monitor@localhost")

OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT")

# Product settings.
MONITOR_BOOTSTRAP_CLUSTERS = parse_bootstrap_clusters(env_str("MONITOR_BOOTSTRAP_CLUSTERS", "") or "")
MONITOR_BASE_URL = env_str("MONITOR_BASE_URL", "http://127.0.0.1:8000")
# Trace backends (Jaeger, Tempo, Grafana Explore): every trace id links there when set.
MONITOR_TRACE_URL_TEMPLATE = env_str("MONITOR_TRACE_URL_TEMPLATE", "") or ""
if MONITOR_TRACE_URL_TEMPLATE and (
        "{trace_id}" not in MONITOR_TRACE_URL_TEMPLATE
        or not MONITOR_TRACE_URL_TEMPLATE.startswith(("https://", "http://"))):
    raise ImproperlyConfigured("MONITOR_TRACE_URL_TEMPLATE must be an http(s) URL containing {trace_id}, "
                               "e.g. https://jaeger.example/trace/{trace_id}")
MONITOR_KAFKA_TIMEOUT_SECONDS = env_int("MONITOR_KAFKA_TIMEOUT_SECONDS", 10, minimum=1)
MONITOR_RAW_RETENTION_HOURS = env_int("MONITOR_RAW_RETENTION_HOURS", 48, minimum=1)
MONITOR_ROLLUP_RETENTION_DAYS = env_int("MONITOR_ROLLUP_RETENTION_DAYS", 30, minimum=1)
# How often a group's partition detail is kept for its charts, and log starts (0: every poll);
# totals and log ends every poll.
MONITOR_PARTITION_DETAIL_SECONDS = env_int("MONITOR_PARTITION_DETAIL_SECONDS", 300, minimum=0)
MONITOR_STATUS_WINDOW_SECONDS = env_int("MONITOR_STATUS_WINDOW_SECONDS", 600, minimum=30)
MONITOR_STOPPED_AFTER_SECONDS = env_int("MONITOR_STOPPED_AFTER_SECONDS", 900, minimum=30)
# Time lag from record timestamps: bytes read per partition and per cycle (0 turns it off).
# A batch header is 61 bytes: a partition budget below that cannot read any timestamp.
MONITOR_TIME_LAG_FETCH_PARTITION_BYTES = env_int("MONITOR_TIME_LAG_FETCH_PARTITION_BYTES", 1024, minimum=64)
MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = env_int("MONITOR_TIME_LAG_FETCH_CYCLE_BYTES", 1024 * 1024, minimum=0)
# At most this many consumer groups per poll task: a cluster with more is polled in shards,
# one Celery task per shard (0: never shard). See "Polling in shards" in the README.
MONITOR_POLL_SHARD_GROUPS = env_int("MONITOR_POLL_SHARD_GROUPS", 0, minimum=0)
# The Celery queue of the poll tasks (empty: the default queue, with everything else). A
# poll is CPU-bound Python: a queue of its own lets worker processes (--pool=prefork) take
# the shards of a cycle at once while the threads worker keeps delivering notifications.
MONITOR_POLL_QUEUE = env_str("MONITOR_POLL_QUEUE", "")
if MONITOR_POLL_QUEUE and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", MONITOR_POLL_QUEUE):
    raise ImproperlyConfigured("MONITOR_POLL_QUEUE must be a queue name: letters, digits, '.', '_' or '-'")
CELERY_TASK_ROUTES = {task: {"queue": MONITOR_POLL_QUEUE} for task in ("monitor.poll_cluster",
                                                                     "monitor.poll_cluster_shard")
                      } if MONITOR_POLL_QUEUE else {}
MONITOR_EVALUATE_INTERVAL_SECONDS = env_int("MONITOR_EVALUATE_INTERVAL_SECONDS", 15, minimum=1)
# The outbox sweep: delivers retries and the notifications of workers that died.
MONITOR_SWEEP_INTERVAL_SECONDS = env_int("MONITOR_SWEEP_INTERVAL_SECONDS", 30, minimum=1)
# Beat and worker record a heartbeat this often; /readyz fails after three missed ones.
MONITOR_HEARTBEAT_INTERVAL_SECONDS = env_int("MONITOR_HEARTBEAT_INTERVAL_SECONDS", 5, minimum=1)
# Beat records its heartbeat and holds a lock, so a second beat sends nothing (monitor/beat.py).
CELERY_BEAT_SCHEDULER = "monitor.beat:LockedScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = MONITOR_HEARTBEAT_INTERVAL_SECONDS
# Delivery: a claim's lease must outlast any send (timeouts apply per network step).
MONITOR_NOTIFY_TIMEOUT_SECONDS = env_int("MONITOR_NOTIFY_TIMEOUT_SECONDS", 10, minimum=1)
MONITOR_DELIVERY_LEASE_SECONDS = env_int("MONITOR_DELIVERY_LEASE_SECONDS", 60, minimum=5)
MONITOR_DELIVERY_BACKOFF_SECONDS = env_int("MONITOR_DELIVERY_BACKOFF_SECONDS", 15, minimum=1)
if MONITOR_DELIVERY_LEASE_SECONDS < 3 * MONITOR_NOTIFY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured("MONITOR_DELIVERY_LEASE_SECONDS must be at least 3 x MONITOR_NOTIFY_TIMEOUT_SECONDS "
                               "(a send may wait for connect, write and read)")
MONITOR_INGEST_MAX_EVENTS = env_int("MONITOR_INGEST_MAX_EVENTS", 1000, minimum=1)
MONITOR_INGEST_MAX_BYTES = env_int("MONITOR_INGEST_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
# Flow graph health tolerances, JSON: {"failed_share_warning": 0.01, "p95_critical_seconds": 30, ...}
_flow_tolerances = env_str("MONITOR_FLOW_TOLERANCES", "") or "{}"
try:
    MONITOR_FLOW_TOLERANCES = json.loads(_flow_tolerances)
except ValueError as exc:
    raise ImproperlyConfigured(f"MONITOR_FLOW_TOLERANCES is not valid JSON: {exc}") from exc
if not isinstance(MONITOR_FLOW_TOLERANCES, dict):
    raise ImproperlyConfigured("MONITOR_FLOW_TOLERANCES must be a JSON object")
# `make demo`: the admin user's password (else one is generated and printed once).
DEMO_PASSWORD = env_str("DEMO_PASSWORD")
# /metrics needs a read token unless this is true (for scrapers on a trusted network).
MONITOR_METRICS_PUBLIC = env_bool("MONITOR_METRICS_PUBLIC", False)
# /metrics lag series: partition (per partition and per topic), topic, or group (per-group only).
MONITOR_METRICS_GRANULARITY = env_str("MONITOR_METRICS_GRANULARITY", "partition") or "partition"
if MONITOR_METRICS_GRANULARITY not in ("partition", "topic", "group"):
    raise ImproperlyConfigured("MONITOR_METRICS_GRANULARITY must be partition, topic or group")
MONITOR_EVENT_RETENTION_DAYS = env_int("MONITOR_EVENT_RETENTION_DAYS", 7, minimum=1)
MONITOR_INGEST_MAX_ATTRIBUTES_BYTES = env_int("MONITOR_INGEST_MAX_ATTRIBUTES_BYTES", 8192, minimum=2)
# Slack/webhook receivers on loopback, private or link-local addresses are refused unless true.
MONITOR_ALLOW_PRIVATE_WEBHOOKS = env_bool("MONITOR_ALLOW_PRIVATE_WEBHOOKS", False)
# Per ingest token (0 = no limit): requests per minute, and new distinct names (services,
# topics, event types never seen before) per hour, each kind on its own; beyond: 429.
MONITOR_INGEST_RATE_PER_MINUTE = env_int("MONITOR_INGEST_RATE_PER_MINUTE", 600, minimum=0)
MONITOR_NEW_NAMES_PER_HOUR = env_int("MONITOR_NEW_NAMES_PER_HOUR", 1000, minimum=0)
MONITOR_OTLP_MAX_LINKS_PER_SPAN = env_int("MONITOR_OTLP_MAX_LINKS_PER_SPAN", 128, minimum=1)
# Detectors (monitor/events/config.py DetectorConfig): windows in seconds, storm thresholds.
MONITOR_DETECTOR_LOOKBACK_SECONDS = env_int("MONITOR_DETECTOR_LOOKBACK_SECONDS", 3600, minimum=60)
MONITOR_LOST_AFTER_SECONDS = env_int("MONITOR_LOST_AFTER_SECONDS", 300, minimum=1)
# Produce rates (alert metrics produce_rate and produce_rate_vs_baseline) are judged over this window.
MONITOR_PRODUCE_RATE_WINDOW_SECONDS = env_int("MONITOR_PRODUCE_RATE_WINDOW_SECONDS", 600, minimum=60)
MONITOR_SCHEMA_LOOKBACK_SECONDS = env_int("MONITOR_SCHEMA_LOOKBACK_SECONDS", 86400, minimum=60)
MONITOR_STORM_MAX_EVENTS = env_int("MONITOR_STORM_MAX_EVENTS", 1000, minimum=2)
MONITOR_STORM_MAX_FANOUT = env_int("MONITOR_STORM_MAX_FANOUT", 100, minimum=2)
MONITOR_STORM_FACTOR = env_int("MONITOR_STORM_FACTOR", 10, minimum=2)
MONITOR_STORM_MIN_EVENTS = env_int("MONITOR_STORM_MIN_EVENTS", 50, minimum=2)
MONITOR_DETECTOR_MAX_EVENTS = env_int("MONITOR_DETECTOR_MAX_EVENTS", 200_000, minimum=1000)
MONITOR_FINDING_EXAMPLES = env_int("MONITOR_FINDING_EXAMPLES", 5, minimum=1)
# The event tap (monitor/events/tap.py): per cluster and run.
MONITOR_TAP_MAX_MESSAGES = env_int("MONITOR_TAP_MAX_MESSAGES", 5000, minimum=1)
MONITOR_TAP_SECONDS = env_int("MONITOR_TAP_SECONDS", 10, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = MONITOR_INGEST_MAX_BYTES + 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace": {"()": "monitor.telemetry.TraceIdFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s trace_id=%(trace_id)s %(message)s",
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["trace"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "kafka": {"level": "WARNING"},
        # Cancelled metadata refreshes while an admin client closes are expected noise.
        "kafka.cluster": {"level": "CRITICAL"},
        "django.db.backends": {"level": "WARNING"},
    },
}
