import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
application = get_wsgi_application()

from monitor import telemetry  # noqa: E402

telemetry.configure("kafka-monitor-web")
