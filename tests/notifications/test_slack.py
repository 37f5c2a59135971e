"""Slack messages, sent by the real slack-sdk client to a fake Slack on 127.0.0.1: one message
per promotion with Approve / Reject, edited in place as approvals come in and when it ends."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.notifications.models import NotificationDelivery
from apps.notifications.services import delivery_send
from apps.notifications.tasks import deliver_task
from apps.pipelines.models import PipelineRun
from apps.pipelines.signals import run_status_changed
from apps.releases import signals as release_signals
from apps.releases.models import Deployment, Promotion
from apps.releases.services import promotion_expire_due
from tests.factories import RunFactory
from tests.notifications.slackblocks import blocks_of, blocks_text

from .conftest import BOT_TOKEN, CHANNEL, SITE, _state, api_calls, send_missing_promotion_signals
from .conftest import sent_signals as record_signals

pytestmark = pytest.mark.django_db


def _buttons(blocks) -> dict[str, dict]:
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def test_a_pending_promotion_posts_a_message_with_approve_and_reject(
    slack_server, slack_target, request_promotion, release, production
):
    promotion = request_promotion(release, production)

    [post] = api_calls(slack_server, "chat.postMessage")
    assert post["method"] == "POST"
    assert post["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"
    assert post["json"]["channel"] == CHANNEL
    assert "v3 → production" in post["json"]["text"]
    blocks = blocks_of(post)
    assert [b["type"] for b in blocks] == ["section", "context", "context", "actions"]
    buttons = _buttons(blocks)
    assert buttons["promotion_approve"]["value"] == str(promotion.pk)
    assert buttons["promotion_approve"]["style"] == "primary"
    assert buttons["promotion_reject"]["value"] == str(promotion.pk)
    assert buttons["promotion_reject"]["style"] == "danger"
    assert buttons["open_promotion"]["url"] == SITE + promotion.get_absolute_url()
    text = blocks_text(blocks)
    assert f"<{SITE}{release.get_absolute_url()}|v3>" in text
    assert "0 of 1 approvals" in text
    assert "requested by root" in text

    delivery = NotificationDelivery.objects.get(event="promotion.pending")
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("sent", 1, 200)
    assert (delivery.slack_channel, delivery.slack_ts) == (CHANNEL, "1700000000.000100")
    assert delivery.payload["promotion"]["id"] == promotion.pk


def test_each_approval_edits_the_message_and_the_last_replaces_the_buttons(
    slack_server, slack_target, request_promotion, release, production, member, decide_in_browser
):
    production.required_approvals = 2
    production.save()
    promotion = request_promotion(release, production)
    decide_in_browser(promotion, member("approver", "alice"))

    [update] = api_calls(slack_server, "chat.update")
    assert update["headers"]["authorization"] == f"Bearer {BOT_TOKEN}"
    assert (update["json"]["channel"], update["json"]["ts"]) == (CHANNEL, "1700000000.000100")
    assert "1 of 2 approvals: alice" in blocks_text(blocks_of(update))
    assert "promotion_approve" in _buttons(blocks_of(update))  # still open

    decide_in_browser(promotion, member("admin", "bob"))
    promotion.refresh_from_db()
    assert promotion.status == "deploying"  # approved, and its deployment made
    last = api_calls(slack_server, "chat.update")[-1]
    assert last["json"]["ts"] == "1700000000.000100"
    blocks = blocks_of(last)
    assert "promotion_approve" not in _buttons(blocks)
    assert "*Approved* by alice, bob · deploying" in blocks_text(blocks)
    assert "2 of 2 approvals: alice, bob" in blocks_text(blocks)
    # One message in the channel for the whole story.
    assert len(api_calls(slack_server, "chat.postMessage")) == 1


def test_a_rejection_shows_who_and_why(
    slack_server, slack_target, request_promotion, release, production, member, after_commit
):
    from apps.releases import services as release_services

    promotion = request_promotion(release, production)
    before = _state(promotion)
    with record_signals() as log, after_commit():
        release_services.promotion_reject(
            promotion=promotion,
            user=member("approver", "carol"),
            comment="metrics <regressed>",
        )
    with after_commit():
        send_missing_promotion_signals(log, promotion, before)
    blocks = blocks_of(api_calls(slack_server, "chat.update")[-1])
    assert _buttons(blocks) == {}
    assert "*Rejected* by carol: metrics &lt;regressed&gt;" in blocks_text(blocks)


def test_an_expired_promotion_loses_its_buttons(
    slack_server, slack_target, request_promotion, release, production, after_commit
):
    promotion = request_promotion(release, production)
    Promotion.objects.filter(pk=promotion.pk).update(expires_at=timezone.now() - timedelta(1))
    before = _state(promotion)
    with record_signals() as log, after_commit():
        assert promotion_expire_due() == 1
    with after_commit():
        send_missing_promotion_signals(log, promotion, before)
    blocks = blocks_of(api_calls(slack_server, "chat.update")[-1])
    assert _buttons(blocks) == {}
    assert "*Expired*" in blocks_text(blocks)


def test_a_reminder_is_a_broadcast_reply_in_the_thread_and_is_edited_too(
    slack_server,
    slack_target,
    request_promotion,
    release,
    production,
    member,
    after_commit,
    decide_in_browser,
):
    promotion = request_promotion(release, production)
    with after_commit():
        release_signals.promotion_reminder.send(sender=Promotion, promotion=promotion)
    first, reminder = api_calls(slack_server, "chat.postMessage")
    assert reminder["json"]["thread_ts"] == first["json"].get("ts", "1700000000.000100")
    assert reminder["json"]["reply_broadcast"] is True
    assert "Reminder" in blocks_text(blocks_of(reminder))
    assert "promotion_approve" in _buttons(blocks_of(reminder))

    decide_in_browser(promotion, member("approver", "alice"))
    edited = {r["json"]["ts"] for r in api_calls(slack_server, "chat.update")}
    assert edited == {"1700000000.000100", "1700000000.000101"}


def test_an_approval_with_no_message_to_edit_is_skipped(
    slack_server, project, release, production, request_promotion, member, decide_in_browser
):
    promotion = request_promotion(release, production)  # no Slack target yet
    from apps.notifications.models import NotificationTarget

    NotificationTarget.objects.create(project=project, kind="slack", destination=CHANNEL)
    production.required_approvals = 2
    production.save()
    Promotion.objects.filter(pk=promotion.pk).update(required_approvals=2)
    decide_in_browser(promotion, member("approver", "alice"))
    assert slack_server.received == []
    delivery = NotificationDelivery.objects.get(event="approval.recorded")
    assert delivery.status == "skipped"
    assert "No Slack message" in delivery.error


def test_a_failed_build(slack_server, slack_target, project, after_commit):
    run = RunFactory(
        project=project,
        number=12,
        status="failed",
        commit_author="Alice",
        commit_message="Tune the model\n\nlong body",
        error_message="job train failed",
    )
    with after_commit():
        run_status_changed.send(
            sender=PipelineRun, run=run, from_status="running", to_status="succeeded"
        )
        run_status_changed.send(
            sender=PipelineRun, run=run, from_status="running", to_status="failed"
        )
    [post] = api_calls(slack_server, "chat.postMessage")
    assert post["json"]["text"] == "[churn-model] Pipeline #12 failed on main"
    blocks = blocks_of(post)
    text = blocks_text(blocks)
    assert f"<{SITE}{run.get_absolute_url()}|Pipeline #12 failed>" in text
    assert "Tune the model" in text and "long body" not in text
    assert "job train failed" in text
    assert _buttons(blocks)["open_run"]["url"] == SITE + run.get_absolute_url()


@pytest.mark.parametrize(
    ("is_rollback", "to_status", "title"),
    [
        (False, "succeeded", "Deployed v3 to production"),
        (False, "failed", "Deploy of v3 to production failed"),
        (False, "rolled_back", "production rolled back to v2"),
        (True, "succeeded", "production rolled back to v3"),
    ],
)
def test_deployments(
    slack_server,
    slack_target,
    release,
    production,
    admin_user,
    after_commit,
    is_rollback,
    to_status,
    title,
):
    from apps.releases.services import release_create

    older = release_create(
        project=release.project, version="v2", commit_sha="0ld", actor=admin_user
    )
    previous = Deployment.objects.create(release=older, environment=production, status="succeeded")
    deployment = Deployment.objects.create(
        release=release,
        environment=production,
        status=to_status,
        previous=previous,
        is_rollback=is_rollback,
        triggered_by=admin_user,
        error_message="health check failed" if to_status != "succeeded" else "",
    )
    with after_commit():
        release_signals.deployment_status_changed.send(
            sender=Deployment, deployment=deployment, from_status="running", to_status=to_status
        )
    [post] = api_calls(slack_server, "chat.postMessage")
    assert post["json"]["text"] == f"[churn-model] {title}"
    blocks = blocks_of(post)
    assert title in blocks_text(blocks)
    assert _buttons(blocks)["open_deployment"]["url"] == SITE + deployment.get_absolute_url()


def test_slack_down_is_retried_then_sent(
    slack_server, slack_target, request_promotion, release, production, monkeypatch
):
    slack_server.codes = [503]
    request_promotion(release, production)
    assert len(api_calls(slack_server, "chat.postMessage")) == 2
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 2, "")


def test_a_slack_refusal_is_final(
    slack_server, slack_target, request_promotion, release, production
):
    slack_server.codes = [{"ok": False, "error": "channel_not_found"}]
    request_promotion(release, production)
    assert len(api_calls(slack_server, "chat.postMessage")) == 1
    delivery = NotificationDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.error == "Slack: channel_not_found"
    assert BOT_TOKEN not in delivery.error


def test_slack_down_for_good_fails_after_the_retries(
    slack_server, slack_target, project, django_capture_on_commit_callbacks, monkeypatch
):
    from apps.notifications.services import dispatch

    run = RunFactory(project=project, status="failed")
    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = dispatch(event="build.failed", obj=run)
    slack_server.codes = [500] * 10
    result = deliver_task.apply(args=[delivery.pk])
    assert result.successful()  # recorded as failed, not raised
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 6, 500)
    assert len(api_calls(slack_server, "chat.postMessage")) == 6


def test_no_bot_token_fails_the_delivery(
    settings, slack_target, project, django_capture_on_commit_callbacks
):
    from apps.notifications.services import dispatch

    settings.SLACK_BOT_TOKEN = ""
    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = dispatch(
            event="build.failed", obj=RunFactory(project=project, status="failed")
        )
    delivery = delivery_send(delivery_id=delivery.pk)
    assert (delivery.status, delivery.error) == ("failed", "SLACK_BOT_TOKEN is not set.")


def test_slacks_own_try_later_is_retried(
    slack_server, slack_target, request_promotion, release, production
):
    slack_server.codes = [{"ok": False, "error": "ratelimited"}]  # an HTTP 200 answer
    request_promotion(release, production)
    assert len(api_calls(slack_server, "chat.postMessage")) == 2
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
