"""Figures as data: the flow graph and the trace timeline, checked without a browser."""
from datetime import UTC, datetime, timedelta

from dashboards.flow_charts import DARK, LIGHT, flow_figure, rate_figure, timeline_figure
from dashboards.flow_layout import layered_layout
from monitor.flow.graph import ConsumeAggregate, PublishAggregate, Tolerances, build_flow_graph
from monitor.events.timeline import TraceEvent, build_timeline, causal_order

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def small_graph():
    graph = build_flow_graph(
        [PublishAggregate("orders", "orders.events", 100)],
        [ConsumeAggregate("orders.events", "payments", "payments", consumed=100, processed=80, failed=20),
         ConsumeAggregate("orders.events", "<b>evil</b>", "audit", consumed=100, processed=100)],
        span_seconds=60, tolerances=Tolerances(),
    )
    layout = layered_layout(list(graph.nodes), [(e.source, e.target) for e in graph.edges])
    return graph, layout


def figure_of(graph, layout, theme=LIGHT):
    return flow_figure(graph, layout, node_url=lambda n: f"/node/{n.name}", edge_url=lambda e: f"/edge/{e.service}",
                       theme=theme)


def traces_by_part(figure, part):
    return [t for t in figure["data"] if t["meta"]["part"] == part]


def test_every_node_is_drawn_once_with_a_link_to_its_page():
    graph, layout = small_graph()
    nodes = traces_by_part(figure_of(graph, layout), "node")
    links = sorted(url for trace in nodes for url in trace["customdata"])
    assert links == sorted(f"/node/{n.name}" for n in graph.nodes.values())


def test_edges_are_coloured_by_health_and_their_arrows_link_to_example_traces():
    graph, layout = small_graph()
    figure = figure_of(graph, layout)
    arrows = traces_by_part(figure, "edge-arrow")
    by_role = {t["meta"]["role"]: t for t in arrows}
    assert by_role["critical"]["customdata"] == ["/edge/payments"]  # 20 % failed
    assert by_role["critical"]["marker"]["color"] == LIGHT["critical"]
    assert sum(len(t["x"]) for t in arrows) == len(graph.edges)
    hover = by_role["critical"]["hovertext"][0]
    assert "failed: 20 (20.0%)" in hover and "group: payments" in hover
    lines = traces_by_part(figure, "edge")
    assert {t["meta"]["role"] for t in lines} == {"ok", "critical"}


def test_names_are_escaped_in_labels_and_hover_text():
    graph, layout = small_graph()
    figure = figure_of(graph, layout)
    text = " ".join(str(t.get("text", "")) + str(t.get("hovertext", "")) for t in figure["data"])
    assert "<b>evil</b>" not in text
    assert "&lt;b&gt;evil&lt;/b&gt;" in text


def test_the_dark_theme_changes_the_palette_not_the_structure():
    graph, layout = small_graph()
    light, dark = figure_of(graph, layout), figure_of(graph, layout, DARK)
    assert len(light["data"]) == len(dark["data"])
    assert dark["layout"]["paper_bgcolor"] == DARK["bg"] != light["layout"]["paper_bgcolor"]
    assert light["layout"]["meta"]["roles"]["paper_bgcolor"] == "bg"


def test_a_tall_layer_makes_a_taller_chart():
    graph, layout = small_graph()
    wide = build_flow_graph([PublishAggregate(f"s{i}", "t", 1) for i in range(20)], [], 1.0)
    wide_layout = layered_layout(list(wide.nodes), [(e.source, e.target) for e in wide.edges])
    assert figure_of(wide, wide_layout)["layout"]["height"] > figure_of(graph, layout)["layout"]["height"]


def report(pk, event_id, stage, service, seconds, group=""):
    return TraceEvent(pk=pk, event_id=event_id, type="OrderPlaced", service=service, stage=stage,
                      timestamp=T0 + timedelta(seconds=seconds), topic="orders", consumer_group=group)


def test_the_timeline_draws_bars_for_durations_and_marks_for_instants():
    timeline = build_timeline(causal_order([
        report(1, "e1", "published", "orders", 0), report(2, "e1", "consumed", "payments", 2, "payments"),
        report(3, "e1", "failed", "payments", 2.5, "payments"),
        report(4, "e1", "dead_lettered", "payments", 2.6, "payments"),
    ]))
    figure = timeline_figure(timeline)
    bars = {t["meta"]["kind"]: t for t in figure["data"] if t["type"] == "bar"}
    marks = {t["meta"]["kind"]: t for t in figure["data"] if t["type"] == "scatter"}
    assert set(bars) == {"queue_wait", "failed"}
    assert set(marks) == {"publish", "dead_lettered"}
    assert bars["queue_wait"]["base"] == [0.0] and bars["queue_wait"]["x"] == [2.0]
    assert bars["queue_wait"]["marker"]["line"]["width"] == [3]  # the slowest step is outlined
    assert figure["layout"]["annotations"][0]["text"] == "slowest: 2.0 s"
    assert figure["layout"]["yaxis"]["categoryarray"] == ["orders", "payments (payments)"]


def test_the_rate_chart_has_one_line_per_stage_and_zeros_for_quiet_buckets():
    series = {"published": [(T0, 5), (T0 + timedelta(minutes=2), 7)], "failed": [(T0, 1)]}
    figure = rate_figure(series, T0, T0 + timedelta(minutes=4), bucket_seconds=60)
    assert [t["name"] for t in figure["data"]] == ["Published", "Failed"]
    published = figure["data"][0]
    assert published["x"][0] == "2024-05-01T12:00:00Z"
    assert published["y"] == [5, 0, 7, 0]
    assert figure["layout"]["xaxis"]["range"] == ["2024-05-01T12:00:00Z", "2024-05-01T12:04:00Z"]


def test_the_whole_length_of_an_edge_hovers_and_clicks_and_back_edges_are_dotted():
    graph, layout = small_graph()
    figure = figure_of(graph, layout)
    [hit] = traces_by_part(figure, "edge-hit")
    assert hit["marker"]["opacity"] == 0 and len(hit["x"]) >= 3 * len(graph.edges)
    assert set(hit["customdata"]) == {"/edge/payments", *[u for t in traces_by_part(figure, "edge-arrow")
                                                          for u in t["customdata"]]}
    # Every hit point names its edge's path, which flow.js draws over the rest on hover.
    assert len(hit["meta"]["paths"]) == len(graph.edges) and max(hit["meta"]["edge"]) == len(graph.edges) - 1
    [highlight] = traces_by_part(figure, "edge-highlight")
    assert highlight["x"] == []
    for line in traces_by_part(figure, "edge"):
        assert line["line"]["dash"] == ("dot" if line["meta"]["back"] else "solid")


def test_arrows_of_crossing_edges_sit_at_different_points_along_them():
    from dashboards.flow_charts import _point_at

    assert _point_at([(0, 0), (2, 0)], 0.5) == (1, 0)
    assert _point_at([(0, 0), (1, 0), (1, 1)], 0.75) == (1, 0.5)


def test_hover_points_per_edge_are_bounded_so_a_large_graph_stays_small():
    import json
    from collections import Counter

    from dashboards.flow_charts import HIT_MAX

    publishes = [PublishAggregate(f"producer-{i}", f"topic-{i}", 100) for i in range(12)]
    consumes = [ConsumeAggregate(f"topic-{i % 12}", f"group-{i}", f"service-{i}", consumed=100, processed=100)
                for i in range(110)]
    graph = build_flow_graph(publishes, consumes, span_seconds=60, tolerances=Tolerances())
    layout = layered_layout(list(graph.nodes), [(e.source, e.target) for e in graph.edges])
    figure = figure_of(graph, layout)
    [hit] = traces_by_part(figure, "edge-hit")
    per_edge = Counter(hit["meta"]["edge"])
    assert len(per_edge) == len(graph.edges) >= 120
    assert max(per_edge.values()) <= HIT_MAX and min(per_edge.values()) >= 3
    # The whole figure grows in proportion to its edges, not to their drawn length.
    assert len(json.dumps(figure, default=str)) < 4000 * len(graph.edges)
