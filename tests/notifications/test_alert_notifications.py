"""Alert notifications: the monitoring app's signals (``alerts_notify`` from its dispatcher,
``alert_status_changed`` on resolve and acknowledge) become deliveries — a Slack message per
alert edited in place by the real slack-sdk against the fake Slack on 127.0.0.1, mail in the
locmem outbox, signed webhooks to a real HTTP server — routed by the target's min_severity.

The monitoring dispatcher (which stamps the alert's notification bookkeeping and sends
``alerts_notify``) is played here by :func:`tell`: Alert rows are made directly."""

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.monitoring import signals as monitoring_signals
from apps.monitoring.models import Alert, Silence
from apps.notifications.models import NotificationDelivery, NotificationTarget
from apps.notifications.services import alert_event_id
from apps.projects.services import project_create
from tests.factories import UserFactory
from tests.notifications.slackblocks import blocks_of, blocks_text

from .conftest import CHANNEL, HOOK_SECRET, SITE, api_calls

pytestmark = pytest.mark.django_db


def _alert_url(alert) -> str:
    """The alert's page (the monitoring app's, once it is there), else the project's."""
    try:
        path = reverse("alerts:detail", kwargs={"slug": alert.project.slug, "pk": alert.pk})
    except NoReverseMatch:
        path = alert.project.get_absolute_url()
    return SITE + path


def _by_id(blocks) -> dict[str, dict]:
    return {b["block_id"]: b for b in blocks if "block_id" in b}


@pytest.fixture
def alert(project, production):
    return Alert.objects.create(
        project=project,
        environment=production,
        source="controlplane",
        rule="dataset_drift",
        fingerprint="f" * 64,
        labels={
            "alertname": "dataset_drift",
            "project": project.slug,
            "environment": "production",
            "model_version": "7",
            "feature": "plan",
        },
        annotations={"description": "3 of 5 features drifted (share 0.6 >= 0.5)."},
        severity="critical",
        summary="Dataset drift in production",
        value=0.6,
        group_key=f"{project.slug}/production/dataset_drift",
    )


def _alert(project, environment, *, rule, severity, n, summary=""):
    return Alert.objects.create(
        project=project,
        environment=environment,
        source="controlplane",
        rule=rule,
        fingerprint=f"{n:064d}",
        labels={"alertname": rule, "environment": environment.name},
        severity=severity,
        summary=summary or rule,
    )


@pytest.fixture
def tell(after_commit):
    """tell(alerts, reason) plays the dispatcher: stamps the notification bookkeeping, then
    sends ``alerts_notify`` after the commit, as apps/monitoring/dispatch.py does."""

    def send(alerts, reason="firing", group_key="churn-model/production/dataset_drift"):
        alerts = alerts if isinstance(alerts, list) else [alerts]
        now = timezone.now()
        for a in alerts:
            a.refresh_from_db()
            if reason != "resolved":
                a.last_notified_at = now
                a.notified_count += 1
                a.save(update_fields=["last_notified_at", "notified_count"])
        with after_commit():
            monitoring_signals.alerts_notify.send(
                sender=Alert, alert_ids=[a.pk for a in alerts], group_key=group_key, reason=reason
            )

    return send


@pytest.fixture
def resolve(after_commit):
    def send(alert, at=None):
        alert.status = "resolved"
        alert.resolved_at = at or timezone.now()
        alert.save(update_fields=["status", "resolved_at"])
        with after_commit():
            monitoring_signals.alert_status_changed.send(
                sender=Alert, alert=alert, old="firing", new="resolved"
            )

    return send


@pytest.fixture
def acknowledge(after_commit):
    def send(alert, user):
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = user
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        with after_commit():
            monitoring_signals.alert_status_changed.send(
                sender=Alert, alert=alert, old="firing", new="firing", acknowledged=True
            )

    return send


@pytest.fixture
def email_target(project):
    return NotificationTarget.objects.create(
        project=project, kind="email", destination="oncall@example.com"
    )


# --- Slack ------------------------------------------------------------------------------------


def test_a_firing_alert_posts_one_block_kit_message(slack_server, slack_target, alert, tell):
    tell(alert)

    [post] = api_calls(slack_server, "chat.postMessage")
    assert post["json"]["channel"] == CHANNEL
    assert post["json"]["text"].startswith(
        "[churn-model] FIRING critical: Dataset drift in production (production)"
    )
    blocks = _by_id(blocks_of(post))
    assert list(blocks) == [
        "alert",
        "alert_place",
        "alert_description",
        "alert_labels",
        "alert_status",
        "alert_actions",
    ]
    head = blocks["alert"]["text"]["text"]
    assert "*Firing*" in head and "*CRITICAL*" in head and ":rotating_light:" in head
    url = _alert_url(alert)
    assert f"<{url}|Dataset drift in production>" in head
    place = blocks_text([blocks["alert_place"]])
    assert "project *churn-model*" in place
    assert "environment *production*" in place
    assert "rule `dataset_drift`" in place
    assert "value *0.6*" in place
    assert "3 of 5 features drifted" in blocks_text([blocks["alert_description"]])
    # Labels, less the ones the message already says.
    assert blocks_text([blocks["alert_labels"]]) == "`feature=plan` `model_version=7`"
    assert "since <!date^" in blocks_text([blocks["alert_status"]])
    [button] = blocks["alert_actions"]["elements"]
    assert button["url"] == url

    delivery = NotificationDelivery.objects.get()
    assert (delivery.event, delivery.object_type, delivery.object_id) == (
        "alert.firing",
        "alert",
        alert.pk,
    )
    assert (delivery.status, delivery.slack_channel, delivery.slack_ts) == (
        "sent",
        CHANNEL,
        "1700000000.000100",
    )
    assert delivery.object_repr == (
        "dataset_drift · production (critical): Dataset drift in production"
    )
    assert delivery.payload["alert"]["labels"]["feature"] == "plan"
    assert delivery.payload["reason"] == "firing"
    assert delivery.payload["group_key"] == "churn-model/production/dataset_drift"


def test_a_resolve_edits_the_same_message_once(slack_server, slack_target, alert, tell, resolve):
    tell(alert)
    [post] = api_calls(slack_server, "chat.postMessage")
    resolve(alert)
    # The dispatcher tells the resolve too: the same event, no second edit.
    tell(alert, reason="resolved")

    assert len(api_calls(slack_server, "chat.postMessage")) == 1
    [update] = api_calls(slack_server, "chat.update")
    assert update["json"]["channel"] == CHANNEL
    assert update["json"]["ts"] == "1700000000.000100"
    blocks = _by_id(blocks_of(update))
    assert "*Resolved*" in blocks["alert"]["text"]["text"]
    assert ":white_check_mark:" in blocks["alert"]["text"]["text"]
    assert "resolved <!date^" in blocks_text([blocks["alert_status"]])
    assert "alert_actions" in blocks
    assert update["json"]["text"].startswith("[churn-model] RESOLVED critical")
    assert blocks_of(post) != blocks_of(update)

    resolved = NotificationDelivery.objects.get(event="alert.resolved")
    assert (resolved.status, resolved.slack_channel, resolved.slack_ts) == (
        "sent",
        CHANNEL,
        "1700000000.000100",
    )
    assert NotificationDelivery.objects.count() == 2


def test_an_acknowledgement_edits_the_message_with_who(
    slack_server, slack_target, alert, tell, acknowledge, resolve
):
    tell(alert)
    alice = UserFactory(username="alice")
    acknowledge(alert, alice)

    [update] = api_calls(slack_server, "chat.update")
    assert update["json"]["ts"] == "1700000000.000100"
    status = blocks_text([_by_id(blocks_of(update))["alert_status"]])
    assert ":eyes: acknowledged by alice" in status
    assert "*Firing*" in _by_id(blocks_of(update))["alert"]["text"]["text"]

    resolve(alert)
    assert len(api_calls(slack_server, "chat.update")) == 2
    final = _by_id(blocks_of(api_calls(slack_server, "chat.update")[-1]))
    assert "*Resolved*" in final["alert"]["text"]["text"]
    assert "acknowledged by alice" in blocks_text([final["alert_status"]])
    assert len(api_calls(slack_server, "chat.postMessage")) == 1


def test_a_repeat_replies_in_the_thread_and_the_resolve_edits_both(
    slack_server, slack_target, alert, tell, resolve
):
    tell(alert)
    alert.value = 0.8
    alert.save(update_fields=["value"])
    tell(alert, reason="repeat")

    first, reply = api_calls(slack_server, "chat.postMessage")
    assert reply["json"]["thread_ts"] == "1700000000.000100"
    assert reply["json"]["reply_broadcast"] in (True, "1", "true", 1)
    assert "value *0.8*" in blocks_text(blocks_of(reply))
    [refresh] = api_calls(slack_server, "chat.update")
    assert refresh["json"]["ts"] == "1700000000.000100"
    assert "value *0.8*" in blocks_text(blocks_of(refresh))

    resolve(alert)
    edits = api_calls(slack_server, "chat.update")[1:]
    assert sorted(e["json"]["ts"] for e in edits) == ["1700000000.000100", "1700000000.000101"]
    assert all("*Resolved*" in blocks_text(blocks_of(e)) for e in edits)


def test_one_message_per_alert_of_a_group(slack_server, slack_target, project, production, tell):
    a = _alert(project, production, rule="error_rate", severity="critical", n=1)
    b = _alert(project, production, rule="latency_p95", severity="warning", n=2)
    tell([a, b], group_key="churn-model/production")

    posts = api_calls(slack_server, "chat.postMessage")
    assert len(posts) == 2
    assert {p["json"]["text"].split(":")[0] for p in posts} == {
        "[churn-model] FIRING critical",
        "[churn-model] FIRING warning",
    }
    deliveries = NotificationDelivery.objects.filter(event="alert.firing")
    assert sorted(deliveries.values_list("object_id", flat=True)) == sorted([a.pk, b.pk])
    assert len({d.slack_ts for d in deliveries}) == 2  # a message each, kept for its edits


def test_a_silenced_alert_says_until_when_and_its_resolve_only_edits_slack(
    slack_server, slack_target, email_target, alert, tell, resolve, admin_user
):
    tell(alert)
    assert len(mail.outbox) == 1
    until = timezone.now() + timedelta(hours=2)
    silence = Silence.objects.create(
        project=alert.project,
        matchers=[{"name": "alertname", "op": "=", "value": "dataset_drift"}],
        reason="retraining",
        created_by=admin_user,
        ends_at=until,
    )
    alert.silenced_by = silence
    alert.save(update_fields=["silenced_by"])
    from apps.notifications import events, slack

    data = events.alert_data(alert)
    assert data["silenced_until"] == until.isoformat()
    _text_, blocks = slack.alert_message("churn-model", data)
    assert ":zzz: silenced until <!date^" in blocks_text([_by_id(blocks)["alert_status"]])

    resolve(alert)
    [update] = api_calls(slack_server, "chat.update")
    assert "*Resolved*" in blocks_text(blocks_of(update))
    assert len(mail.outbox) == 1  # the silence holds the mail back
    assert not NotificationDelivery.objects.filter(event="alert.resolved", kind="email").exists()


def test_a_resolve_of_an_alert_never_told_sends_nothing(
    slack_server, slack_target, email_target, webhook_target, hook_server, alert, resolve
):
    resolve(alert)
    assert slack_server.received == [] and hook_server.received == [] and mail.outbox == []
    assert not NotificationDelivery.objects.exists()


def test_an_alert_of_no_project_notifies_nobody(slack_server, slack_target, production, tell):
    orphan = Alert.objects.create(
        source="alertmanager", rule="HostDown", fingerprint="a" * 64, severity="critical"
    )
    tell(orphan)
    assert slack_server.received == []
    assert not NotificationDelivery.objects.exists()


def test_the_same_notification_told_twice_is_one_delivery(
    slack_server, slack_target, alert, after_commit
):
    alert.last_notified_at = timezone.now()
    alert.notified_count = 1
    alert.save()
    for _ in range(2):
        with after_commit():
            monitoring_signals.alerts_notify.send(
                sender=Alert, alert_ids=[alert.pk], group_key="g", reason="firing"
            )
    assert len(api_calls(slack_server, "chat.postMessage")) == 1
    delivery = NotificationDelivery.objects.get()
    assert delivery.event_id == alert_event_id(alert=alert, event="alert.firing", reason="firing")
    assert delivery.event_id.version == 5


# --- routing by severity ------------------------------------------------------------------------


def test_min_severity_routes_alerts_and_leaves_other_events_alone(
    slack_server, project, production, tell, resolve
):
    pager = NotificationTarget.objects.create(
        project=project, kind="slack", destination="C0PAGER", min_severity="critical"
    )
    everything = NotificationTarget.objects.create(
        project=project, kind="slack", destination="C0ALL"
    )
    warning = _alert(project, production, rule="latency_p95", severity="warning", n=1)
    critical = _alert(project, production, rule="service_down", severity="critical", n=2)
    info = _alert(project, production, rule="promotion_waiting", severity="info", n=3)
    tell([warning, critical, info])

    sent = set(NotificationDelivery.objects.values_list("target_id", "object_id"))
    assert sent == {
        (pager.pk, critical.pk),
        (everything.pk, warning.pk),
        (everything.pk, critical.pk),
        (everything.pk, info.pk),
    }
    channels = sorted(p["json"]["channel"] for p in api_calls(slack_server, "chat.postMessage"))
    assert channels == ["C0ALL", "C0ALL", "C0ALL", "C0PAGER"]

    # The warning's resolve goes where its firing went, not to the pager.
    resolve(warning)
    [update] = api_calls(slack_server, "chat.update")
    assert update["json"]["channel"] == "C0ALL"
    assert pager.wants("build.failed") and not pager.wants("alert.firing", "warning")


def test_monitor_route_sends_each_severity_to_the_channels_it_names(
    slack_server, project, tmp_path, tell
):
    from apps.monitoring import checks
    from tests.monitoring.checks_setup import SPEC, make_world

    checks._SPEC_CACHE.clear()
    route = "  route: {critical: [email], warning: [slack, email], info: []}\n"
    world = make_world(project, tmp_path, spec=SPEC + route)
    slack = NotificationTarget.objects.create(project=project, kind="slack", destination="C0ALL")
    email = NotificationTarget.objects.create(
        project=project, kind="email", destination="oncall@example.com"
    )
    production = world.environment
    critical = _alert(project, production, rule="service_down", severity="critical", n=1)
    warning = _alert(project, production, rule="latency_p95", severity="warning", n=2)
    info = _alert(project, production, rule="column_drift", severity="info", n=3)
    # An environment the spec does not serve in: no route, every target.
    dev = project.environments.get(name="dev")
    elsewhere = _alert(project, dev, rule="service_down", severity="critical", n=4)
    tell([critical, warning, info, elsewhere])
    checks._SPEC_CACHE.clear()

    sent = set(NotificationDelivery.objects.values_list("target_id", "object_id"))
    assert sent == {
        (email.pk, critical.pk),
        (slack.pk, warning.pk),
        (email.pk, warning.pk),
        (slack.pk, elsewhere.pk),
        (email.pk, elsewhere.pk),
    }
    assert len(api_calls(slack_server, "chat.postMessage")) == 2
    assert sorted(m.subject.split(":")[0] for m in mail.outbox) == [
        "[churn-model] FIRING critical",
        "[churn-model] FIRING critical",
        "[churn-model] FIRING warning",
    ]


def test_targets_are_per_project(slack_server, slack_target, admin_user, production, tell):
    other = project_create(name="Fraud model", actor=admin_user)
    NotificationTarget.objects.create(project=other, kind="slack", destination="C0FRAUD")
    fraud_alert = _alert(
        other, other.environments.get(name="production"), rule="cpu", severity="warning", n=9
    )
    tell(fraud_alert)
    [post] = api_calls(slack_server, "chat.postMessage")
    assert post["json"]["channel"] == "C0FRAUD"
    assert post["json"]["text"].startswith("[fraud-model] FIRING warning")


# --- email ------------------------------------------------------------------------------------


def test_email_on_firing_and_resolve_not_on_acknowledge(
    email_target, alert, tell, acknowledge, resolve
):
    tell(alert)
    [firing] = mail.outbox
    assert firing.to == ["oncall@example.com"]
    assert firing.subject == (
        "[churn-model] FIRING critical: Dataset drift in production (production)"
    )
    assert firing.extra_headers["X-Controlplane-Event"] == "alert.firing"
    for line in (
        "An alert is firing.",
        "Severity: critical",
        "Environment: production",
        "Rule: dataset_drift",
        "Value: 0.6",
        "Labels: alertname=dataset_drift, environment=production, feature=plan,",
        "Description: 3 of 5 features drifted (share 0.6 >= 0.5).",
        f"Open the alert: {_alert_url(alert)}",
    ):
        assert line in firing.body, line
    html, mime = firing.alternatives[0]
    assert mime == "text/html" and "Dataset drift in production" in html

    acknowledge(alert, UserFactory(username="bob"))
    assert len(mail.outbox) == 1

    resolve(alert)
    assert len(mail.outbox) == 2
    resolved = mail.outbox[1]
    assert resolved.subject.startswith("[churn-model] RESOLVED critical: Dataset drift")
    assert "An alert resolved." in resolved.body
    assert "Acknowledged by: bob" in resolved.body
    assert "Resolved: " in resolved.body


# --- outgoing webhooks ------------------------------------------------------------------------


def _verifies(secret: str, headers: dict, body: bytes) -> bool:
    """The receiver's check as docs/notifications.md shows it (no control plane code)."""
    stamp = headers["X-Controlplane-Timestamp"]
    if abs(time.time() - int(stamp)) > 300:
        return False
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["X-Controlplane-Signature"])


def test_webhooks_get_every_alert_event_signed(
    webhook_target, hook_server, alert, tell, acknowledge, resolve
):
    tell(alert)
    acknowledge(alert, UserFactory(username="carol"))
    resolve(alert)

    assert [r["headers"]["X-Controlplane-Event"] for r in hook_server.received] == [
        "alert.firing",
        "alert.acknowledged",
        "alert.resolved",
    ]
    for request in hook_server.received:
        headers, body = request["headers"], request["body"]
        assert _verifies(HOOK_SECRET, headers, body)
        assert not _verifies("another-secret-another-secret", headers, body)
        assert not _verifies(HOOK_SECRET, headers, body.replace(b"critical", b"info"))
    firing = json.loads(hook_server.received[0]["body"])
    assert firing["event"] == "alert.firing"
    assert firing["project"]["slug"] == "churn-model"
    data = firing["data"]["alert"]
    assert data["id"] == alert.pk
    assert (data["rule"], data["severity"], data["status"], data["value"]) == (
        "dataset_drift",
        "critical",
        "firing",
        0.6,
    )
    assert data["environment"] == "production"
    assert data["labels"]["feature"] == "plan"
    assert data["url"] == _alert_url(alert)
    ack = json.loads(hook_server.received[1]["body"])["data"]["alert"]
    assert (ack["acknowledged"], ack["acknowledged_by"]) == (True, "carol")
    done = json.loads(hook_server.received[2]["body"])["data"]["alert"]
    assert done["status"] == "resolved" and done["resolved_at"]
    deliveries = NotificationDelivery.objects.order_by("pk")
    assert [d.uuid.hex for d in deliveries] == [
        r["headers"]["X-Controlplane-Delivery"].replace("-", "") for r in hook_server.received
    ]


# --- targets: API, form, ledger page ----------------------------------------------------------


def test_the_api_sets_and_checks_min_severity(api, admin_user, project):
    client = api(admin_user)
    body = {"project": project.slug, "kind": "slack", "destination": "C0PAGER"}
    created = client.post(
        "/api/v1/notification-targets/", {**body, "min_severity": "critical"}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["min_severity"] == "critical"
    pk = created.json()["id"]
    bad = client.patch(
        f"/api/v1/notification-targets/{pk}/", {"min_severity": "loud"}, format="json"
    )
    assert bad.status_code == 400
    cleared = client.patch(
        f"/api/v1/notification-targets/{pk}/", {"min_severity": ""}, format="json"
    )
    assert cleared.status_code == 200 and cleared.json()["min_severity"] == ""
    assert NotificationTarget.objects.get(pk=pk).min_severity == ""


def test_the_form_sets_min_severity_and_the_ledger_shows_alerts(
    client, admin_user, project, slack_server, slack_target, alert, tell
):
    client.force_login(admin_user)
    url = reverse("notifications:target-edit", args=[project.slug, slack_target.pk])
    page = client.get(url)
    assert page.status_code == 200 and b'name="min_severity"' in page.content
    response = client.post(
        url, {"name": "pager", "destination": CHANNEL, "min_severity": "warning", "enabled": "on"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    slack_target.refresh_from_db()
    assert slack_target.min_severity == "warning"

    tell(alert)
    page = client.get(reverse("notifications:project", args=[project.slug]))
    html = page.content.decode()
    assert "Warning and above" in html
    assert "alert.firing" in html
    assert "dataset_drift · production (critical): Dataset drift in production" in html


# --- end to end, through the monitoring app's services (once they are merged) ------------------


def test_through_the_monitoring_services_and_dispatcher(
    slack_server, slack_target, email_target, project, production, after_commit, settings
):
    """alert_fire → the dispatcher → one Slack message and a mail; acknowledge → the message
    edited; alert_resolve → the dispatcher → the same message edited again, one resolved mail."""
    alerts = pytest.importorskip("apps.monitoring.services.alerts")
    dispatcher = pytest.importorskip("apps.monitoring.dispatch")
    settings.ALERT_GROUP_WAIT_SECONDS = 0
    with after_commit():
        alert = alerts.alert_fire(
            rule="error_rate",
            labels={"service": "churn-api"},
            severity="critical",
            summary="5xx share 0.2 over 5 min",
            value=0.2,
            environment=production,
        )
    assert slack_server.received == []  # firing is told by the dispatcher, not at once
    with after_commit():
        dispatcher.dispatch()
    [post] = api_calls(slack_server, "chat.postMessage")
    head = _by_id(blocks_of(post))["alert"]["text"]["text"]
    assert f"<{_alert_url(alert)}|5xx share 0.2 over 5 min>" in head
    assert "`service=churn-api`" in blocks_text(blocks_of(post))
    assert len(mail.outbox) == 1

    member = UserFactory(username="dora", is_superuser=True)
    with after_commit():
        alerts.alert_acknowledge(alert=alert, actor=member)
    [ack] = api_calls(slack_server, "chat.update")
    assert ack["json"]["ts"] == "1700000000.000100"
    assert "acknowledged by dora" in blocks_text(blocks_of(ack))

    with after_commit():
        alerts.alert_resolve(fingerprint=alert.fingerprint)
    with after_commit():
        dispatcher.dispatch()
    updates = api_calls(slack_server, "chat.update")
    assert len(updates) == 2
    assert {u["json"]["ts"] for u in updates} == {"1700000000.000100"}
    assert "*Resolved*" in blocks_text(blocks_of(updates[-1]))
    assert len(api_calls(slack_server, "chat.postMessage")) == 1
    assert [m.subject.split(":")[0] for m in mail.outbox] == [
        "[churn-model] FIRING critical",
        "[churn-model] RESOLVED critical",
    ]
    assert NotificationDelivery.objects.filter(event="alert.resolved").count() == 2
