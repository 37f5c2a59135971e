"""Four eyes: whoever triggered the run that built a release may not approve its promotion."""

import pytest

from apps.core.exceptions import PermissionDeniedError
from apps.core.models import AuditEvent
from apps.releases.choices import PromotionStatus
from apps.releases.services import (
    promotion_approve,
    promotion_decision_blocker,
    promotion_request,
    release_create,
)

pytestmark = pytest.mark.django_db


def _release_built_by(project, user, django_capture_on_commit_callbacks):
    from apps.pipelines.services import run_create

    with django_capture_on_commit_callbacks(execute=False):
        run = run_create(project=project, actor=user, jobs=[{"name": "t", "script": ["true"]}])
    assert run.created_by_id == user.pk
    return release_create(
        project=project, version="v7", commit_sha="abc1234", actor=user, pipeline_run=run
    )


def test_run_trigger_may_not_approve(
    project, member, admin_user, django_capture_on_commit_callbacks
):
    production = project.environments.get(name="production")
    trigger = member("approver", "trigger")
    release = _release_built_by(project, trigger, django_capture_on_commit_callbacks)
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    audit_before = AuditEvent.objects.count()

    with pytest.raises(PermissionDeniedError, match="triggered the run"):
        promotion_approve(promotion=promotion, user=trigger)

    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING
    assert promotion.approvals.count() == 0
    assert not production.deployments.exists()
    assert AuditEvent.objects.count() == audit_before
    # The page and the inbox show the same reason before anyone clicks.
    assert "triggered the run" in promotion_decision_blocker(promotion=promotion, user=trigger)
    # Someone else may.
    other = member("approver", "other")
    assert promotion_decision_blocker(promotion=promotion, user=other) is None


def test_opt_out_covers_the_run_trigger(
    project, member, admin_user, django_capture_on_commit_callbacks
):
    production = project.environments.get(name="production")
    production.allow_self_approval = True
    production.save()
    trigger = member("approver", "trigger")
    release = _release_built_by(project, trigger, django_capture_on_commit_callbacks)
    # Requester, run trigger (and here also the only approver): all one person.
    promotion = promotion_request(release=release, environment=production, actor=trigger)
    promotion = promotion_approve(promotion=promotion, user=trigger)
    assert promotion.status == PromotionStatus.DEPLOYING


def test_api_refuses_the_run_trigger_with_403(
    project, member, admin_user, api, django_capture_on_commit_callbacks
):
    production = project.environments.get(name="production")
    trigger = member("approver", "trigger")
    release = _release_built_by(project, trigger, django_capture_on_commit_callbacks)
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    response = api(trigger).post(f"/api/v1/promotions/{promotion.pk}/approve/", {}, format="json")
    assert response.status_code == 403, response.content
    assert "triggered the run" in response.json()["detail"]
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING and promotion.approvals.count() == 0
