"""The route of one trace: from its first published event to its last processed one."""
from datetime import UTC, datetime, timedelta

from monitor.pathways.routes import RouteEvent, trace_route
from monitor.pathways.transactions import FlowSpec, KeyEvent, shown_state, transaction_state

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def test_a_trace_through_three_services_has_their_route_and_latency_from_the_origin():
    route = trace_route([
        RouteEvent("orders", "published", at(0), "orders.events"),
        RouteEvent("payments", "consumed", at(1), "orders.events"),
        RouteEvent("payments", "processed", at(2), "orders.events"),
        RouteEvent("payments", "published", at(2.5), "payments.events"),
        RouteEvent("shipping", "processed", at(7), "payments.events"),
    ])
    assert route is not None
    assert route.route.services == ("orders", "payments", "shipping")
    assert route.route.topics == ("orders.events", "payments.events")
    assert route.latency_seconds == 7
    assert route.hop_seconds == (0.0, 2.0, 7.0)
    assert route.route.label == "orders → payments → shipping"


def test_reports_before_the_origin_do_not_change_the_route():
    route = trace_route([
        RouteEvent("gateway", "processed", at(-5)),
        RouteEvent("orders", "published", at(0), "orders.events"),
        RouteEvent("payments", "processed", at(3), "orders.events"),
    ])
    assert route is not None and route.route.services == ("orders", "payments")


def test_a_trace_without_a_publication_or_without_a_processed_end_has_no_route_yet():
    assert trace_route([RouteEvent("payments", "processed", at(1))]) is None
    assert trace_route([RouteEvent("orders", "published", at(0)), RouteEvent("payments", "consumed", at(1))]) is None


def test_the_same_route_has_the_same_fingerprint_and_another_route_another():
    one = trace_route([RouteEvent("a", "published", at(0), "t"), RouteEvent("b", "processed", at(1), "t")])
    two = trace_route([RouteEvent("a", "published", at(5), "t"), RouteEvent("b", "processed", at(9), "t")])
    other = trace_route([RouteEvent("a", "published", at(0), "t"), RouteEvent("c", "processed", at(1), "t")])
    assert one and two and other
    assert one.route.fingerprint == two.route.fingerprint != other.route.fingerprint


ORDER = FlowSpec("order", frozenset({"OrderPlaced"}), frozenset({"OrderShipped"}), frozenset({"OrderCancelled"}), 300)


def test_a_transaction_is_completed_by_its_first_success_event():
    view = transaction_state(ORDER, [KeyEvent("OrderPlaced", "orders", at(0), "t1"),
                                     KeyEvent("PaymentTaken", "payments", at(5)),
                                     KeyEvent("OrderShipped", "shipping", at(60))])
    assert view is not None
    assert (view.state, view.ended_at, view.trace_id, view.last_service) == ("completed", at(60), "t1", "shipping")


def test_a_saga_undone_is_compensated_and_counts_its_compensations():
    view = transaction_state(ORDER, [KeyEvent("OrderPlaced", "orders", at(0)),
                                     KeyEvent("PaymentFailed", "payments", at(5)),
                                     KeyEvent("OrderCancelled", "orders", at(6))])
    assert view is not None and view.state == "compensated" and view.compensations == 1


def test_an_in_flight_transaction_becomes_stuck_past_its_slo_and_names_its_last_step():
    view = transaction_state(ORDER, [KeyEvent("OrderPlaced", "orders", at(0)),
                                     KeyEvent("PaymentTaken", "payments", at(5))])
    assert view is not None and view.state == "in_flight"
    assert (view.last_event_type, view.last_service) == ("PaymentTaken", "payments")
    assert shown_state(view.state, view.started_at, 300, at(299)) == "in_flight"
    assert shown_state(view.state, view.started_at, 300, at(301)) == "stuck"
    assert shown_state("completed", view.started_at, 300, at(10_000)) == "completed"


def test_events_of_a_key_without_a_start_event_are_no_transaction():
    assert transaction_state(ORDER, [KeyEvent("OrderShipped", "shipping", at(0))]) is None
