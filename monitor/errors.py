"""Errors of the read layer, raised on input a caller must fix (a bad time range, a bad
graph parameter). The JSON API answers them with 400 naming the field; the pages show
them in a banner. Neither has to know which query raised them.
"""
from __future__ import annotations


class QueryError(ValueError):
    """A bad query parameter; ``field`` names it, ``message`` says what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
