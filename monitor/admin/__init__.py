"""Admin registrations, one module per aggregate."""
from monitor.admin import clusters  # noqa: F401
