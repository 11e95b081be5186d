"""Admin registrations, one module per aggregate."""
from monitor.admin import alerts  # noqa: F401
from monitor.admin import clusters  # noqa: F401
from monitor.admin import events  # noqa: F401
from monitor.admin import pathways  # noqa: F401
