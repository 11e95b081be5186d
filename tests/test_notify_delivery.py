"""The outbox end to end: evaluation writes notifications, delivery claims, sends to a real
local HTTP server standing in for Slack (200, 500, 429 with Retry-After, 404 by turns) or
a real SMTP server, records attempts, retries with back-off, and the sweep recovers."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitor.alerts.engine import evaluate
from monitor.choices import ChannelKind, ClusterStatus, NotificationKind
from monitor.models import AlertRule, Channel, DeliveryAttempt, Notification, Silence
from monitor.notify.delivery import (
    GIVE_UP_AFTER, Outcome, backoff_seconds, claim, deliver, lease_seconds, sweep_due,
)
from tests.alert_services import Reply
from tests.lag_rows import lag_snapshot
from tests.race import race


@pytest.fixture
def t0():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def slack(db, webhook_server):
    return Channel.objects.create(name="oncall-slack", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())


@pytest.fixture
def incident(cluster, slack, t0):
    """A rule on group billing; ``incident(at, lag)`` stores a poll and evaluates."""
    cluster.status = ClusterStatus.OK
    cluster.save()
    rule = AlertRule.objects.create(name="billing falls behind", cluster=cluster.name, group="billing", metric="lag",
                                    op=">", threshold=1000, for_seconds=0)
    rule.channels.add(slack)

    def poll_and_evaluate(seconds: float, lag: int):
        at = t0 + timedelta(seconds=seconds)
        lag_snapshot(cluster, "billing", at, {"payments": {0: lag}})
        return evaluate(at)

    return poll_and_evaluate


def test_exactly_one_firing_and_one_resolved_message_per_incident(incident, webhook_server, t0):
    for seconds, lag in [(0, 5000), (15, 6000), (30, 7000), (45, 10), (60, 5)]:
        incident(seconds, lag)
        sweep_due(t0 + timedelta(seconds=seconds))
        sweep_due(t0 + timedelta(seconds=seconds))
    texts = webhook_server.texts()
    assert len(texts) == 2
    assert texts[0].startswith("[FIRING] billing falls behind: group billing, topic payments")
    assert "lag is 5,000 messages (threshold > 1,000 messages)" in texts[0]
    assert texts[1].startswith("[RESOLVED] billing falls behind")


def test_no_message_during_a_silence(incident, webhook_server, t0):
    Silence.objects.create(group="billing", starts_at=t0, ends_at=t0 + timedelta(hours=1), reason="maintenance",
                           created_by="ana")
    for seconds, lag in [(0, 5000), (30, 10)]:
        incident(seconds, lag)
        assert sweep_due(t0 + timedelta(seconds=seconds)).total == 0
    assert webhook_server.received == []
    assert Notification.objects.filter(muted=True).count() == 2


def about(actual, expected, tolerance_seconds: float = 2.0) -> bool:
    """Times recorded after a send are later than the claim by the time the send took."""
    return actual is not None and timedelta(0) <= actual - expected <= timedelta(seconds=tolerance_seconds)


def test_delivery_retries_with_back_off_and_arrives_once_slack_is_back(incident, webhook_server, slack, t0):
    webhook_server.script(Reply(500, "oops"), Reply(429, "slow down", {"Retry-After": "40"}), Reply(200, "ok"))
    incident(0, 5000)
    [notification] = Notification.objects.all()

    assert deliver(notification.id, t0).outcome == Outcome.RETRY
    notification.refresh_from_db()
    assert backoff_seconds(1) == 15 and about(notification.due_at, t0 + timedelta(seconds=15))
    assert (notification.attempts, notification.last_status_code, notification.last_error) == (1, 500, "HTTP 500")
    assert sweep_due(t0 + timedelta(seconds=14)).total == 0  # not due yet

    assert deliver(notification.id, t0 + timedelta(seconds=20)).outcome == Outcome.RETRY
    notification.refresh_from_db()
    assert about(notification.due_at, t0 + timedelta(seconds=60))  # Retry-After: 40 honoured
    assert sweep_due(t0 + timedelta(seconds=59)).total == 0

    assert sweep_due(t0 + timedelta(seconds=65)).outcomes == {"sent": 1}
    notification.refresh_from_db()
    assert about(notification.sent_at, t0 + timedelta(seconds=65)) and notification.attempts == 3
    attempts = list(DeliveryAttempt.objects.filter(notification=notification).order_by("at"))
    assert [(a.status_code, a.ok) for a in attempts] == [(500, False), (429, False), (200, True)]
    assert all(a.duration_seconds >= 0 and a.finished_at >= a.at for a in attempts)
    assert len(webhook_server.received) == 3
    slack.refresh_from_db()
    assert not slack.failing


def test_back_off_doubles_up_to_a_cap():
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [15, 30, 60, 120]
    assert backoff_seconds(20) == 900
    assert backoff_seconds(3, retry_after_seconds=5) == 5
    assert backoff_seconds(3, retry_after_seconds=0) == 60


def test_a_permanent_error_stops_retries_and_marks_the_channel_failing(incident, webhook_server, slack, t0):
    webhook_server.script(Reply(404, "no_team"), Reply(200, "ok"))
    incident(0, 5000)
    [notification] = Notification.objects.all()
    result = deliver(notification.id, t0)
    assert result.outcome == Outcome.FAILED and result.channel_broken
    notification.refresh_from_db()
    slack.refresh_from_db()
    assert about(notification.failed_at, t0) and notification.sent_at is None
    assert slack.failing and slack.last_error == "Slack answered HTTP 404: no_team" and about(slack.last_error_at, t0)
    assert sweep_due(t0 + timedelta(hours=1)).total == 0  # never retried

    incident(30, 10)  # the resolved message: the receiver works again and the failing flag clears
    sweep_due(t0 + timedelta(seconds=30))
    slack.refresh_from_db()
    assert not slack.failing


def test_running_the_delivery_task_twice_sends_once(incident, webhook_server, t0):
    from monitor.tasks import deliver_notification

    incident(0, 5000)
    [notification] = Notification.objects.all()
    assert deliver_notification(notification.id) == "sent"
    assert deliver_notification(notification.id) == "skipped"
    assert len(webhook_server.received) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_delivering_the_same_notification_at_once_send_it_once(webhook_server):
    channel = Channel.objects.create(name="race", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    webhook_server.script(Reply(200, "ok", delay_seconds=0.3))
    now = timezone.now()
    notification = Notification.objects.create(channel=channel, kind=NotificationKind.TEST,
                                               payload={"kind": "test", "items": [], "channel": "race"},
                                               created_at=now, due_at=now)
    outcomes = race(lambda: deliver(notification.id).outcome, runners=4)
    assert sorted(o.value for o in outcomes) == ["sent", "skipped", "skipped", "skipped"]
    assert len(webhook_server.received) == 1


def test_a_worker_killed_between_claim_and_send_is_redelivered_by_the_sweep(incident, webhook_server, t0):
    incident(0, 5000)
    [notification] = Notification.objects.all()
    assert claim(notification.id, t0)  # the worker that claimed it died here

    assert sweep_due(t0 + timedelta(seconds=lease_seconds() - 1)).total == 0  # its lease still holds
    assert webhook_server.received == []
    assert sweep_due(t0 + timedelta(seconds=lease_seconds() + 1)).outcomes == {"sent": 1}
    assert len(webhook_server.received) == 1
    assert sweep_due(t0 + timedelta(seconds=3 * lease_seconds())).total == 0


def test_a_resolved_message_never_overtakes_its_firing_message(incident, webhook_server, t0):
    webhook_server.script(Reply(503, "down"), Reply(200, "ok"))
    incident(0, 5000)
    assert sweep_due(t0).outcomes == {"retry": 1}  # firing waits 15 s
    incident(5, 10)  # resolved, created while the firing message waits
    assert sweep_due(t0 + timedelta(seconds=6)).outcomes == {"postponed": 1}  # resolved waits for firing
    sweep_due(t0 + timedelta(seconds=16))
    sweep_due(t0 + timedelta(seconds=18))
    texts = webhook_server.texts()
    assert [t.split("]")[0] for t in texts] == ["[FIRING", "[FIRING", "[RESOLVED"]  # first was the 503


def test_a_sweep_stops_trying_a_channel_that_is_down(incident, webhook_server, t0, cluster):
    webhook_server.script(Reply(500, "down"))
    incident(0, 5000)
    lag_snapshot(cluster, "billing", t0, {"payments": {0: 5000}})
    rule = AlertRule.objects.get()
    for index in range(5):
        other = AlertRule.objects.create(name=f"other {index}", cluster=rule.cluster, group="billing",
                                         metric="lag", op=">", threshold=index, for_seconds=0)
        other.channels.add(*rule.channels.all())
    evaluate(t0 + timedelta(seconds=1))
    assert Notification.objects.count() == 6
    result = sweep_due(t0 + timedelta(seconds=2))
    assert result.outcomes == {"retry": 1}
    assert len(webhook_server.received) == 1


def test_delivery_gives_up_after_a_day_of_temporary_errors(incident, webhook_server, t0):
    webhook_server.script(Reply(500, "still down"))
    incident(0, 5000)
    [notification] = Notification.objects.all()
    Notification.objects.filter(pk=notification.pk).update(due_at=t0 + GIVE_UP_AFTER)
    result = deliver(notification.id, t0 + GIVE_UP_AFTER)
    assert result.outcome == Outcome.FAILED and result.error.startswith("gave up after 1 attempts")
    assert not result.channel_broken


def test_muted_notifications_are_never_delivered(slack, t0):
    muted = Notification.objects.create(channel=slack, kind=NotificationKind.FIRING, payload={}, created_at=t0,
                                        due_at=t0, muted=True)
    assert deliver(muted.id, t0).outcome == Outcome.SKIPPED
    assert sweep_due(t0).total == 0


def test_a_disabled_channel_fails_the_notification_without_sending(incident, webhook_server, slack, t0):
    incident(0, 5000)
    Channel.objects.filter(pk=slack.pk).update(enabled=False)
    [notification] = Notification.objects.all()
    result = deliver(notification.id, t0)
    assert result.outcome == Outcome.FAILED and result.error == "the channel is disabled"
    assert webhook_server.received == []
    slack.refresh_from_db()
    assert not slack.failing


def test_email_delivery_goes_through_the_outbox(cluster, smtp_server, t0):
    cluster.status = ClusterStatus.OK
    cluster.save()
    email = Channel.objects.create(name="team", kind=ChannelKind.EMAIL, email_to="oncall@example.com")
    for name in ("first rule", "second rule"):
        rule = AlertRule.objects.create(name=name, cluster=cluster.name, group="billing", metric="lag", op=">",
                                        threshold=1, for_seconds=0)
        rule.channels.add(email)
    lag_snapshot(cluster, "billing", t0, {"payments": {0: 50}})
    evaluate(t0)
    assert sweep_due(t0).outcomes == {"sent": 1}
    [message] = smtp_server.messages
    assert message["Subject"] == "[kafka-monitor] digest | 2 alerts from 2 rules | FIRING warning"
    assert Notification.objects.get().last_status_code == 250


def test_the_evaluate_task_queues_delivery_of_what_it_wrote(incident, webhook_server, cluster,
                                                           django_capture_on_commit_callbacks):
    from monitor.celery import app
    from monitor.tasks import evaluate_rules, sweep_notifications

    lag_snapshot(cluster, "billing", timezone.now(), {"payments": {0: 5000}})
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert evaluate_rules() == 1
    finally:
        app.conf.task_always_eager = False
    assert len(callbacks) == 1
    assert len(webhook_server.received) == 1  # on_commit ran the delivery task
    assert sweep_notifications() == 0


def test_a_receiver_echoing_the_webhook_url_never_gets_it_stored(incident, webhook_server, slack, t0):
    webhook_server.script(Reply(404, f"unknown hook {webhook_server.url()}"))
    incident(0, 5000)
    [notification] = Notification.objects.all()
    deliver(notification.id, t0)
    notification.refresh_from_db()
    slack.refresh_from_db()
    stored = [notification.last_error, slack.last_error, DeliveryAttempt.objects.get().error]
    assert all("secret-token-XYZ" not in text and "unknown hook" not in text for text in stored)
    assert stored[0] == "HTTP 404"


def _fresh_publisher_pools(app) -> None:
    """Forget the cached connection and producer pools (as Celery does after a fork) without
    closing them, so the next publish uses the current broker_url and other tests keep theirs."""
    app._pool = None
    app.amqp._producer_pool = None


def test_a_broker_outage_when_queueing_delays_delivery_but_loses_nothing(incident, webhook_server, t0, caplog):
    from monitor.celery import app
    from monitor.tasks import _queue_delivery
    from tests.services import free_port

    incident(0, 5000)
    [notification] = Notification.objects.all()
    saved = app.conf.broker_url, app.conf.task_publish_retry, app._pool, app.amqp._producer_pool
    app.conf.broker_url, app.conf.task_publish_retry = f"redis://127.0.0.1:{free_port()}/0", False
    _fresh_publisher_pools(app)
    try:
        _queue_delivery(notification.id)  # logs and returns: the row is safe in the outbox
    finally:
        app.conf.broker_url, app.conf.task_publish_retry, app._pool, app.amqp._producer_pool = saved
    assert f"could not queue notification {notification.id}; the sweep will deliver it" in caplog.text
    assert webhook_server.received == []
    assert sweep_due(t0).outcomes == {"sent": 1}


# -- at-least-once with a stable idempotency key (issue 17.1, 17.2, 9.5) -----------------------

def test_every_attempt_carries_the_same_idempotency_key_in_the_header(incident, webhook_server, t0):
    webhook_server.script(Reply(500, "oops"), Reply(200, "ok"))
    incident(0, 5000)
    [notification] = Notification.objects.all()
    deliver(notification.id, t0)
    deliver(notification.id, t0 + timedelta(seconds=30))
    keys = [r.headers["Idempotency-Key"] for r in webhook_server.received]
    assert keys == [str(notification.idempotency_key)] * 2
    assert [r.json()["metadata"]["event_payload"]["idempotency_key"] for r in webhook_server.received] == keys


def test_each_notification_has_its_own_key(incident, webhook_server, t0):
    incident(0, 5000)
    incident(30, 10)
    sweep_due(t0 + timedelta(seconds=30))
    keys = [r.headers["Idempotency-Key"] for r in webhook_server.received]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_an_attempt_is_recorded_before_sending_so_a_killed_one_stays_visible(incident, webhook_server, t0):
    from monitor.notify.delivery import INTERRUPTED, _begin_attempt

    incident(0, 5000)
    [notification] = Notification.objects.all()
    # What a worker commits before it sends; then it is killed (nothing more is written).
    assert claim(notification.id, t0)
    assert _begin_attempt(notification, t0, t0) is not None
    notification.refresh_from_db()
    [killed] = DeliveryAttempt.objects.all()
    assert notification.attempts == 1 and killed.finished_at is None and killed.error == ""

    assert sweep_due(t0 + timedelta(seconds=lease_seconds() + 1)).outcomes == {"sent": 1}
    notification.refresh_from_db()
    killed.refresh_from_db()
    assert notification.attempts == 2
    assert killed.finished_at is None and killed.error == INTERRUPTED and not killed.ok
    assert DeliveryAttempt.objects.filter(ok=True, finished_at__isnull=False).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_lease_counts_from_the_claim_not_from_the_start_of_a_slow_sweep(webhook_server, settings):
    """Issue 9.5 with a real slow receiver: the first message takes 3 s, the second hangs
    until released. A second worker sweeping once the first sweep is older than the lease
    must not take the second message (before the fix its claim carried the sweep's start)."""
    settings.MONITOR_DELIVERY_LEASE_SECONDS = 6
    settings.MONITOR_NOTIFY_TIMEOUT_SECONDS = 4
    release = threading.Event()
    webhook_server.script(Reply(200, "ok", delay_seconds=3), Reply(200, "ok", hold=release))
    now = timezone.now()
    ids = []
    for name in ("slow", "hung"):
        channel = Channel.objects.create(name=name, kind=ChannelKind.SLACK, webhook_url=webhook_server.url(f"/{name}"))
        ids.append(Notification.objects.create(channel=channel, kind=NotificationKind.TEST, created_at=now, due_at=now,
                                               payload={"kind": "test", "items": [], "channel": name}).id)
    first_sweep = []

    def worker() -> None:
        try:
            first_sweep.append(sweep_due())
        finally:
            connection.close()

    sweep_started = timezone.now()
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        while len(webhook_server.arrived) < 2 or timezone.now() < sweep_started + timedelta(seconds=6.5):
            assert thread.is_alive(), "the first sweep ended before the hung receiver answered"
            release.wait(0.05)
        second = sweep_due()  # another worker, after the first sweep has outlived the lease
    finally:
        release.set()
        thread.join(30)
    assert second.outcomes == {}
    assert first_sweep[0].outcomes == {"sent": 2}
    assert [r.path for r in webhook_server.received] == ["/slow", "/hung"]
    sent = dict(Notification.objects.values_list("id", "sent_at"))
    claims = dict(Notification.objects.values_list("id", "claimed_at"))
    assert claims[ids[1]] - claims[ids[0]] >= timedelta(seconds=3)  # each claim has its own time
    assert sent[ids[1]] > claims[ids[1]]  # sent_at is when it was sent


def test_a_stuck_claim_delays_only_itself_and_later_messages_about_the_same_alert(incident, webhook_server, t0,
                                                                                  cluster, slack):
    incident(0, 5000)
    [stuck] = Notification.objects.all()
    assert claim(stuck.id, t0)  # a worker hangs on it
    other = AlertRule.objects.create(name="billing has lag", cluster=cluster.name, group="billing", metric="lag",
                                     op=">", threshold=1, for_seconds=0)
    other.channels.add(slack)
    evaluate(t0 + timedelta(seconds=1))  # another rule fires on the same channel
    assert sweep_due(t0 + timedelta(seconds=2)).outcomes == {"sent": 1}
    assert webhook_server.texts()[0].startswith("[FIRING] billing has lag")

    incident(5, 10)  # the stuck alert resolves: its resolved message waits for its firing
    assert sweep_due(t0 + timedelta(seconds=6)).outcomes.get("postponed") == 1
    sweep_due(t0 + timedelta(seconds=lease_seconds() + 1))
    sweep_due(t0 + timedelta(seconds=lease_seconds() + 3))
    texts = [t.split(":")[0] for t in webhook_server.texts()]
    assert texts[1:] == ["[FIRING] billing falls behind", "[RESOLVED] billing falls behind"]
