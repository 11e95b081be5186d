"""A fixed log-scale latency histogram: mergeable by adding counts, so percentiles over
any range are exact functions of per-minute counts (never an average of percentiles).

Bucket ``i`` holds latencies in ``[BASE ** (i - 1), BASE ** i)`` milliseconds (bucket 0:
below 1 ms). A percentile is reported as the bucket's geometric middle, within about
±5 % of the true value.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

BASE = 1.1
LAST_BUCKET = 300  # 1.1 ** 300 ms is about 87 years: nothing is larger


def bucket_of(seconds: float) -> int:
    """The bucket index of a latency (negative latencies, clock skew, count as 0)."""
    milliseconds = seconds * 1000.0
    if not math.isfinite(milliseconds) or milliseconds < 1.0:
        return 0
    return min(LAST_BUCKET, int(math.floor(math.log(milliseconds, BASE))) + 1)


def bucket_value(index: int) -> float:
    """The representative latency (seconds) of a bucket: its geometric middle."""
    if index <= 0:
        return 0.0
    low, high = BASE ** (index - 1), BASE ** index
    return math.sqrt(low * high) / 1000.0


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[index] = merged.get(index, 0) + count
    return merged


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The latency below which ``fraction`` of the counted traces fall; None when empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_value(index)
    return bucket_value(max(histogram))
