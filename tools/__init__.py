"""Development tools (not shipped): custom import-linter contracts."""
