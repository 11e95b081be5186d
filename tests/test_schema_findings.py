"""The Schema Registry findings as pure rules."""
from monitor.schemas import findings


def test_unknown_ids_are_those_no_subject_has():
    assert findings.unknown_ids([("orders", 11), ("orders", 99), ("refunds", 7)], {11, 7}) == {"orders": [99]}


def test_a_group_is_behind_only_while_the_newest_version_is_published_and_it_reported_older_ones():
    newest = {"orders": 3}
    processed = {("billing", "orders"): {1, 2}, ("audit", "orders"): {3}, ("quiet", "orders"): set()}
    behind = findings.groups_behind_newest(newest, {"orders": {2, 3}}, processed)
    assert [(b.group, b.newest, b.processed) for b in behind] == [("billing", 3, 2)]
    assert findings.groups_behind_newest(newest, {"orders": {2}}, processed) == []  # v3 not published yet
