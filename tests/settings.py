"""Test settings: real PostgreSQL and Redis (overridable through the environment)."""
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("MONITOR_CACHE_PREFIX", f"monitor-test-{os.getpid()}")
# Each run gets its own test database, so two copies of the suite can run side by side.
os.environ.setdefault("MONITOR_TEST_DB_NAME", f"test_monitor_{os.getpid()}")

from monitor.settings import *  # noqa: E402,F403

ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Pages under test name static files plainly: no collectstatic before each run. The hashed,
# compressed storage is tested on its own (tests/test_staticstorage.py) and end to end.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
