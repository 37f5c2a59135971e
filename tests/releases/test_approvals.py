"""The approval rules, through the same service the browser, the API and Slack use."""

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from apps.core.exceptions import ConflictError, PermissionDeniedError, ServiceError
from apps.core.models import AuditEvent
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.services import (
    promotion_approve,
    promotion_expire_due,
    promotion_reject,
    promotion_request,
    promotion_transition,
    release_block,
    release_create,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


@pytest.fixture
def release(project, admin_user):
    return release_create(project=project, version="v1", commit_sha="abc1234", actor=admin_user)


def test_two_approvals_needed_one_is_not_enough(production, release, member, admin_user):
    production.required_approvals = 2
    production.save()
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    promotion = promotion_approve(promotion=promotion, user=member("approver", "a1"))
    assert promotion.status == PromotionStatus.PENDING
    assert not production.deployments.exists()  # one approval does not deploy
    promotion = promotion_approve(promotion=promotion, user=member("admin", "a2"))
    # Approved → its deployment is requested in the same transaction.
    assert promotion.status == PromotionStatus.DEPLOYING
    deployment = production.deployments.get()
    assert promotion.deployment == deployment and deployment.release == release
    assert deployment.status == DeploymentStatus.PENDING


def test_developer_and_viewer_cannot_approve(production, release, member, admin_user):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    for role in ("viewer", "developer"):
        with pytest.raises(PermissionDeniedError):
            promotion_approve(promotion=promotion, user=member(role))
    assert promotion.approvals.count() == 0


def test_admin_only_environment(production, release, member, admin_user):
    production.approver_role = "admin"
    production.save()
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    with pytest.raises(PermissionDeniedError):
        promotion_approve(promotion=promotion, user=member("approver"))


def test_commit_author_cannot_approve_unless_allowed(
    project, production, member, admin_user, django_capture_on_commit_callbacks
):
    from apps.pipelines.commits import Commit
    from apps.pipelines.services import run_create

    author = member("approver", "author")
    with django_capture_on_commit_callbacks(execute=False):
        run = run_create(
            project=project,
            actor=admin_user,
            commit=Commit(author_email=author.email),
            jobs=[{"name": "t", "script": ["true"]}],
        )
    release = release_create(
        project=project, version="v9", commit_sha="abc1234", actor=admin_user, pipeline_run=run
    )
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    with pytest.raises(PermissionDeniedError, match="wrote this commit"):
        promotion_approve(promotion=promotion, user=author)
    production.allow_self_approval = True
    production.save()
    promotion = promotion_approve(promotion=promotion, user=author)
    assert promotion.status == PromotionStatus.DEPLOYING


def test_newer_release_supersedes_and_superseded_cannot_be_approved(
    project, production, release, member, admin_user
):
    old = promotion_request(release=release, environment=production, actor=admin_user)
    newer = release_create(project=project, version="v2", commit_sha="def5678", actor=admin_user)
    promotion_request(release=newer, environment=production, actor=admin_user)
    old.refresh_from_db()
    assert old.status == PromotionStatus.SUPERSEDED
    with pytest.raises(ConflictError):
        promotion_approve(promotion=old, user=member("approver"))


def test_expired_promotion_cannot_be_approved(production, release, member, admin_user):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    type(promotion).objects.filter(pk=promotion.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(ConflictError, match="expired"):
        promotion_approve(promotion=promotion, user=member("approver"))
    assert promotion_expire_due() == 1
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.EXPIRED


def test_blocked_release_rejects_pending_and_cannot_be_promoted(
    production, release, member, admin_user
):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    with pytest.raises(ServiceError):
        release_block(release=release, actor=admin_user, reason="  ")
    release_block(release=release, actor=admin_user, reason="data leak in v1")
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.REJECTED
    with pytest.raises(ConflictError, match="blocked"):
        promotion_request(release=release, environment=production, actor=admin_user)


def test_rejection_ends_the_request(production, release, member, admin_user):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    promotion = promotion_reject(
        promotion=promotion, user=member("approver"), comment="metrics worse"
    )
    assert promotion.status == PromotionStatus.REJECTED


def test_freeze_window_is_active_inside_its_duration(production, admin_user):
    from datetime import datetime

    from apps.projects.services import freeze_window_add

    freeze_window_add(
        environment=production,
        cron="0 17 * * 5",
        duration=timedelta(hours=63),
        actor=admin_user,
        reason="weekend",
    )
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # a Friday
    tuesday = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert production.active_freeze(friday_evening) is not None
    assert production.active_freeze(tuesday) is None
    with pytest.raises(Exception, match="cron"):
        freeze_window_add(
            environment=production, cron="not cron", duration=timedelta(hours=1), actor=admin_user
        )


def test_the_api_refuses_what_the_rules_refuse(project, production, release, member, api):
    """Through the API: viewer / developer 403, the requester 403, the same approver twice
    409 — and none of it records an approval or starts a deploy."""
    requester = member("approver", "requester")
    promotion = promotion_request(release=release, environment=production, actor=requester)
    production.required_approvals = 2
    production.save()
    promotion.required_approvals = 2
    promotion.save()
    url = f"/api/v1/promotions/{promotion.pk}/approve/"
    for role in ("viewer", "developer"):
        response = api(member(role)).post(url, {"comment": "lgtm"})
        assert response.status_code == 403, response.content
    response = api(requester).post(url, {})
    assert response.status_code == 403
    assert "requested this promotion" in response.json()["detail"]
    assert promotion.approvals.count() == 0
    lead = api(member("approver", "lead"))
    assert lead.post(url, {"comment": "first"}).status_code == 200
    response = lead.post(url, {"comment": "again"})
    assert response.status_code == 409
    assert "already decided" in response.json()["detail"]
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING  # 1 of 2: no deploy
    assert promotion.approvals.get().channel == "api"
    assert not production.deployments.exists()


# --------------------------------------------------------------------------- a rejection says why


@pytest.mark.parametrize("comment", ["", "   \n"])
def test_a_rejection_needs_a_comment(production, release, member, admin_user, comment):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    with pytest.raises(ServiceError) as refused:
        promotion_reject(promotion=promotion, user=member("approver"), comment=comment)
    assert refused.value.message == "A rejection needs a comment: the reason is the audit trail."
    assert refused.value.status_code == 400
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING and not promotion.approvals.exists()
    assert not AuditEvent.objects.filter(action="promotion.reject").exists()


def test_an_approval_needs_no_comment(production, release, member, admin_user):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    promotion = promotion_approve(promotion=promotion, user=member("approver"))
    assert promotion.status == PromotionStatus.DEPLOYING
    assert promotion.approvals.get().comment == ""


def test_the_api_refuses_a_rejection_without_a_comment(
    production, release, member, admin_user, api
):
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    lead = api(member("approver", "lead"))
    url = f"/api/v1/promotions/{promotion.pk}/reject/"
    response = lead.post(url, {"comment": " "})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "A rejection needs a comment: the reason is the audit trail."
    )
    assert not promotion.approvals.exists()
    response = lead.post(url, {"comment": "AUC dropped on the holdout"})
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    approval = promotion.approvals.get()
    assert (approval.decision, approval.comment) == ("reject", "AUC dropped on the holdout")
    assert AuditEvent.objects.get(action="promotion.reject").reason == approval.comment


def test_the_reject_button_without_a_comment_shows_why_and_records_nothing(
    client, project, production, release, member, admin_user
):
    from django.urls import reverse

    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    client.force_login(member("approver", "lead"))
    url = reverse("releases:decide", args=[project.slug, promotion.pk])
    response = client.post(url, {"decision": "reject", "comment": ""})
    assert response.status_code == 400
    page = response.content.decode()
    assert "A rejection needs a comment: the reason is the audit trail." in page
    assert 'value="reject"' in page  # the form again, to say why
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING and not promotion.approvals.exists()

    response = client.post(url, {"decision": "reject", "comment": "drift on the new data"})
    assert response.status_code == 302
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.REJECTED
    assert promotion.approvals.get().comment == "drift on the new data"


# --------------------------------------------------------------------------- expiry


def test_expiry_leaves_a_promotion_decided_at_the_same_moment(
    project, production, release, member, admin_user
):
    """The expiry reads the due promotions, then moves them one by one; one decided in between
    (another process approving it just before its deadline) keeps its decision, and the others
    still expire."""
    from django.db.models.signals import post_save

    staging = project.environments.get(name="staging")
    staging.auto_deploy, staging.required_approvals = False, 1
    staging.save()
    first = promotion_request(release=release, environment=staging, actor=admin_user)
    second = promotion_request(release=release, environment=production, actor=admin_user)
    last = release_create(project=project, version="v3", commit_sha="fff", actor=admin_user)
    dev = project.environments.get(name="dev")
    third = promotion_request(release=last, environment=dev, actor=admin_user)
    now = timezone.now()
    for promotion, ago in ((first, 3), (second, 2), (third, 1)):
        type(promotion).objects.filter(pk=promotion.pk).update(
            expires_at=now - timedelta(minutes=ago)
        )
    lead = member("approver", "lead")

    decided = []

    def decide_second_meanwhile(sender, instance, created, **kwargs):
        # Once the expiry has moved its first promotion (the newest: third), the second is
        # decided by someone else, through the same state machine an approval goes through,
        # after the expiry has read it as pending.
        if instance.action != "promotion.expired" or decided:
            return
        assert instance.object_id == str(third.pk)
        decided.append(
            promotion_transition(
                promotion=second, to=PromotionStatus.APPROVED, actor=lead, reason="1 of 1"
            )
        )

    post_save.connect(decide_second_meanwhile, sender=AuditEvent)
    try:
        assert promotion_expire_due() == 2
    finally:
        post_save.disconnect(decide_second_meanwhile, sender=AuditEvent)
    statuses = {p.pk: p.status for p in type(first).objects.all()}
    assert statuses == {
        first.pk: PromotionStatus.EXPIRED,
        second.pk: PromotionStatus.APPROVED,
        third.pk: PromotionStatus.EXPIRED,
    }
