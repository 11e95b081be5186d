"""Chart builders are pure: plain data in, a Plotly figure dict or an SVG path out."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from dashboards.charts import ChartEvent, lag_figure, plot_time, sparkline_path
from monitor.choices import GroupEventKind, SeriesMetric

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=dt_timezone.utc)
SINCE, UNTIL = T0 - timedelta(hours=1), T0 + timedelta(minutes=5)


@dataclass(frozen=True)
class Series:
    name: str
    points: list


def test_one_line_per_series_with_utc_times_and_unknown_values_as_gaps():
    figure = lag_figure([Series("orders", [(T0, 5), (T0 + timedelta(seconds=30), None), (T0 + timedelta(minutes=1), 7)])],
                        SeriesMetric.LAG, SINCE, UNTIL)
    [trace] = figure["data"]
    assert trace["name"] == "orders"
    assert trace["x"] == ["2024-05-01 12:00:00.000", "2024-05-01 12:00:30.000", "2024-05-01 12:01:00.000"]
    assert trace["y"] == [5, None, 7]
    assert trace["connectgaps"] is False
    assert trace["customdata"] == ["5 messages", "unknown", "7 messages"]
    # Fitted to the data, and the same from refresh to refresh so a drag-zoom survives it.
    assert figure["layout"]["xaxis"]["autorange"] is True and "range" not in figure["layout"]["xaxis"]
    assert figure["layout"]["uirevision"] == "lag::lag"
    assert "%{x|%Y-%m-%d %H:%M:%S} UTC" in trace["hovertemplate"]
    assert figure["layout"]["yaxis"]["title"]["text"] == "messages behind"
    json.dumps(figure)  # the browser gets it as JSON


def test_plot_time_converts_to_utc_wall_time():
    berlin = dt_timezone(timedelta(hours=2))
    assert plot_time(datetime(2024, 5, 1, 14, 0, 1, 500000, tzinfo=berlin)) == "2024-05-01 12:00:01.500"


def test_seconds_metric_titles_the_axis_and_hovers_human_durations():
    figure = lag_figure([Series("orders", [(T0, 200.0)])], SeriesMetric.TIME_LAG_SECONDS, SINCE, UNTIL)
    assert figure["layout"]["yaxis"]["title"]["text"] == "seconds behind"
    assert figure["data"][0]["customdata"] == ["3 min 20 s"]


def test_lifecycle_events_of_the_topic_and_the_whole_group_are_marked():
    events = [
        ChartEvent(at=T0, kind=GroupEventKind.OFFSET_RESET, label="Offset reset", detail="to earliest", topic="orders"),
        ChartEvent(at=T0 + timedelta(minutes=1), kind=GroupEventKind.GROUP_CREATED, label="Group appeared"),
        ChartEvent(at=T0 + timedelta(minutes=2), kind=GroupEventKind.DATA_LOSS, label="Lost data", topic="payments"),
    ]
    figure = lag_figure([Series("orders", [(T0, 1)])], SeriesMetric.LAG, SINCE, UNTIL, events=events, topic="orders")

    shapes = figure["layout"]["shapes"]
    assert [s["x0"] for s in shapes] == ["2024-05-01 12:00:00.000", "2024-05-01 12:01:00.000"]
    assert all(s["yref"] == "paper" and s["type"] == "line" for s in shapes)
    markers = figure["data"][-1]
    assert markers["name"] == "events, alerts, findings"
    assert markers["text"] == ["Offset reset: to earliest", "Group appeared"]
    assert markers["yaxis"] == "y2"


def test_without_events_there_are_no_markers():
    figure = lag_figure([Series("orders", [(T0, 1)])], SeriesMetric.LAG, SINCE, UNTIL)
    assert [t["name"] for t in figure["data"]] == ["orders"]
    assert figure["layout"]["shapes"] == []


def test_partition_breakdown_adds_thin_dotted_lines_after_the_topic_line():
    figure = lag_figure([Series("orders", [(T0, 3)])], SeriesMetric.LAG, SINCE, UNTIL,
                        breakdown=[Series("partition 0", [(T0, 1)]), Series("partition 1", [(T0, 2)])])
    assert [(t["name"], t["line"]["dash"]) for t in figure["data"]] == [
        ("orders", "solid"), ("partition 0", "dot"), ("partition 1", "dot")]


def test_an_empty_range_says_so_on_the_chart():
    figure = lag_figure([], SeriesMetric.LAG, SINCE, UNTIL)
    assert figure["layout"]["annotations"][0]["text"] == "No samples in this range"
    assert figure["layout"]["xaxis"]["range"] == ["2024-05-01 11:00:00.000", "2024-05-01 12:05:00.000"]
    assert "annotations" not in lag_figure([Series("o", [(T0, 0)])], SeriesMetric.LAG, SINCE, UNTIL)["layout"]


def test_sparkline_scales_to_the_box_with_zero_at_the_bottom():
    assert sparkline_path([0, 11, 22], width=100, height=24) == "M0.0,23.0L50.0,12.0L100.0,1.0"


def test_sparkline_breaks_the_line_at_unknown_values():
    assert sparkline_path([1, None, 1, 1], width=30, height=10) == "M0.0,1.0M20.0,1.0L30.0,1.0"


def test_sparkline_of_flat_zero_lag_lies_on_the_bottom():
    assert sparkline_path([0, 0], width=10, height=10) == "M0.0,9.0L10.0,9.0"


def test_sparkline_needs_two_known_values():
    assert sparkline_path([]) == ""
    assert sparkline_path([5]) == ""
    assert sparkline_path([None, 5, None]) == ""


def test_sparklines_share_a_floor_so_a_tiny_lag_draws_flat_and_grey():
    from dashboards.charts import sparkline

    tiny = sparkline([0, 1, 0, 1], floor=100, width=100, height=24)
    assert tiny.quiet and tiny.peak == 1
    assert all(float(point.split(",")[1]) > 22 for point in tiny.path[1:].replace("L", "M").split("M"))
    spike = sparkline([0, 386, 10], floor=100, width=100, height=24)
    assert not spike.quiet and spike.peak == 386 and spike.path == "M0.0,23.0L50.0,1.0L100.0,22.4"
    assert sparkline([None, None], floor=100) == sparkline([None, None], floor=100)
    assert sparkline([None, None], floor=100).path == ""
