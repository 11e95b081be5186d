"""The layered layout: flow runs left to right, few crossings, the same picture every time."""
import random

from dashboards.flow_layout import break_cycles, count_crossings, layered_layout


def chain_graph():
    nodes = ["service:orders", "topic:orders", "service:payments", "topic:payments", "service:shipping"]
    edges = [("service:orders", "topic:orders"), ("topic:orders", "service:payments"),
             ("service:payments", "topic:payments"), ("topic:payments", "service:shipping")]
    return nodes, edges


def test_every_edge_points_left_to_right_along_the_flow():
    nodes, edges = chain_graph()
    layout = layered_layout(nodes, edges)
    assert [layout.positions[n][0] for n in nodes] == [0, 1, 2, 3, 4]
    for source, target in edges:
        assert layout.positions[source][0] < layout.positions[target][0]


def test_a_lone_producer_sits_next_to_its_topic_not_at_the_far_left():
    nodes, edges = chain_graph()
    nodes.append("service:late-producer")
    edges.append(("service:late-producer", "topic:payments"))
    layout = layered_layout(nodes, edges)
    assert layout.positions["service:late-producer"][0] == layout.positions["topic:payments"][0] - 1


def test_cycles_are_broken_and_the_reversed_edge_is_reported():
    nodes = ["service:a", "topic:x", "service:b", "topic:y"]
    edges = [("service:a", "topic:x"), ("topic:x", "service:b"), ("service:b", "topic:y"), ("topic:y", "service:a")]
    acyclic, reversed_edges = break_cycles(nodes, edges)
    assert reversed_edges == {("topic:y", "service:a")}
    layout = layered_layout(nodes, edges)
    assert layout.reversed_edges == frozenset({("topic:y", "service:a")})
    points = layout.edge_points[("topic:y", "service:a")]
    assert points[0] == layout.positions["topic:y"] and points[-1] == layout.positions["service:a"]


def test_long_edges_bend_through_the_layers_they_cross():
    nodes, edges = chain_graph()
    edges.append(("service:orders", "topic:payments"))  # spans layers 0 -> 3
    layout = layered_layout(nodes, edges)
    points = layout.edge_points[("service:orders", "topic:payments")]
    assert [x for x, _ in points] == [0, 1, 2, 3]


def test_crossings_are_counted_between_adjacent_layers():
    assert count_crossings(["a", "b"], ["c", "d"], [("a", "d"), ("b", "c")]) == 1
    assert count_crossings(["a", "b"], ["c", "d"], [("a", "c"), ("b", "d")]) == 0
    assert count_crossings(["a", "b", "c"], ["x", "y", "z"], [("a", "z"), ("b", "y"), ("c", "x")]) == 3


def test_barycentric_ordering_untangles_a_crossed_graph():
    # input order puts producers and their topics in opposite orders: every edge crosses
    producers = [f"service:p{i}" for i in range(6)]
    topics = [f"topic:t{i}" for i in reversed(range(6))]
    consumers = [f"service:c{i}" for i in range(6)]
    edges = [(f"service:p{i}", f"topic:t{i}") for i in range(6)] + [(f"topic:t{i}", f"service:c{i}") for i in range(6)]
    layout = layered_layout(producers + topics + consumers, edges)
    assert count_crossings(producers, topics, edges) == 15
    assert layout.crossings == 0


def test_layout_of_thirty_services_is_readable_and_deterministic():
    rng = random.Random(7)
    services = [f"service:s{i:02d}" for i in range(32)]
    topics = [f"topic:t{i:02d}" for i in range(40)]
    edges = []
    for index, topic in enumerate(topics):
        producer = services[min(index * 32 // 40, 31)]
        edges.append((producer, topic))
        for consumer in rng.sample([s for s in services if s != producer], k=2):
            edges.append((topic, consumer))
    nodes = services + topics
    first = layered_layout(nodes, edges)
    second = layered_layout(list(nodes), list(edges))
    assert first == second
    assert len(set(first.positions.values())) == len(nodes)  # no two nodes on one spot
    assert max(len(layer) for layer in first.layers) <= len(nodes) // 2
    initial = layered_layout(nodes, edges, sweeps=0, refine=False)
    assert first.crossings < initial.crossings


def test_isolated_nodes_and_duplicate_edges_are_harmless():
    layout = layered_layout(["service:a", "service:lonely", "topic:t"],
                            [("service:a", "topic:t"), ("service:a", "topic:t"), ("service:a", "service:a")])
    assert layout.positions["service:lonely"][0] == 0
    assert list(layout.edge_points) == [("service:a", "topic:t")]
