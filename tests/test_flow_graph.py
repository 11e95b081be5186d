"""Flow graph rules on plain data: edges, health against tolerances, focus, hubs, skew."""
import pytest

from monitor.flow.graph import (
    ConsumeAggregate,
    GroupLag,
    InputError,
    PublishAggregate,
    Tolerances,
    build_flow_graph,
    consumers_of_group,
    find_hubs,
    focus,
    fold_to_top,
    others_id,
    hide,
    hot_keys,
    node_id,
    partition_skew,
)
from monitor.choices import GroupStatus, Health


def order_saga_graph(**kwargs):
    publishes = [PublishAggregate("orders", "orders.events", 1000),
                 PublishAggregate("payments", "payments.events", 900)]
    consumes = [
        ConsumeAggregate("orders.events", "payments", "payments-svc", consumed=1000, processed=1000),
        ConsumeAggregate("orders.events", "analytics", "analytics", consumed=1000, processed=1000),
        ConsumeAggregate("payments.events", "orders", "orders-svc", consumed=900, processed=860, failed=30,
                         dead_lettered=10),
    ]
    return build_flow_graph(publishes, consumes, span_seconds=100.0, **kwargs)


def edge(graph, source, target, group=""):
    return next(e for e in graph.edges if e.source == source and e.target == target and e.consumer_group == group)


def test_topics_are_nodes_between_producers_and_consumers():
    graph = order_saga_graph()
    assert {n.id: n.kind for n in graph.nodes.values()} == {
        "service:analytics": "service", "service:orders": "service", "service:payments": "service",
        "topic:orders.events": "topic", "topic:payments.events": "topic",
    }
    publish = edge(graph, "service:orders", "topic:orders.events")
    consume = edge(graph, "topic:orders.events", "service:payments", "payments-svc")
    assert (publish.kind, publish.events, publish.rate_per_second) == ("publish", 1000, 10.0)
    assert (consume.kind, consume.consumer_group, consume.events) == ("consume", "payments-svc", 1000)


def test_failed_counts_failures_and_dead_letters_of_the_edge():
    failing = edge(order_saga_graph(), "topic:payments.events", "service:orders", "orders-svc")
    assert failing.failed == 40
    assert failing.failed_share == pytest.approx(40 / 900)


def test_a_consumer_reporting_only_outcomes_still_counts_its_deliveries():
    graph = build_flow_graph([], [ConsumeAggregate("t", "svc", "g", consumed=0, processed=7, failed=3)], 10.0)
    assert graph.edges[0].events == 10


def test_health_turns_red_past_the_critical_failure_share_and_says_why():
    failing = edge(order_saga_graph(), "topic:payments.events", "service:orders", "orders-svc")
    assert failing.health == Health.WARNING  # 4.4 % is past 1 % but not 5 %
    strict = edge(order_saga_graph(tolerances=Tolerances(failed_share_critical=0.04)),
                  "topic:payments.events", "service:orders", "orders-svc")
    assert strict.health == Health.CRITICAL
    assert strict.reasons == ["failed 4.4% >= 4.0%"]


def test_latency_and_lag_colour_the_consume_edge():
    graph = order_saga_graph(
        p95_by_consumer={("orders.events", "payments", "payments-svc"): 90.0},
        lag_by_group_topic={("analytics", "orders.events"): GroupLag(lag=2_000, status=GroupStatus.OK)},
    )
    assert edge(graph, "topic:orders.events", "service:payments", "payments-svc").health == Health.CRITICAL
    analytics = edge(graph, "topic:orders.events", "service:analytics", "analytics")
    assert (analytics.lag, analytics.health) == (2_000, Health.WARNING)


def test_a_stopped_group_is_critical_even_without_lag_numbers():
    graph = order_saga_graph(lag_by_group_topic={("analytics", "orders.events"): GroupLag(None, GroupStatus.STOPPED)})
    analytics = edge(graph, "topic:orders.events", "service:analytics", "analytics")
    assert analytics.lag is None
    assert analytics.health == Health.CRITICAL


def test_a_node_takes_the_worst_health_of_its_edges():
    graph = order_saga_graph(tolerances=Tolerances(failed_share_critical=0.04))
    assert graph.nodes["service:orders"].health == Health.CRITICAL
    assert graph.nodes["service:analytics"].health == Health.OK
    assert graph.nodes["service:orders"].failed == 40


def test_tolerances_come_from_url_parameters_and_bad_ones_name_the_parameter():
    tolerances = Tolerances.from_params({"failed_warn": "0.02", "lag_crit": "50000"})
    assert (tolerances.failed_share_warning, tolerances.lag_critical) == (0.02, 50_000)
    with pytest.raises(InputError) as error:
        Tolerances.from_params({"p95_warn": "soon"})
    assert error.value.field == "p95_warn"
    with pytest.raises(InputError) as error:
        Tolerances.from_params({"lag_warn": "500", "lag_crit": "100"})
    assert error.value.field == "lag_crit"


def test_tolerances_from_settings_reject_unknown_keys():
    assert Tolerances.from_mapping({"lag_warning": 10}).lag_warning == 10
    with pytest.raises(InputError):
        Tolerances.from_mapping({"lag_warn_typo": 10})


def test_focus_keeps_the_service_its_topics_and_the_services_beyond():
    publishes = [PublishAggregate("a", "t1", 1), PublishAggregate("b", "t2", 1), PublishAggregate("c", "t3", 1)]
    consumes = [ConsumeAggregate("t1", "b", "gb", 1), ConsumeAggregate("t2", "c", "gc", 1),
                ConsumeAggregate("t3", "d", "gd", 1)]
    graph = build_flow_graph(publishes, consumes, 1.0)
    around_b = focus(graph, "b")
    assert set(around_b.nodes) == {"service:a", "topic:t1", "service:b", "topic:t2", "service:c"}
    assert len(around_b.edges) == 4
    assert "service:d" in focus(graph, "b", depth=2).nodes
    assert focus(graph, "nobody").nodes == {}


def test_a_consumer_group_leads_to_the_services_consuming_as_it():
    consumes = [ConsumeAggregate("t1", "billing-1", "billing", 1), ConsumeAggregate("t1", "billing-2", "billing", 1),
                ConsumeAggregate("t1", "audit", "audit", 1)]
    graph = build_flow_graph([PublishAggregate("a", "t1", 1)], consumes, 1.0)
    services = consumers_of_group(graph, "billing")
    assert services == ["billing-1", "billing-2"]
    assert set(focus(graph, services).nodes) == {"service:a", "topic:t1", "service:billing-1", "service:billing-2",
                                                 "service:audit"}
    assert consumers_of_group(graph, "nobody") == []


def test_hubs_are_services_touching_many_topics_and_can_be_hidden():
    publishes = [PublishAggregate(f"svc{i}", f"t{i}", 10) for i in range(10)]
    consumes = [ConsumeAggregate(f"t{i}", "audit", "audit", 10) for i in range(10)]
    consumes += [ConsumeAggregate("t0", "billing", "billing", 10)]
    graph = build_flow_graph(publishes, consumes, 1.0)
    assert find_hubs(graph) == {node_id("service", "audit")}
    hidden = hide(graph, find_hubs(graph))
    assert "service:audit" not in hidden.nodes
    assert all("service:audit" not in (e.source, e.target) for e in hidden.edges)
    assert "topic:t0" in hidden.nodes  # still read by billing


def test_one_hot_partition_is_flagged():
    skew = partition_skew({0: 10, 1: 12, 2: 90, 3: 8})
    assert skew.hot_partition == 2
    assert skew.max_over_mean == pytest.approx(90 / 30)
    assert partition_skew({0: 10, 1: 11, 2: 9}).hot_partition is None
    assert partition_skew({0: 5}).hot_partition is None


def test_a_key_carrying_a_quarter_of_the_traffic_is_hot():
    keys = hot_keys([("order-1", 60), ("order-2", 5)], total=100)
    assert [(k.key, k.hot) for k in keys] == [("order-1", True), ("order-2", False)]
    assert keys[0].share == pytest.approx(0.6)


def many_services_graph(count: int = 40):
    """One topic published by ``count`` producers; producer n publishes n+1 events."""
    publishes = [PublishAggregate(f"svc{n:02d}", "orders.events", n + 1, failed=1 if n == 0 else 0)
                 for n in range(count)]
    consumes = [ConsumeAggregate("orders.events", "billing", "billing-svc", consumed=5000, processed=5000)]
    return build_flow_graph(publishes, consumes, span_seconds=10.0)


def test_folding_keeps_the_busiest_nodes_and_sums_the_rest_into_others():
    graph = many_services_graph()
    folded = fold_to_top(graph, top=5)
    others = folded.nodes[others_id("service")]
    kept = {n.name for n in folded.nodes.values() if not n.folded}
    assert kept == {"orders.events", "billing", "svc39", "svc38", "svc37"}
    assert others.folded == 37 and others.name == "37 other services"
    into_topic = [e for e in folded.edges if e.source == others.id]
    assert len(into_topic) == 1  # 37 publish edges merged into one
    assert into_topic[0].events == sum(range(1, 38)) and into_topic[0].failed == 1
    assert others.events_out == into_topic[0].events
    # No traffic is lost: the topic receives what it received before.
    assert sum(e.events for e in folded.edges if e.target == node_id("topic", "orders.events")) == \
        sum(e.events for e in graph.edges if e.target == node_id("topic", "orders.events"))


def test_a_graph_within_the_limit_is_not_folded_and_names_never_collide_with_others():
    graph = many_services_graph(3)
    assert fold_to_top(graph, top=10) is graph
    assert others_id("service") not in {node_id("service", name) for name in ("others", "others:service")}
