"""`add_cluster`: creates or updates a cluster, idempotently; bad arguments exit 2."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from monitor.lag.clusters import ensure_bootstrap_clusters
from monitor.models import Cluster


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("add_cluster", *args, stdout=out)
    return out.getvalue().strip()


def test_add_cluster_creates_the_cluster(db):
    output = run("prod", "--bootstrap", "kafka-1:9092,kafka-2:9092", "--poll-interval", "15")

    cluster = Cluster.objects.get(name="prod")
    assert cluster.bootstrap_list == ["kafka-1:9092", "kafka-2:9092"]
    assert cluster.poll_interval_seconds == 15
    assert output == "created cluster prod: kafka-1:9092,kafka-2:9092, poll every 15 s"


def test_add_cluster_again_is_idempotent_and_an_update_changes_only_what_is_given(db):
    run("prod", "--bootstrap", "kafka-1:9092", "--poll-interval", "15")

    assert run("prod", "--bootstrap", "kafka-1:9092") == "unchanged cluster prod: kafka-1:9092, poll every 15 s"
    assert run("prod", "--bootstrap", "kafka-9:9092") == (
        "updated cluster prod: kafka-9:9092, poll every 15 s (changed: bootstrap_servers)")
    assert Cluster.objects.count() == 1


@pytest.mark.parametrize("args, field", [
    (("prod", "--bootstrap", "kafka-1"), "bootstrap_servers"),
    (("prod", "--bootstrap", "kafka-1:99999"), "bootstrap_servers"),
    (("prod", "--bootstrap", ""), "bootstrap_servers"),
    (("prod", "--bootstrap", "kafka:9092", "--poll-interval", "1"), "poll_interval_seconds"),
    (("prod cluster", "--bootstrap", "kafka:9092"), "name"),
])
def test_bad_arguments_exit_2_naming_the_field_and_write_nothing(db, args, field):
    with pytest.raises(CommandError) as error:
        run(*args)

    assert error.value.returncode == 2
    assert field in str(error.value)
    assert not Cluster.objects.exists()


def test_invalid_update_leaves_the_cluster_as_it_was(db):
    run("prod", "--bootstrap", "kafka-1:9092")

    with pytest.raises(CommandError):
        run("prod", "--bootstrap", "not-a-host-port")

    assert Cluster.objects.get(name="prod").bootstrap_servers == "kafka-1:9092"


def test_missing_bootstrap_is_an_argument_error(db):
    with pytest.raises(CommandError, match="--bootstrap"):
        run("prod")


def test_bootstrap_clusters_from_the_environment_are_created_and_kept_in_step(db, settings):
    settings.MONITOR_BOOTSTRAP_CLUSTERS = {"prod": ["kafka-1:9092"], "staging": ["stg:9092", "stg2:9092"]}

    ensure_bootstrap_clusters()
    Cluster.objects.filter(name="prod").update(poll_interval_seconds=60)
    settings.MONITOR_BOOTSTRAP_CLUSTERS = {"prod": ["kafka-2:9092"]}
    changes = ensure_bootstrap_clusters()

    assert [c.action for c in changes] == ["updated"]
    prod = Cluster.objects.get(name="prod")
    assert (prod.bootstrap_servers, prod.poll_interval_seconds) == ("kafka-2:9092", 60)
    assert Cluster.objects.get(name="staging").bootstrap_list == ["stg:9092", "stg2:9092"]
