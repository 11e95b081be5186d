from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "monitor"
    verbose_name = "Kafka monitor"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from monitor import checks  # noqa: F401  (registers system checks)
        from monitor.alerts import signals  # noqa: F401  (rule deletion resolves its alerts)
        from django.db.backends.signals import connection_created

        from monitor.dbloaders import remember_timestamps

        connection_created.connect(remember_timestamps, dispatch_uid="monitor.dbloaders")
