"""Kafka lag and event-flow monitor: collect, store, evaluate, notify."""
import sys
from types import TracebackType

from django.core.exceptions import ImproperlyConfigured

_default_excepthook = sys.excepthook


def _configuration_errors_in_one_line(kind: type[BaseException], error: BaseException,
                                      traceback: TracebackType | None) -> None:
    """A bad setting stops a process (the Celery worker or beat, a script) with one line
    naming the variable, not a traceback; manage.py does the same itself."""
    if issubclass(kind, ImproperlyConfigured):
        print(f"Configuration error: {error}", file=sys.stderr)
        return
    _default_excepthook(kind, error, traceback)


sys.excepthook = _configuration_errors_in_one_line

from monitor.celery import app as celery_app  # noqa: E402 - after the hook: it may load the settings

__all__ = ["celery_app"]
