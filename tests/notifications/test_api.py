"""The API: targets per project (admins write, members read, the secret never comes back),
the delivery ledger, and linking one's Slack account; and the two small pages."""

import json

import pytest

from apps.core.models import AuditEvent
from apps.notifications.models import NotificationDelivery, NotificationTarget, SlackIdentity
from apps.notifications.services import dispatch, target_create
from apps.notifications.tasks import dispatch_task
from apps.projects.services import project_create
from tests.factories import RunFactory, UserFactory

pytestmark = pytest.mark.django_db

TARGETS = "/api/v1/notification-targets/"
DELIVERIES = "/api/v1/notification-deliveries/"
ME = "/api/v1/me/slack-identity/"
SECRET = "a-long-webhook-secret-0123456789"


@pytest.fixture(autouse=True)
def _churn_model(project):
    """Every test here has the "churn-model" project."""


def _webhook(**extra):
    return {
        "project": "churn-model",
        "kind": "webhook",
        "name": "ops bus",
        "destination": "https://hooks.example.com/cp",
        "secret": SECRET,
        "events": ["build.failed", "deployment.failed"],
        **extra,
    }


def test_an_admin_creates_a_webhook_target_and_the_secret_never_comes_back(api, admin_user):
    client = api(admin_user)
    response = client.post(TARGETS, _webhook(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "secret" not in body and body["has_secret"] is True
    assert body["events"] == ["build.failed", "deployment.failed"]
    assert body["created_by"] == "root"
    target = NotificationTarget.objects.get()
    assert target.secret == SECRET
    # Stored encrypted; the audit row says what, never the secret.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM notifications_notificationtarget")
        assert cursor.fetchone()[0].startswith("fernet:")
    event = AuditEvent.objects.get(action="notification_target.created")
    assert SECRET not in json.dumps(event.data)

    listed = client.get(TARGETS).json()["results"]
    assert "secret" not in listed[0]
    assert SECRET not in json.dumps(client.get(f"{TARGETS}{target.pk}/").json())


def test_updating_without_a_secret_keeps_it(api, admin_user, project):
    target = target_create(
        project=project, actor=admin_user, **{k: v for k, v in _webhook().items() if k != "project"}
    )
    response = api(admin_user).patch(
        f"{TARGETS}{target.pk}/", {"enabled": False, "events": []}, format="json"
    )
    assert response.status_code == 200, response.json()
    target.refresh_from_db()
    assert (target.enabled, target.events, target.secret) == (False, [], SECRET)
    response = api(admin_user).patch(
        f"{TARGETS}{target.pk}/", {"secret": "a-brand-new-secret-0000"}, format="json"
    )
    target.refresh_from_db()
    assert target.secret == "a-brand-new-secret-0000"
    assert (
        api(admin_user)
        .patch(f"{TARGETS}{target.pk}/", {"kind": "slack"}, format="json")
        .status_code
        == 400
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_webhook(secret=""), "secret"),
        (_webhook(secret="short"), "secret"),
        (_webhook(destination="ftp://x.example.com/"), "http(s) URL"),
        (_webhook(events=["no.such.event"]), "events"),
        ({"project": "churn-model", "kind": "slack", "destination": "not a channel"}, "channel"),
        ({"project": "churn-model", "kind": "email", "destination": "a@example.com, nope"}, "nope"),
        (
            {"project": "churn-model", "kind": "email", "events": ["approval.recorded"]},
            "approval.recorded",
        ),
    ],
)
def test_invalid_targets_are_refused(api, admin_user, body, message):
    response = api(admin_user).post(TARGETS, body, format="json")
    assert response.status_code == 400
    assert message in json.dumps(response.json())
    assert NotificationTarget.objects.count() == 0


@pytest.mark.parametrize("role", ["viewer", "developer", "approver"])
def test_only_admins_write_but_members_read(api, member, admin_user, project, role):
    target = target_create(project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS")
    client = api(member(role))
    assert client.post(TARGETS, _webhook(), format="json").status_code == 403
    assert (
        client.patch(f"{TARGETS}{target.pk}/", {"enabled": False}, format="json").status_code == 403
    )
    assert client.delete(f"{TARGETS}{target.pk}/").status_code == 403
    assert client.post(f"{TARGETS}{target.pk}/test/").status_code == 403
    [listed] = client.get(TARGETS).json()["results"]
    assert listed["destination"] == "C0DEPLOYS"


def test_outsiders_see_nothing(api, admin_user, project):
    target = target_create(project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS")
    stranger = UserFactory(username="stranger")
    project_create(name="Other", actor=stranger)
    client = api(stranger)
    assert client.get(TARGETS).json()["results"] == []
    assert client.get(f"{TARGETS}{target.pk}/").status_code == 404
    assert client.post(TARGETS, _webhook(), format="json").status_code == 403


def test_delete_is_audited(api, admin_user, project):
    target = target_create(project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS")
    assert api(admin_user).delete(f"{TARGETS}{target.pk}/").status_code == 204
    assert not NotificationTarget.objects.exists()
    assert AuditEvent.objects.filter(action="notification_target.deleted").exists()


def test_the_test_action_queues_a_test_notification(
    api, admin_user, project, monkeypatch, django_capture_on_commit_callbacks
):
    target = target_create(project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS")
    sent = []
    monkeypatch.setattr(dispatch_task, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin_user).post(f"{TARGETS}{target.pk}/test/")
    assert response.status_code == 202
    [(event, source, source_id, _event_id, _extra, target_id)] = sent
    assert (event, source, source_id, target_id) == ("test", "target", target.pk, target.pk)


def test_deliveries_are_listed_per_project(
    api, admin_user, project, member, django_capture_on_commit_callbacks
):
    target_create(project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS")
    with django_capture_on_commit_callbacks(execute=False):
        dispatch(event="build.failed", obj=RunFactory(project=project, status="failed"))
    [row] = api(member("viewer")).get(DELIVERIES, {"project": "churn-model"}).json()["results"]
    assert (row["event"], row["status"], row["kind"], row["project"]) == (
        "build.failed",
        "pending",
        "slack",
        "churn-model",
    )
    assert api(UserFactory(username="nobody")).get(DELIVERIES).json()["results"] == []
    assert NotificationDelivery.objects.count() == 1


# --- my Slack identity ------------------------------------------------------------------------


def _code_sent_to(slack_server, slack_user_id: str) -> str:
    """The one-time code the bot sent to ``slack_user_id`` (a DM: chat.postMessage to the id)."""
    import re

    [dm] = [
        r
        for r in slack_server.received
        if r["path"] == "/api/chat.postMessage" and r["json"].get("channel") == slack_user_id
    ][-1:]
    return re.search(r"\*(\d{6})\*", dm["json"]["text"]).group(1)


def _link(client, slack_server, slack_user_id, team_id=""):
    body = {"slack_user_id": slack_user_id, **({"team_id": team_id} if team_id else {})}
    response = client.put(ME, body, format="json")
    assert response.status_code == 202, response.json()
    code = _code_sent_to(slack_server, slack_user_id)
    return client.put(ME, {"code": code}, format="json")


def test_link_and_unlink_my_slack_account(api, member, slack_server):
    alice = member("approver", "alice")
    client = api(alice)
    assert client.get(ME).status_code == 404
    response = _link(client, slack_server, "U0ALICE", "T0ACME")
    assert response.status_code == 200, response.json()
    assert response.json()["slack_user_id"] == "U0ALICE"
    assert SlackIdentity.objects.get(user=alice).team_id == "T0ACME"
    # Re-linking replaces the link.
    _link(client, slack_server, "U0ALICE2")
    assert SlackIdentity.objects.get(user=alice).slack_user_id == "U0ALICE2"
    assert client.delete(ME).status_code == 204
    assert not SlackIdentity.objects.filter(user=alice).exists()
    assert client.delete(ME).status_code == 404
    actions = list(
        AuditEvent.objects.filter(action__startswith="slack_identity")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["slack_identity.linked", "slack_identity.linked", "slack_identity.unlinked"]


def test_a_slack_user_links_to_one_account_only(api, member, slack_server):
    _link(api(member("approver", "alice")), slack_server, "U0ALICE")
    response = api(member("developer", "mallory")).put(
        ME, {"slack_user_id": "U0ALICE"}, format="json"
    )
    assert response.status_code == 409
    assert SlackIdentity.objects.get(slack_user_id="U0ALICE").user.username == "alice"


def test_a_malformed_member_id_is_refused(api, member, slack_server):
    response = api(member("viewer")).put(ME, {"slack_user_id": "alice"}, format="json")
    assert response.status_code == 400
    assert slack_server.received == []


def test_anonymous_gets_nothing(api):
    assert api().get(ME).status_code in (401, 403)
    assert api().get(TARGETS).status_code in (401, 403)


# --- pages ------------------------------------------------------------------------------------


def test_the_slack_account_page_links_and_unlinks(client, member, slack_server):
    alice = member("approver", "alice")
    client.force_login(alice)
    page = client.get("/integrations/slack/account/")
    assert page.status_code == 200 and b"Slack member ID" in page.content
    client.post("/integrations/slack/account/", {"slack_user_id": "U0ALICE", "team_id": ""})
    assert not SlackIdentity.objects.exists()  # a claim links nothing: the code does
    assert b"Code from Slack" in client.get("/integrations/slack/account/").content
    code = _code_sent_to(slack_server, "U0ALICE")
    client.post("/integrations/slack/account/", {"action": "confirm", "code": code})
    assert SlackIdentity.objects.get(user=alice).slack_user_id == "U0ALICE"
    assert b"U0ALICE" in client.get("/integrations/slack/account/").content
    client.post("/integrations/slack/account/", {"action": "unlink"})
    assert not SlackIdentity.objects.exists()


def test_the_project_page_lists_targets_and_deliveries(
    client, member, admin_user, project, django_capture_on_commit_callbacks
):
    target_create(
        project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS", name="deploys"
    )
    with django_capture_on_commit_callbacks(execute=False):
        dispatch(event="build.failed", obj=RunFactory(project=project, status="failed"))
    client.force_login(member("viewer"))
    page = client.get("/integrations/notifications/churn-model/")
    assert page.status_code == 200
    assert b"C0DEPLOYS" in page.content and b"build.failed" in page.content
    client.force_login(UserFactory(username="outsider"))
    assert client.get("/integrations/notifications/churn-model/").status_code == 404


def test_a_test_notification_reaches_slack(api, admin_user, project, slack_server, after_commit):
    from .conftest import api_calls

    target = target_create(project=project, actor=admin_user, kind="slack", destination="C0DEPLOYS")
    with after_commit():
        assert api(admin_user).post(f"{TARGETS}{target.pk}/test/").status_code == 202
    [post] = api_calls(slack_server, "chat.postMessage")
    assert post["json"]["text"] == "[churn-model] Test notification"
    delivery = NotificationDelivery.objects.get()
    assert (delivery.event, delivery.status, delivery.object_type) == ("test", "sent", "target")


def test_a_bug_in_a_sender_is_recorded_not_looped(
    project, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.notifications import mail, services

    target_create(project=project, actor=admin_user, kind="email", destination="ops@example.com")
    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = dispatch(
            event="build.failed", obj=RunFactory(project=project, status="failed")
        )

    def broken(*args):
        raise KeyError("oops")

    monkeypatch.setattr(mail, "send", broken)
    delivery = services.delivery_send(delivery_id=delivery.pk)
    assert (delivery.status, delivery.error) == ("failed", "Internal error (see the logs).")
