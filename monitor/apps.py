from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "monitor"
    verbose_name = "Kafka monitor"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from monitor import checks  # noqa: F401  (registers system checks)
        from monitor.alerts import signals  # noqa: F401  (rule deletion resolves its alerts)
