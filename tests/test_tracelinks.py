"""Trace ids link to the backend named by MONITOR_TRACE_URL_TEMPLATE, properly quoted."""
from monitor.tracelinks import external_trace_url


def test_no_template_means_no_external_link(settings):
    settings.MONITOR_TRACE_URL_TEMPLATE = ""
    assert external_trace_url("4bf92f3577b34da6a3ce929d0e0e4736") is None


def test_the_trace_id_is_put_in_the_template(settings):
    settings.MONITOR_TRACE_URL_TEMPLATE = "https://jaeger.example/trace/{trace_id}"
    assert external_trace_url("4bf92f3577b34da6a3ce929d0e0e4736") == \
        "https://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_hostile_trace_id_is_percent_encoded_and_cannot_leave_its_segment(settings):
    settings.MONITOR_TRACE_URL_TEMPLATE = "https://tempo.example/trace/{trace_id}?x=1"
    assert external_trace_url('a/../b?c=d&e"<script>') == \
        "https://tempo.example/trace/a%2F..%2Fb%3Fc%3Dd%26e%22%3Cscript%3E?x=1"


def test_other_braces_in_the_template_stay_as_they_are(settings):
    settings.MONITOR_TRACE_URL_TEMPLATE = 'https://grafana.example/explore?left={"queries":[{"query":"{trace_id}"}]}'
    assert external_trace_url("abc") == 'https://grafana.example/explore?left={"queries":[{"query":"abc"}]}'
