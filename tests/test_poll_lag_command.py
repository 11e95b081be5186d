"""`poll_lag [--cluster NAME] --once`: one line per cluster; exit 0 even when a cluster
is unreachable, exit 2 on bad arguments."""
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from monitor.choices import ClusterStatus
from monitor.kafka.adapter import commit_offsets, create_topics
from monitor.models import Cluster, PollRun
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<name>\S+): ok, (?P<groups>\d+) groups, (?P<partitions>\d+) partitions, "
                  r"(?P<requests>\d+) requests, \d+\.\d\d s$")


def poll_lag(*args: str) -> str:
    out = StringIO()
    call_command("poll_lag", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_one_line_per_cluster_with_groups_partitions_requests_and_seconds(cluster, kafka_settings, unique):
    topic, group = unique("orders"), unique("lagcmd")
    create_topics(kafka_settings, {topic: 4})
    commit_offsets(kafka_settings, group, {(topic, 0): 0})
    cluster.group_include = group
    cluster.save()

    output = poll_lag("--cluster", cluster.name, "--once")

    match = LINE.match(output.strip())
    assert match, output
    assert (match["name"], match["groups"], match["partitions"]) == (cluster.name, "1", "4")
    assert int(match["requests"]) == PollRun.objects.get(cluster=cluster).requests


def test_every_enabled_cluster_is_polled_and_an_unreachable_one_does_not_stop_the_others(
        cluster, settings):
    settings.MONITOR_KAFKA_TIMEOUT_SECONDS = 2
    cluster.group_include = "none-such-group"
    cluster.save()
    down = Cluster.objects.create(name="aaa-down", bootstrap_servers=f"127.0.0.1:{free_port()}")
    Cluster.objects.create(name="zzz-disabled", bootstrap_servers="127.0.0.1:1", enabled=False)

    lines = poll_lag("--once").strip().splitlines()

    assert len(lines) == 2
    assert lines[0].startswith("aaa-down: unreachable (cannot reach")
    assert LINE.match(lines[1]) and lines[1].startswith(f"{cluster.name}: ok, 0 groups")
    down.refresh_from_db()
    assert down.status == ClusterStatus.UNREACHABLE


def test_unknown_cluster_name_exits_2(db):
    with pytest.raises(CommandError, match="no cluster named 'nope'") as error:
        poll_lag("--cluster", "nope", "--once")
    assert error.value.returncode == 2


def test_without_once_exits_2(db):
    with pytest.raises(CommandError, match="--once") as error:
        poll_lag()
    assert error.value.returncode == 2


def run_manage(*args: str) -> subprocess.CompletedProcess:
    database = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "MONITOR_KAFKA_TIMEOUT_SECONDS": "2",
    }
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.django_db(transaction=True)
def test_exit_codes_from_the_command_line():
    Cluster.objects.create(name="offline", bootstrap_servers=f"127.0.0.1:{free_port()}")

    unreachable = run_manage("poll_lag", "--cluster", "offline", "--once")
    unknown = run_manage("poll_lag", "--cluster", "nope", "--once")
    no_once = run_manage("poll_lag")
    bad_option = run_manage("poll_lag", "--once", "--bogus")

    assert unreachable.returncode == 0, unreachable.stderr
    assert unreachable.stdout.startswith("offline: unreachable (")
    assert (unknown.returncode, no_once.returncode, bad_option.returncode) == (2, 2, 2)
    assert "no cluster named 'nope'" in unknown.stderr
