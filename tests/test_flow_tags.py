"""Template helpers: the range picker any page can include, and number formats."""
from django.template import Context, Template
from django.test import RequestFactory

from dashboards.templatetags.flow_tags import rate, share


def render_picker(query):
    request = RequestFactory().get("/anything/", query)
    return Template("{% load flow_tags %}{% range_picker %}").render(Context({"request": request}))


def test_the_picker_selects_the_current_range_and_keeps_the_other_parameters():
    html = render_picker({"range": "24h", "focus": "payments", "part": "figure"})
    assert '<option value="24h" selected>' in html
    assert '<input type="hidden" name="focus" value="payments">' in html
    assert 'name="part"' not in html
    assert 'action="/anything/"' in html


def test_a_custom_window_shows_its_times_in_utc():
    html = render_picker({"since": "2024-05-01T10:00:00Z", "until": "2024-05-01T11:00:00Z"})
    assert '<option value="custom" selected>' in html
    assert 'value="2024-05-01T10:00:00"' in html and 'value="2024-05-01T11:00:00"' in html


def test_a_bad_range_falls_back_to_the_default_instead_of_failing():
    assert '<option value="1h" selected>' in render_picker({"range": "forever"})


def test_rates_keep_enough_digits_for_a_trickle():
    assert [rate(v) for v in (None, 0, 0.0042, 0.25, 3.14159, 1234.5)] == ["—", "0", "0.0042", "0.25", "3.1", "1,234"]


def test_shares_are_percentages():
    assert [share(v) for v in (None, 0.053, 0.5)] == ["—", "5.3 %", "50 %"]
