"""The demo: a traffic simulator of several services (``simulator``) and the process
supervision behind ``make demo`` (``orchestrator``)."""
