"""Approve / Reject clicked in Slack: Slack's signature first, then the account, then the same
service (and the same trail) as the browser."""

import json
import time
from urllib.parse import urlencode

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.notifications.tasks import slack_interaction_task
from apps.releases.models import Approval, Promotion
from apps.releases.services import release_create
from tests.factories import UserFactory
from tests.notifications.slackblocks import blocks_of

from .conftest import (
    BOT_TOKEN,
    SITE,
    TEAM,
    api_calls,
    block_actions,
    ephemeral_replies,
    slack_link,
    slack_signed,
    view_submission,
)

pytestmark = pytest.mark.django_db

URL = "/integrations/slack/interactions/"


@pytest.fixture
def promotion(slack_server, slack_target, request_promotion, release, production):
    return request_promotion(release, production)


def _trail():
    return (Approval.objects.count(), AuditEvent.objects.count())


def test_the_url():
    assert reverse("notifications:slack-interactions") == URL


# --- the signature ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: slack_signed(body, secret="not-the-signing-secret"), id="forged"),
        pytest.param(lambda body: {}, id="unsigned"),
        pytest.param(
            lambda body: {**slack_signed(body), "X-Slack-Signature": "v0=" + "0" * 64},
            id="wrong-digest",
        ),
        pytest.param(lambda body: slack_signed(body + "&x=1"), id="other-body"),
        pytest.param(
            lambda body: {**slack_signed(body), "X-Slack-Request-Timestamp": "soon"},
            id="bad-timestamp",
        ),
    ],
)
def test_a_bad_signature_is_401_and_changes_nothing(
    click, promotion, member, slack_server, headers
):
    slack_link(member("approver", "alice"), "U0ALICE")
    payload = block_actions(promotion.pk, "U0ALICE", response_url=f"{slack_server.url}/response/x")
    body = urlencode({"payload": json.dumps(payload)})
    before = _trail()
    received = len(slack_server.received)
    response = click(promotion, "U0ALICE", payload=payload, headers=headers(body))
    assert response.status_code == 401
    assert _trail() == before
    assert len(slack_server.received) == received  # no reply, no message edited
    promotion.refresh_from_db()
    assert promotion.status == "pending"


def test_a_stale_timestamp_is_401(client, promotion, member, slack_server):
    slack_link(member("approver", "alice"), "U0ALICE")
    payload = block_actions(promotion.pk, "U0ALICE", response_url=f"{slack_server.url}/response/x")
    body = urlencode({"payload": json.dumps(payload)})
    before = _trail()
    # Correctly signed, but six minutes old: a replay.
    headers = slack_signed(body, timestamp=int(time.time()) - 6 * 60)
    response = client.post(
        URL, data=body, content_type="application/x-www-form-urlencoded", headers=headers
    )
    assert response.status_code == 401
    assert _trail() == before


def test_no_signing_secret_configured_trusts_nothing(client, settings, promotion, member):
    slack_link(member("approver", "alice"), "U0ALICE")
    settings.SLACK_SIGNING_SECRET = ""
    body = urlencode(
        {"payload": json.dumps(block_actions(promotion.pk, "U0ALICE", response_url=""))}
    )
    before = _trail()
    response = client.post(
        URL,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=slack_signed(body, secret=""),
    )
    assert response.status_code == 401
    assert _trail() == before


def test_only_post(client):
    assert client.get(URL).status_code == 405


def test_a_signed_but_unreadable_body_is_400(client, slack_server):
    body = "payload=%7Bnot-json"
    response = client.post(
        URL, data=body, content_type="application/x-www-form-urlencoded", headers=slack_signed(body)
    )
    assert response.status_code == 400


def test_other_interactions_are_answered_and_ignored(click, promotion, slack_server, monkeypatch):
    sent = []
    monkeypatch.setattr(slack_interaction_task, "delay", lambda *a: sent.append(a))
    payload = {"type": "view_submission", "user": {"id": "U0ALICE"}}
    assert click(promotion, "U0ALICE", payload=payload).status_code == 200
    payload = block_actions(promotion.pk, "U0ALICE", action="open_promotion", response_url="")
    assert click(promotion, "U0ALICE", payload=payload).status_code == 200
    assert sent == []


def test_the_endpoint_answers_before_acting(client, promotion, member, monkeypatch):
    """Slack wants an answer within 3 s: the request only verifies and enqueues."""
    slack_link(member("approver", "alice"), "U0ALICE")
    sent = []
    monkeypatch.setattr(slack_interaction_task, "delay", lambda payload: sent.append(payload))
    payload = block_actions(promotion.pk, "U0ALICE", response_url="https://hooks.slack.test/x")
    body = urlencode({"payload": json.dumps(payload)})
    response = client.post(
        URL, data=body, content_type="application/x-www-form-urlencoded", headers=slack_signed(body)
    )
    assert response.status_code == 200
    assert sent == [payload]
    assert Approval.objects.count() == 0  # the worker decides


# --- a decision -------------------------------------------------------------------------------


def _audit(promotion) -> list[tuple]:
    ct = ContentType.objects.get_for_model(Promotion)
    return list(
        AuditEvent.objects.filter(content_type=ct, object_id=str(promotion.pk))
        .exclude(action="promotion.requested")
        .order_by("id")
        .values_list("action", "actor__username", "from_state", "to_state")
    )


def test_an_approval_in_slack_leaves_the_same_trail_as_in_the_browser(
    click,
    promotion,
    member,
    slack_server,
    project,
    admin_user,
    request_promotion,
    decide_in_browser,
):
    alice = member("approver", "alice")
    slack_link(alice, "U0ALICE")
    # The same kind of request elsewhere, decided in the browser, for comparison.
    staging = project.environments.get(name="staging")
    other = request_promotion(
        release_create(project=project, version="v4", commit_sha="f00d", actor=admin_user), staging
    )
    audit_before = AuditEvent.objects.count()
    decide_in_browser(other, alice)
    browser_rows = AuditEvent.objects.count() - audit_before

    audit_before = AuditEvent.objects.count()
    response = click(promotion, "U0ALICE")
    assert response.status_code == 200
    assert AuditEvent.objects.count() - audit_before == browser_rows

    approval = Approval.objects.get(promotion=promotion)
    assert (approval.user, approval.decision, approval.channel) == (alice, "approve", "slack")
    assert Approval.objects.get(promotion=other).channel == "web"
    assert _audit(promotion) == _audit(other)
    assert [a for a, *_ in _audit(promotion)][:2] == ["promotion.approve", "promotion.approved"]
    slack_row = AuditEvent.objects.get(object_id=str(promotion.pk), action="promotion.approve")
    assert slack_row.data == {"channel": "slack"}
    promotion.refresh_from_db()
    assert promotion.status in ("approved", "deploying")

    [reply] = ephemeral_replies(slack_server)
    assert reply["response_type"] == "ephemeral"
    assert reply["replace_original"] is False
    assert "You approved v3 → production" in reply["text"]
    # The channel's message now shows the outcome instead of the buttons.
    update = api_calls(slack_server, "chat.update")[-1]
    blocks = blocks_of(update)
    assert all(b["type"] != "actions" for b in blocks)
    assert "*Approved* by alice" in json.dumps(blocks)


def test_two_approvals_needed(
    click, slack_server, slack_target, request_promotion, release, production, member
):
    production.required_approvals = 2
    production.save()
    promotion = request_promotion(release, production)
    slack_link(member("approver", "alice"), "U0ALICE")
    slack_link(member("admin", "bob"), "U0BOB")

    click(promotion, "U0ALICE")
    promotion.refresh_from_db()
    assert promotion.status == "pending"
    assert "(1 of 2 approvals)" in ephemeral_replies(slack_server)[-1]["text"]
    assert "1 of 2 approvals: alice" in json.dumps(
        blocks_of(api_calls(slack_server, "chat.update")[-1])
    )

    click(promotion, "U0BOB")
    promotion.refresh_from_db()
    assert promotion.status in ("approved", "deploying")
    assert "it is approved" in ephemeral_replies(slack_server)[-1]["text"]
    assert list(promotion.approvals.values_list("channel", flat=True)) == ["slack", "slack"]


def _nothing_recorded(promotion, before) -> None:
    assert _trail() == before
    promotion.refresh_from_db()
    assert promotion.status == "pending"


def _reject_modal(click, promotion, slack_user_id, slack_server) -> dict:
    """Click Reject; returns the modal Slack was asked to open."""
    assert click(promotion, slack_user_id, action="promotion_reject").status_code == 200
    [opened] = api_calls(slack_server, "views.open")
    view = opened["json"]["view"]
    return json.loads(view) if isinstance(view, str) else view


def test_a_rejection_in_slack(click, promotion, member, slack_server):
    slack_link(member("approver", "carol"), "U0CAROL")
    view = _reject_modal(click, promotion, "U0CAROL", slack_server)
    click(promotion, "U0CAROL", payload=view_submission(view, "U0CAROL", "metrics regressed"))
    promotion.refresh_from_db()
    assert promotion.status == "rejected"
    approval = Approval.objects.get()
    assert (approval.decision, approval.channel) == ("reject", "slack")
    assert approval.comment == "metrics regressed"
    assert "You rejected" in ephemeral_replies(slack_server)[-1]["text"]


def test_reject_opens_a_modal_that_asks_for_a_reason(click, promotion, member, slack_server):
    slack_link(member("approver", "carol"), "U0CAROL")
    before = _trail()
    assert click(promotion, "U0CAROL", action="promotion_reject").status_code == 200
    [opened] = api_calls(slack_server, "views.open")
    assert opened["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"
    assert opened["json"]["trigger_id"] == "1.2.3"  # the click's, used within Slack's 3 s
    view = opened["json"]["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["type"] == "modal"
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["element"]["type"] == "plain_text_input"
    assert field.get("optional", False) is False  # Slack refuses to submit it empty
    assert "v3 → production" in json.dumps(view, ensure_ascii=False)
    # The click alone records nothing and tells nothing.
    assert ephemeral_replies(slack_server) == []
    _nothing_recorded(promotion, before)


def test_a_blank_reason_is_refused_in_the_modal(click, promotion, member, slack_server):
    slack_link(member("approver", "carol"), "U0CAROL")
    view = _reject_modal(click, promotion, "U0CAROL", slack_server)
    before = _trail()
    response = click(promotion, "U0CAROL", payload=view_submission(view, "U0CAROL", "   "))
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"].values()) == ["A rejection needs a reason."]
    _nothing_recorded(promotion, before)


def test_a_forged_modal_submission_is_401(click, promotion, member, slack_server):
    slack_link(member("approver", "carol"), "U0CAROL")
    view = _reject_modal(click, promotion, "U0CAROL", slack_server)
    payload = view_submission(view, "U0CAROL", "metrics regressed")
    body = urlencode({"payload": json.dumps(payload)})
    before = _trail()
    response = click(
        promotion, "U0CAROL", payload=payload, headers=slack_signed(body, secret="forged")
    )
    assert response.status_code == 401
    _nothing_recorded(promotion, before)


def test_a_modal_slack_cannot_open_sends_the_clicker_to_the_browser(
    click, promotion, member, slack_server
):
    slack_link(member("approver", "carol"), "U0CAROL")
    slack_server.codes = [{"ok": False, "error": "expired_trigger_id"}]
    before = _trail()
    click(promotion, "U0CAROL", action="promotion_reject")
    [reply] = ephemeral_replies(slack_server)
    assert "A rejection needs a reason: reject in the browser" in reply["text"]
    assert f"{SITE}{promotion.get_absolute_url()}" in reply["text"]
    _nothing_recorded(promotion, before)


def test_a_rejection_in_slack_follows_the_same_rules(click, promotion, member, slack_server):
    slack_link(member("developer", "dave"), "U0DAVE")
    view = _reject_modal(click, promotion, "U0DAVE", slack_server)
    before = _trail()
    click(promotion, "U0DAVE", payload=view_submission(view, "U0DAVE", "no"))
    [reply] = ephemeral_replies(slack_server)
    assert "Nothing was recorded" in reply["text"]
    _nothing_recorded(promotion, before)


def test_a_developer_cannot_approve_and_is_told_why(click, promotion, member, slack_server):
    slack_link(member("developer", "dave"), "U0DAVE")
    before = _trail()
    assert click(promotion, "U0DAVE").status_code == 200
    assert _trail() == before
    [reply] = ephemeral_replies(slack_server)
    assert "Nothing was recorded" in reply["text"]
    assert "Only members with the approver role may approve deploys to production" in reply["text"]
    promotion.refresh_from_db()
    assert promotion.status == "pending"


def test_self_approval_is_refused(click, promotion, admin_user, slack_server):
    slack_link(admin_user, "U0ROOT")  # admin_user requested the promotion
    before = _trail()
    click(promotion, "U0ROOT")
    assert _trail() == before
    assert "You requested this promotion" in ephemeral_replies(slack_server)[-1]["text"]


def test_a_second_click_is_a_conflict(
    click, member, slack_server, slack_target, request_promotion, release, production
):
    production.required_approvals = 2
    production.save()
    promotion = request_promotion(release, production)
    slack_link(member("approver", "alice"), "U0ALICE")
    click(promotion, "U0ALICE")
    click(promotion, "U0ALICE")
    assert Approval.objects.count() == 1
    assert "already decided" in ephemeral_replies(slack_server)[-1]["text"]


def test_an_unknown_slack_user_is_asked_to_link_and_nothing_is_recorded(
    click, promotion, slack_server
):
    before = _trail()
    click(promotion, "U0STRANGER")
    assert _trail() == before
    [reply] = ephemeral_replies(slack_server)
    assert "Link your Slack account" in reply["text"]
    assert "/integrations/slack/account/" in reply["text"]
    assert "`U0STRANGER`" in reply["text"]
    # Slack was asked who that is (by email), with the bot token.
    [info] = api_calls(slack_server, "users.info")
    assert info["json"]["user"] == "U0STRANGER"
    assert info["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"


def test_an_identity_of_another_workspace_does_not_count(click, promotion, member, slack_server):
    slack_link(member("approver", "alice"), "U0ALICE", team_id="T0OTHER")
    before = _trail()
    click(promotion, "U0ALICE")
    assert _trail() == before
    assert "Link your Slack account" in ephemeral_replies(slack_server)[-1]["text"]


# --- by email ---------------------------------------------------------------------------------


def _slack_user(email, *, confirmed=True, team=TEAM, **extra):
    return {
        "id": "U0EMAIL",
        "team_id": team,
        "deleted": False,
        "is_bot": False,
        "is_email_confirmed": confirmed,
        "profile": {"email": email},
        **extra,
    }


def test_a_confirmed_unique_email_maps_to_the_account(click, promotion, member, slack_server):
    erin = member("approver", "erin")
    slack_server.users["U0EMAIL"] = _slack_user(erin.email.upper())
    click(promotion, "U0EMAIL")
    approval = Approval.objects.get()
    assert (approval.user, approval.channel) == (erin, "slack")


@pytest.mark.parametrize(
    "slack_user",
    [
        pytest.param(lambda email: _slack_user(email, confirmed=False), id="unconfirmed"),
        pytest.param(lambda email: _slack_user(email, team="T0OTHER"), id="other-team"),
        pytest.param(lambda email: _slack_user(email, deleted=True), id="deactivated"),
        pytest.param(lambda email: _slack_user(email, is_bot=True), id="bot"),
        pytest.param(lambda email: _slack_user(""), id="no-email"),
    ],
)
def test_no_mapping_by_an_email_slack_does_not_vouch_for(
    click, promotion, member, slack_server, slack_user
):
    erin = member("approver", "erin")
    slack_server.users["U0EMAIL"] = slack_user(erin.email)
    click(promotion, "U0EMAIL")
    assert Approval.objects.count() == 0
    assert "Link your Slack account" in ephemeral_replies(slack_server)[-1]["text"]


def test_no_mapping_by_an_email_two_accounts_share(click, promotion, member, slack_server):
    erin = member("approver", "erin")
    UserFactory(username="erin-2", email=erin.email.upper())
    slack_server.users["U0EMAIL"] = _slack_user(erin.email)
    click(promotion, "U0EMAIL")
    assert Approval.objects.count() == 0


def test_an_account_with_a_linked_identity_is_not_matched_by_email(
    click, promotion, member, slack_server
):
    erin = member("approver", "erin")
    slack_link(erin, "U0ERIN")
    slack_server.users["U0EMAIL"] = _slack_user(erin.email)
    click(promotion, "U0EMAIL")
    assert Approval.objects.count() == 0
