"""Which consumer groups a cluster watches: its include and exclude globs."""
import fnmatch

from monitor.models import Cluster

NAMES = ["orders", "orders-eu", "orders-tmp-1", "payments", "pay1", "payx", "Orders", "a.b", "x[1]", "", "line\nbreak",
         "é-group"]


def test_the_compiled_filter_answers_as_fnmatchcase_for_every_pattern_shape():
    for include, exclude in (("", ""), ("orders*", ""), ("orders*, pay?", "*-tmp-*"), ("pay[!x]\nx[[]1]", ""),
                             ("*", "orders*,\n*"), ("a.b", ""), ("*group", "")):
        cluster = Cluster(name="c", bootstrap_servers="127.0.0.1:9", group_include=include, group_exclude=exclude)
        watches = cluster.group_filter()
        includes = [p.strip() for p in include.replace("\n", ",").split(",") if p.strip()] or ["*"]
        excludes = [p.strip() for p in exclude.replace("\n", ",").split(",") if p.strip()]
        for name in NAMES:
            expected = any(fnmatch.fnmatchcase(name, p) for p in includes) and not any(
                fnmatch.fnmatchcase(name, p) for p in excludes)
            assert watches(name) is expected, (include, exclude, name)
            assert cluster.watches_group(name) is expected


def test_matching_is_case_sensitive_and_whole_name():
    watches = Cluster(name="c", bootstrap_servers="127.0.0.1:9", group_include="orders").group_filter()
    assert watches("orders")
    assert not watches("Orders")
    assert not watches("orders-eu")
    assert not watches("my-orders")
