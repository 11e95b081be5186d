"""Validation, normalisation and idempotent storage of event reports (no HTTP)."""
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from monitor.events import store
from monitor.events.config import IngestLimits
from monitor.events.ingest import IngestError, report_hash, validate_payload
from monitor.events.store import ingest_payload
from tests.race import race

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
LIMITS = IngestLimits(max_events=1000, max_bytes=5 * 1024 * 1024, max_attributes_bytes=8192)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


def event(**overrides):
    base = {"event_id": "evt-1", "type": "OrderPlaced", "service": "orders", "stage": "published",
            "timestamp": "2024-05-01T11:59:00Z"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def errors_of(*events, limits=LIMITS):
    with pytest.raises(IngestError) as caught:
        validate_payload({"events": list(events)}, NOW, limits)
    return caught.value


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    store.forget_registry_cache()
    yield
    store.forget_registry_cache()


# -- validation ---------------------------------------------------------------------

def test_complete_report_is_normalised_to_one_row():
    [row] = validate_payload({"events": [event(
        topic="orders", partition=3, offset=42, key="order-7", consumer_group="", schema_version=2,
        traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01", attributes={"amount": 12.5},
        timestamp="2024-05-01T13:59:00.123456+02:00",
    )]}, NOW, LIMITS)
    assert row.timestamp == dt.datetime(2024, 5, 1, 11, 59, 0, 123456, tzinfo=dt.timezone.utc)
    assert (row.topic, row.partition, row.offset, row.key, row.schema_version) == ("orders", 3, 42, "order-7", 2)
    assert (row.trace_id, row.span_id, row.parent_span_id) == (TRACE_ID, SPAN_ID, "")
    assert row.attributes == '{"amount":12.5}'


@pytest.mark.parametrize("field", ["event_id", "type", "service", "stage", "timestamp"])
def test_missing_required_field_is_named(field):
    error = errors_of(event(**{field: ...}))
    assert error.status == 422
    assert [(e.loc, e.msg) for e in error.errors] == [(("events", 0, field), "field required")]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("event_id", "", "must not be empty"),
    ("event_id", 17, "must be a string"),
    ("event_id", "x" * 201, "at most 200 characters"),
    ("service", "svc\x00", "NUL"),
    ("stage", "delivered", "must be one of outbox, published, consumed, processed, failed, dead_lettered"),
    ("stage", ["published"], "must be one of"),
    ("timestamp", "yesterday", "not an ISO-8601"),
    ("timestamp", "2024-05-01T12:00:00", "must include a timezone"),
    ("timestamp", 1714564800, "ISO-8601 string"),
    ("timestamp", "1999-12-31T23:59:59Z", "before the year 2000"),
    ("timestamp", "2024-05-03T12:00:00Z", "more than a day in the future"),
    ("topic", "orders topic", "Kafka topic name"),
    ("topic", "t" * 250, "Kafka topic name"),
    ("partition", -1, "between 0 and"),
    ("partition", True, "must be an integer"),
    ("partition", "3", "must be an integer"),
    ("offset", 2**63, "between 0 and"),
    ("offset", 1.5, "must be an integer"),
    ("key", "k" * 256, "at most 255"),
    ("consumer_group", ["billing"], "must be a string"),
    ("schema_version", "2", "must be an integer"),
    ("traceparent", f"00-{'0' * 32}-{SPAN_ID}-01", "trace id must not be all zeros"),
    ("traceparent", f"01-{TRACE_ID}-{SPAN_ID}", "four dash-separated fields"),
    ("attributes", ["a"], "must be an object"),
    ("attributes", {"blob": "x" * 9000}, "at most 8192 bytes"),
    ("attributes", {"text": "a\x00b"}, "NUL"),
    ("attributes", {"ratio": float("nan")}, "NaN"),
    ("colour", "blue", "unknown field"),
])
def test_invalid_field_is_refused_naming_index_and_field(field, value, message):
    error = errors_of(event(), event(**{"event_id": "evt-2", field: value}))
    assert [e.loc for e in error.errors] == [("events", 1, field)]
    assert message in error.errors[0].msg
    assert "index 1" in error.detail


def test_trace_id_needs_span_id_and_vice_versa():
    assert [e.loc for e in errors_of(event(trace_id=TRACE_ID)).errors] == [("events", 0, "span_id")]
    assert [e.loc for e in errors_of(event(span_id=SPAN_ID)).errors] == [("events", 0, "trace_id")]
    [row] = validate_payload({"events": [event(trace_id=TRACE_ID, span_id=SPAN_ID)]}, NOW, LIMITS)
    assert (row.trace_id, row.span_id) == (TRACE_ID, SPAN_ID)


def test_parent_span_id_is_checked_and_needs_a_trace():
    traced = {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}
    [row] = validate_payload({"events": [event(parent_span_id="1" * 16, **traced)]}, NOW, LIMITS)
    assert row.parent_span_id == "1" * 16
    assert [e.msg for e in errors_of(event(parent_span_id="xyz", **traced)).errors] == [
        "must be 16 lowercase hex digits"]
    assert [e.msg for e in errors_of(event(parent_span_id="1" * 16)).errors] == ["needs traceparent or trace_id"]


def test_bare_ids_must_agree_with_the_traceparent():
    error = errors_of(event(traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01", trace_id="1" * 32))
    assert [(e.loc, e.msg) for e in error.errors] == [(("events", 0, "trace_id"), "does not match traceparent")]


def test_every_bad_event_of_a_batch_is_reported():
    error = errors_of(event(), event(stage="x"), event(), event(timestamp=None, partition=-2), "not an object")
    assert [e.loc for e in error.errors] == [
        ("events", 1, "stage"), ("events", 3, "timestamp"), ("events", 3, "partition"), ("events", 4)]
    assert error.detail.startswith("3 invalid event(s) at index 1, 3, 4")


@pytest.mark.parametrize("levels, refused", [(16, False), (17, True)])
def test_attributes_may_nest_sixteen_levels_of_objects_and_lists(levels, refused):
    from monitor.events.ingest import MAX_ATTRIBUTE_DEPTH

    assert MAX_ATTRIBUTE_DEPTH == 16
    inner: object = "leaf"
    for level in range(levels - 1):  # the attributes object itself is the first level
        inner = {"k": inner} if level % 2 else [1, inner, "x"]
    attributes = {f"flat{n}": n for n in range(50)} | {"deep": inner, "after": [1, 2]}
    if refused:
        error = errors_of(event(attributes=attributes))
        assert [(e.loc, e.msg) for e in error.errors] == [
            (("events", 0, "attributes"), "must be nested at most 16 levels deep")]
    else:
        [row] = validate_payload({"events": [event(attributes=attributes)]}, NOW, LIMITS)
        assert json.loads(row.attributes) == attributes


def test_batch_over_the_configured_size_is_too_large():
    small = IngestLimits(max_events=2, max_bytes=1024, max_attributes_bytes=100)
    error = errors_of(event(), event(), event(), limits=small)
    assert error.status == 413


@pytest.mark.parametrize("payload", [[], "events", {"events": {"a": 1}}, {}])
def test_body_of_the_wrong_shape_is_refused(payload):
    with pytest.raises(IngestError) as caught:
        validate_payload(payload, NOW, LIMITS)
    assert caught.value.status in (400, 422)


def test_report_hash_is_the_same_for_the_same_instant_in_any_spelling():
    one = validate_payload({"events": [event(timestamp="2024-05-01T11:59:00Z")]}, NOW, LIMITS)[0]
    two = validate_payload({"events": [event(timestamp="2024-05-01T13:59:00.000000+02:00")]}, NOW, LIMITS)[0]
    assert one.report_hash == two.report_hash == report_hash(
        "evt-1", "published", "orders", "", dt.datetime(2024, 5, 1, 11, 59, tzinfo=dt.timezone.utc))


# -- storage ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_batch_is_stored_and_services_and_types_are_registered():
    from monitor.models import Event, EventType, Service

    result = ingest_payload({"events": [
        event(event_id="a", topic="orders", attributes={"amount": 3}),
        event(event_id="a", service="billing", stage="processed", consumer_group="billing", type="OrderPlaced"),
        event(event_id="b", type="PaymentAuthorised", service="payments"),
    ]}, NOW, LIMITS)
    assert (result.accepted, result.duplicates) == (3, 0)
    assert Event.objects.count() == 3
    assert Event.objects.get(event_id="a", stage="published").attributes == {"amount": 3}
    assert Event.objects.get(event_id="a", stage="processed").received_at == NOW
    assert sorted(Service.objects.values_list("name", flat=True)) == ["billing", "orders", "payments"]
    assert sorted(EventType.objects.values_list("name", flat=True)) == ["OrderPlaced", "PaymentAuthorised"]


@pytest.mark.django_db
def test_every_column_of_a_report_is_stored_as_validated():
    """The binary COPY sends each value in its column's wire form; the hash and the
    attributes as their bytes (uuid, jsonb): read back, each is what validation made."""
    import uuid

    from monitor.models import Event

    full = event(event_id="évt-ü", topic="orders.v2", partition=2**31 - 1, offset=2**63 - 1, key="k\u00e9y",
                 consumer_group="billing", schema_version=7, stage="processed",
                 traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01", parent_span_id="00f067aa0ba902b7",
                 timestamp="2024-05-01T13:59:00.123456+02:00",
                 attributes={"amount": 3, "naïve": ["ß", None, 1.5, {"deep": True}], "quote": "a\"b\\c"})
    bare = event(event_id="bare")
    rows = validate_payload({"events": [full, bare]}, NOW, LIMITS)
    assert store.store_rows(rows, NOW).accepted == 2
    for row in rows:
        stored = Event.objects.get(event_id=row.event_id)
        for name in row._fields:
            value = getattr(stored, name)
            expected = getattr(row, name)
            if name == "attributes":
                expected = None if expected is None else json.loads(expected)
            elif name == "report_hash":
                expected = uuid.UUID(expected)
            assert value == expected, name
        assert stored.received_at == NOW
    assert Event.objects.get(event_id="bare").attributes is None


@pytest.mark.django_db
def test_batches_stored_one_after_another_in_one_transaction_are_each_counted():
    """Inside a caller's transaction (the header tap) the batch table is emptied between
    batches: the second batch neither stores nor counts the first one's rows again."""
    from django.db import transaction

    from monitor.models import Event

    with transaction.atomic():
        first = store.store_rows(validate_payload({"events": [event(event_id="a"), event(event_id="b")]}, NOW,
                                                  LIMITS), NOW)
        second = store.store_rows(validate_payload({"events": [event(event_id="b"), event(event_id="c")]}, NOW,
                                                   LIMITS), NOW)
    assert (first.accepted, first.duplicates, second.accepted, second.duplicates) == (2, 0, 1, 1)
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["a", "b", "c"]


@pytest.mark.django_db
def test_report_sent_again_unchanged_is_stored_once_and_counted_as_duplicate():
    from monitor.models import Event

    batch = {"events": [event(event_id="a"), event(event_id="b")]}
    assert ingest_payload(batch, NOW, LIMITS).accepted == 2
    again = ingest_payload({"events": [event(event_id="a"), event(event_id="b"), event(event_id="c")]}, NOW, LIMITS)
    assert (again.accepted, again.duplicates) == (1, 2)
    assert Event.objects.count() == 3


@pytest.mark.django_db
def test_identical_reports_within_one_batch_count_as_duplicates():
    from monitor.models import Event

    result = ingest_payload({"events": [event(), event(), event(timestamp="2024-05-01T13:59:00+02:00")]}, NOW, LIMITS)
    assert (result.accepted, result.duplicates) == (1, 2)
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_same_event_at_another_timestamp_is_a_second_delivery_and_is_stored():
    from monitor.models import Event

    first = event(stage="processed", consumer_group="billing", timestamp="2024-05-01T11:59:00Z")
    second = event(stage="processed", consumer_group="billing", timestamp="2024-05-01T11:59:05Z")
    result = ingest_payload({"events": [first, second]}, NOW, LIMITS)
    assert (result.accepted, result.duplicates) == (2, 0)
    assert Event.objects.filter(event_id="evt-1", stage="processed").count() == 2


@pytest.mark.django_db
def test_report_identity_includes_stage_service_and_group():
    result = ingest_payload({"events": [
        event(), event(stage="consumed"), event(service="billing"),
        event(stage="consumed", consumer_group="a"), event(stage="consumed", consumer_group="b"),
    ]}, NOW, LIMITS)
    assert (result.accepted, result.duplicates) == (5, 0)


@pytest.mark.django_db
def test_invalid_batch_stores_nothing_and_registers_nothing():
    from monitor.models import Event, Service

    with pytest.raises(IngestError):
        ingest_payload({"events": [event(service="new-service"), event(event_id="b", offset=-5)]}, NOW, LIMITS)
    assert Event.objects.count() == 0
    assert not Service.objects.exists()


@pytest.mark.django_db
def test_known_service_last_seen_moves_forward():
    from monitor.models import Service

    ingest_payload({"events": [event()]}, NOW, LIMITS)
    store.forget_registry_cache()
    later = NOW + dt.timedelta(minutes=5)
    ingest_payload({"events": [event(event_id="b")]}, later, LIMITS)
    service = Service.objects.get(name="orders")
    assert (service.first_seen_at, service.last_seen_at) == (NOW, later)


@pytest.mark.django_db
def test_a_retry_is_a_duplicate_whether_its_day_has_a_partition_or_waited_in_the_default_one():
    from django.db import connection

    from monitor import timepartitions
    from monitor.models import Event

    table = Event._meta.db_table
    waiting = {"events": [event(event_id="early", timestamp="2024-05-01T00:00:00Z"),
                          event(event_id="late", timestamp="2024-04-30T23:59:59Z")]}
    assert ingest_payload(waiting, NOW, LIMITS).accepted == 2  # no partition yet: the default one
    assert timepartitions.ensure_partitions(table, NOW, days_ahead=0, days_back=1) == [
        f"{table}_p20240430", f"{table}_p20240501"]
    again = ingest_payload({"events": [*waiting["events"], event(event_id="new", timestamp="2024-05-01T11:00:00Z")]},
                           NOW, LIMITS)
    assert (again.accepted, again.duplicates) == (1, 2)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")
        assert dict(cursor.fetchall()) == {f"{table}_p20240430": 1, f"{table}_p20240501": 2}
    assert Event.objects.count() == 3


@pytest.mark.django_db
def test_names_this_process_just_stored_are_known_without_a_query(django_assert_num_queries):
    rows = validate_payload({"events": [event(topic="orders"), event(event_id="b", service="billing")]}, NOW, LIMITS)
    assert store.unknown_names(rows) == {"services": {"orders", "billing"}, "event_types": {"OrderPlaced"},
                                         "topics": {"orders"}}
    store.store_rows(rows, NOW)
    with django_assert_num_queries(0):
        assert store.unknown_names(rows) == {"services": set(), "event_types": set(), "topics": set()}
    store.forget_registry_cache()
    with django_assert_num_queries(3):
        assert store.unknown_names(rows) == {"services": set(), "event_types": set(), "topics": set()}


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_retries_store_each_report_once_and_count_exactly():

    from monitor.models import Event

    batch = {"events": [event(event_id=f"evt-{i}") for i in range(300)]}
    results = race(lambda: ingest_payload(batch, NOW, LIMITS), runners=4)
    assert len(results) == 4
    assert sum(r.accepted for r in results) == 300
    assert sum(r.duplicates for r in results) == 900
    assert Event.objects.count() == 300


# -- properties: arbitrary JSON is refused with a 4xx or stored, never raises (issue 11) ---------

_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates and controls too
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT
JSON = st.recursive(_SCALARS, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(_ANY_TEXT, children, max_size=4), max_leaves=20)
_FIELD_VALUES = {
    "event_id": _ANY_TEXT, "type": _ANY_TEXT, "service": _ANY_TEXT, "consumer_group": _ANY_TEXT, "key": _ANY_TEXT,
    "stage": st.sampled_from(["published", "consumed", "processed", "failed", "bogus"]) | JSON,
    "timestamp": st.sampled_from(["2024-05-01T12:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00",
                                  "2024-05-01T12:00:00"]) | _ANY_TEXT | JSON,
    "topic": st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True) | _ANY_TEXT,
    "partition": st.integers() | JSON, "offset": st.integers() | JSON, "schema_version": st.integers() | JSON,
    "trace_id": st.from_regex(r"[0-9a-f]{32}\n?", fullmatch=True) | _ANY_TEXT,
    "span_id": st.from_regex(r"[0-9a-f]{16}", fullmatch=True) | _ANY_TEXT,
    "traceparent": _ANY_TEXT, "attributes": JSON,
}
EVENTS = st.fixed_dictionaries({}, optional=_FIELD_VALUES) | JSON
_NOW = dt.datetime(2024, 5, 1, 12, 5, tzinfo=dt.timezone.utc)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.fixed_dictionaries({"events": st.lists(EVENTS, max_size=5)}) | JSON)
def test_any_json_is_refused_naming_fields_or_normalised_never_raises(payload):
    try:
        rows = validate_payload(payload, _NOW, IngestLimits(1000, 10**6, 8192))
    except IngestError as error:
        assert 400 <= error.status < 500
        assert all(e.loc for e in error.errors)
        return
    for row in rows:
        for name in ("event_id", "type", "service", "consumer_group"):
            value = getattr(row, name)
            value.encode()  # storable: no lone surrogate
            assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in value), (name, value)
        assert row.trace_id == "" or len(row.trace_id) == 32 and "\n" not in row.trace_id


def test_on_sqlite_a_retry_is_counted_as_duplicates_and_stored_once(tmp_path):
    """The demo's database dedupes through the same (timestamp, report hash) key."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = """
import datetime as dt, json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from monitor.events.store import ingest_payload
from monitor.models import Event
from tests.test_events_ingest import LIMITS, NOW, event
batch = {"events": [event(event_id=f"evt-{n}", timestamp=f"2024-05-01T11:{n % 60:02d}:00Z") for n in range(450)]}
first = ingest_payload(batch, NOW, LIMITS)
again = ingest_payload({"events": batch["events"] + [event(event_id="new")]}, NOW, LIMITS)
print(json.dumps([first.accepted, first.duplicates, again.accepted, again.duplicates, Event.objects.count()]))
"""
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("REDIS_URL", "MONITOR_TEST_DB_NAME")}
    environment.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", DEBUG="true",
                       DJANGO_SETTINGS_MODULE="monitor.settings")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parent.parent, env=environment, timeout=300)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [450, 0, 1, 450, 451]
