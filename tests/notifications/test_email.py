"""Email through Django's mail backend (locmem in tests): approval requests reach the people
who may approve; other events reach the target's addresses."""

import pytest
from django.core import mail

from apps.notifications.models import NotificationDelivery, NotificationTarget
from apps.releases import signals as release_signals
from apps.releases.models import Deployment, Promotion

from .conftest import SITE

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_target(project):
    return NotificationTarget.objects.create(
        project=project, kind="email", destination="ops@example.com, oncall@example.com"
    )


@pytest.fixture
def team(member):
    return {
        role: member(role, f"{role}-1") for role in ("viewer", "developer", "approver", "admin")
    }


def _to(messages) -> set[str]:
    return {address for m in messages for address in m.to}


def test_a_pending_promotion_mails_the_approvers_and_the_target(
    email_target, team, request_promotion, release, production
):
    promotion = request_promotion(release, production)
    # root asked for it: it may not approve its own request, so it is not asked to.
    assert _to(mail.outbox) == {
        team["approver"].email,
        team["admin"].email,
        "ops@example.com",
        "oncall@example.com",
    }
    assert all(len(m.to) == 1 for m in mail.outbox)  # nobody sees the others' addresses
    message = mail.outbox[0]
    assert message.subject == "[churn-model] Approval needed: v3 → production"
    assert SITE + promotion.get_absolute_url() in message.body
    assert "Approve or reject" in message.body
    html, mime = message.alternatives[0]
    assert mime == "text/html"
    assert f'href="{SITE}{promotion.get_absolute_url()}"' in html
    delivery = NotificationDelivery.objects.get(event="promotion.pending")
    assert delivery.status == "sent"
    assert len(delivery.recipients) == 4


def test_whoever_triggered_the_run_is_not_asked_to_approve_its_release(
    email_target, team, member, request_promotion, project, production, admin_user
):
    from apps.releases.services import release_create
    from tests.factories import RunFactory

    trigger = member("approver", "approver-2")
    run = RunFactory(project=project, created_by=trigger, commit_author_email="")
    release = release_create(
        project=project, version="v4", commit_sha="abc1234d", actor=admin_user, pipeline_run=run
    )
    request_promotion(release, production)
    assert _to(mail.outbox) == {
        team["approver"].email,
        team["admin"].email,
        "ops@example.com",
        "oncall@example.com",
    }


def test_an_admin_only_environment_mails_admins_only(
    email_target, team, request_promotion, release, production
):
    production.approver_role = "admin"
    production.save()
    request_promotion(release, production)
    assert _to(mail.outbox) == {team["admin"].email, "ops@example.com", "oncall@example.com"}


def test_a_reminder_mails_the_approvers_again(
    email_target, team, request_promotion, release, production, after_commit
):
    promotion = request_promotion(release, production)
    mail.outbox.clear()
    with after_commit():
        release_signals.promotion_reminder.send(sender=Promotion, promotion=promotion)
    assert team["approver"].email in _to(mail.outbox)
    assert mail.outbox[0].subject.startswith("[churn-model] Reminder: approval needed")


def test_other_events_go_to_the_target_addresses_only(
    email_target, team, release, production, after_commit
):
    deployment = Deployment.objects.create(release=release, environment=production, status="failed")
    with after_commit():
        release_signals.deployment_status_changed.send(
            sender=Deployment, deployment=deployment, from_status="running", to_status="failed"
        )
    assert _to(mail.outbox) == {"ops@example.com", "oncall@example.com"}
    assert mail.outbox[0].subject == "[churn-model] Deploy of v3 to production failed"


def test_no_mail_per_click(
    email_target, team, request_promotion, release, production, decide_in_browser
):
    production.required_approvals = 2
    production.save()
    promotion = request_promotion(release, production)
    mail.outbox.clear()
    decide_in_browser(promotion, team["approver"])
    assert mail.outbox == []
    assert not NotificationDelivery.objects.filter(event="approval.recorded").exists()


def test_an_empty_target_still_reaches_the_approvers(
    project, team, request_promotion, release, production
):
    NotificationTarget.objects.create(project=project, kind="email", destination="")
    request_promotion(release, production)
    assert _to(mail.outbox) == {team["approver"].email, team["admin"].email}


def test_a_mail_server_failure_is_retried_without_mailing_anyone_twice(
    email_target, team, request_promotion, release, production, monkeypatch
):
    import smtplib

    from django.core.mail import EmailMultiAlternatives

    real_send = EmailMultiAlternatives.send
    failures = iter([False, True])  # the 2nd message fails once, then the server is back

    def flaky_send(self, *args, **kwargs):
        if next(failures, False):
            raise smtplib.SMTPServerDisconnected("connection lost")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(EmailMultiAlternatives, "send", flaky_send)
    request_promotion(release, production)
    addresses = [m.to[0] for m in mail.outbox]
    assert sorted(addresses) == sorted(set(addresses))  # nobody twice
    assert len(addresses) == 4
    delivery = NotificationDelivery.objects.get(event="promotion.pending")
    assert (delivery.status, delivery.attempts) == ("sent", 2)
