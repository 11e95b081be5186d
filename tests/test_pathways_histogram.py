"""The latency histogram merges exactly: percentiles of merged counts equal the
percentiles of one histogram of all values, and stay within a bucket of the truth."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.pathways import histogram

latencies = st.lists(st.floats(min_value=0, max_value=86_400, allow_nan=False), min_size=1, max_size=300)


def counts(values):
    result = {}
    for value in values:
        bucket = histogram.bucket_of(value)
        result[bucket] = result.get(bucket, 0) + 1
    return result


@settings(max_examples=200, deadline=None)
@given(latencies, latencies)
def test_merging_minute_histograms_equals_one_histogram_of_everything(first, second):
    merged = histogram.merge([counts(first), counts(second)])
    assert merged == counts(first + second)
    for fraction in (0.5, 0.95, 0.99):
        assert histogram.percentile(merged, fraction) == histogram.percentile(counts(first + second), fraction)


@settings(max_examples=200, deadline=None)
@given(latencies, st.sampled_from([0.5, 0.95, 0.99]))
def test_a_percentile_is_within_one_bucket_of_the_exact_one(values, fraction):
    exact = sorted(values)[max(0, math.ceil(fraction * len(values)) - 1)]
    estimate = histogram.percentile(counts(values), fraction)
    if exact < 0.001:
        assert estimate == 0.0
    else:
        assert exact / histogram.BASE <= estimate <= exact * histogram.BASE


def test_an_empty_histogram_has_no_percentile_rather_than_zero():
    assert histogram.percentile({}, 0.95) is None


def test_negative_or_infinite_latencies_do_not_break_the_buckets():
    assert histogram.bucket_of(-5) == 0
    assert histogram.bucket_of(float("inf")) == 0
    assert histogram.bucket_of(10 ** 12) == histogram.LAST_BUCKET
