"""The hostile-name corpus: every door must take these (or refuse them naming the field),
and every page, API answer and message must show them escaped, never fail on them."""
from __future__ import annotations

import re

# Names Kafka allows in a group id (anything) and that ingest accepts (no control characters).
PRINTABLE = [
    "rtl\u202eevil",                      # right-to-left override
    "zwj\u200dname",                      # zero-width joiner
    "<script>alert(1)</script>",
    '<a href="https://evil.example">CLICK</a>',
    "{{ 7|add:1 }}{% now 'Y' %}",
    "%s %d %(name)s",
    "..",
    "/",
    "a/b/../c",
    "?#&=",
    "billing&rule=&cluster=*&group=*",
    "quotes\"'`",
    "emoji 🔥👩‍💻",
    "%0A%2F%3F%25",                       # percent-encoded forms stay literal
]
# Names with control characters: Kafka allows them; ingest refuses them (422 naming the field).
CONTROL = [
    "orders-consumer\nv2",
    "carriage\rreturn",
    "tab\there",
    "bell\x07del\x7f",
]
LONG = "x" * 10240  # a 10 KB name

KAFKA_NAMES = PRINTABLE + CONTROL

MARKERS = ("<script>alert(1)", '<a href="https://evil.example"')


def assert_escaped(text: str, where: str) -> None:
    """No hostile markup made it through unescaped."""
    for marker in MARKERS:
        assert marker not in text, (where, marker)
    assert not re.search(r"<a href=\"https://evil", text), where
