"""Schema Registry findings, pure: plain data in, per-subject values out.

* unknown schema ids: ids the header tap read on a topic that no subject of the
  cluster's registry has (a producer using another registry, a deleted schema, garbage);
* compatibility NONE: subjects whose effective level is NONE (any change is accepted,
  so consumers can break on the next registration);
* newest version not processed: the newest registered version of a topic's value subject
  is being published, and a group that handles the topic reported only older versions.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LaggingGroup:
    group: str
    topic: str
    newest: int
    processed: int | None


def unknown_ids(seen: Iterable[tuple[str, int]], known_ids: set[int]) -> dict[str, list[int]]:
    """Per topic, the schema ids seen there that the registry does not know."""
    found: dict[str, list[int]] = {}
    for topic, schema_id in seen:
        if schema_id not in known_ids:
            found.setdefault(topic, []).append(schema_id)
    return {topic: sorted(ids) for topic, ids in found.items()}


def groups_behind_newest(newest: Mapping[str, int], published: Mapping[str, set[int]],
                         processed: Mapping[tuple[str, str], set[int]]) -> list[LaggingGroup]:
    """``newest``: topic -> newest registered version; ``published``: topic -> versions
    published in the window; ``processed``: (group, topic) -> versions it reported
    handling. A group is behind when the newest version is published and it reported
    versions, none of them the newest or later."""
    behind = []
    for (group, topic), versions in sorted(processed.items()):
        top = newest.get(topic)
        if top is None or top not in published.get(topic, set()) or not versions:
            continue
        if max(versions) < top:
            behind.append(LaggingGroup(group=group, topic=topic, newest=top, processed=max(versions)))
    return behind
