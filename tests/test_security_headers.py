"""The Content-Security-Policy header (django-csp): scripts from this site only, and no
template carries an inline script (it would be blocked)."""
from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_pages_carry_a_policy_that_allows_no_inline_or_foreign_script(logged_in_client):
    response = logged_in_client.get("/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in directives["script-src"] and "unsafe-eval" not in directives["script-src"]


def test_the_login_page_has_the_policy_too(client, db):
    assert "script-src 'self'" in client.get("/login/")["Content-Security-Policy"]


def test_no_template_has_an_inline_script_or_event_handler():
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script\b([^>]*)>", text):
            assert "src=" in match.group(1), f"inline <script> in {path.relative_to(TEMPLATES)}"
        assert not re.search(r"\son[a-z]+\s*=\s*[\"']", text), f"inline event handler in {path.relative_to(TEMPLATES)}"


def test_plotly_is_served_from_this_site():
    for path in TEMPLATES.rglob("*.html"):
        for src in re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", path.read_text()):
            assert src.startswith("{% static"), (path.name, src)
