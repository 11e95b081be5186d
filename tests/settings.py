"""Test settings: real PostgreSQL and Redis (overridable through the environment)."""
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
# Redis is shared by every copy of the suite running at once (and by the processes the
# tests start, which inherit these): each run keeps its cache keys and Celery queues apart.
os.environ.setdefault("MONITOR_CACHE_PREFIX", f"monitor-test-{os.getpid()}")
os.environ.setdefault("MONITOR_BROKER_KEY_PREFIX", f"monitor-test-{os.getpid()}:")
# Each run gets its own test database, so two copies of the suite can run side by side.
os.environ.setdefault("MONITOR_TEST_DB_NAME", f"test_monitor_{os.getpid()}")

from monitor.settings import *  # noqa: E402,F403

ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Never the checkout's staticfiles/ (the end-to-end tests collect into it): pages under test
# name static files plainly unless a test collects into its own folder.
STATIC_ROOT = BASE_DIR / "var" / f"test-static-{os.getpid()}"  # noqa: F405

if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":  # noqa: F405
    CACHES["default"]["BACKEND"] = "tests.isolated_cache.RunScopedRedisCache"  # noqa: F405
# The tests' Slack/webhook receivers listen on 127.0.0.1; the refusal of internal targets
# is tested with this turned off (tests/test_notify_targets.py).
MONITOR_ALLOW_PRIVATE_WEBHOOKS = True
