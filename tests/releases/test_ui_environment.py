"""The environment page (what serves, freeze, history, timeline), rollback with confirmation,
and the Deploy / Request promotion actions on the release page.

Tests marked "needs the deploy services" call apps.releases.services.deployment_request /
deployment_rollback through the views; they were written alongside those services.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.projects.services import freeze_window_add
from apps.releases.choices import DeploymentStatus, PromotionStatus
from apps.releases.models import Deployment, Promotion
from apps.releases.services import promotion_reject, promotion_request, release_create
from tests.factories import DeploymentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(project):
    env = project.environments.get(name="production")
    env.service_url = "https://churn.example.com"
    env.save()
    return env


@pytest.fixture
def dev(project):
    return project.environments.get(name="dev")


def _release(project, version, actor):
    return release_create(project=project, version=version, commit_sha="abc1234", actor=actor)


def _deployed(environment, release, *, minutes_ago, user=None, **fields):
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    return DeploymentFactory(
        release=release,
        environment=environment,
        status=fields.pop("status", DeploymentStatus.SUCCEEDED),
        triggered_by=user,
        started_at=finished - timedelta(seconds=42),
        finished_at=finished,
        **fields,
    )


@pytest.fixture
def history(project, production, admin_user):
    """r12 served, then r14 replaced it and serves now; r13 failed in between."""
    r12 = _release(project, "r12-abc", admin_user)
    r13 = _release(project, "r13-bad", admin_user)
    r14 = _release(project, "r14-def", admin_user)
    _deployed(production, r12, minutes_ago=90, user=admin_user)
    _deployed(
        production,
        r13,
        minutes_ago=60,
        status=DeploymentStatus.FAILED,
        error_message="health check /healthz never answered 2xx",
    )
    _deployed(production, r14, minutes_ago=30, user=admin_user)
    return {"r12": r12, "r13": r13, "r14": r14}


def _get(client, user, url, status=200):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == status
    return response.content.decode()


def _rollback_url(environment, release):
    return reverse(
        "releases:rollback",
        kwargs={
            "slug": environment.project.slug,
            "name": environment.name,
            "key": release.version,
        },
    )


# --------------------------------------------------------------------------- environment page


def test_environment_url_name_is_kept(production):
    assert production.get_absolute_url() == f"/p/{production.project.slug}/environments/production/"
    assert reverse("projects:environment", args=[production.project.slug, "production"]) == (
        production.get_absolute_url()
    )


def test_environment_page_shows_what_serves_history_and_timeline(
    client, production, history, member, admin_user
):
    promotion = promotion_request(release=history["r14"], environment=production, actor=admin_user)
    promotion_reject(promotion=promotion, user=member("approver", "lead"), comment="not yet")
    page = _get(client, member("viewer"), production.get_absolute_url())

    serving = page[page.index("Now serving") : page.index("Settings")]
    assert "r14-def" in serving and "r12-abc" not in serving
    assert '<a href="https://churn.example.com"' in page
    assert "Local process" in page  # the deployer
    assert "health check /healthz never answered 2xx" in page  # history, with its error
    assert "42.0 s" in page  # duration
    assert "r13-bad" in page and "r12-abc" in page
    # Timeline: the rejection with its comment, newest first, before the old deploys.
    timeline = page[page.index("<h2>Timeline</h2>") :]
    assert "Rejected r14-def (Browser)" in timeline and "not yet" in timeline
    assert timeline.index("Rejected r14-def") < timeline.index("r12-abc succeeded")
    # A viewer sees no rollback buttons.
    assert "Roll back to" not in page


def test_environment_page_shows_an_active_freeze(client, production, admin_user):
    freeze_window_add(
        environment=production,
        cron="* * * * *",  # opened this minute, lasts an hour
        duration=timedelta(hours=1),
        actor=admin_user,
        reason="Black Friday",
    )
    page = _get(client, admin_user, production.get_absolute_url())
    assert "Frozen until" in page and "Black Friday" in page
    assert "Deploys are held until then." in page
    assert "Freeze window added" in page  # the timeline has its audit event


def test_environment_history_is_paginated(client, project, production, admin_user):
    release = _release(project, "r1", admin_user)
    for minutes in range(30):
        _deployed(production, release, minutes_ago=minutes + 1)
    page = _get(client, admin_user, production.get_absolute_url())
    assert "Page 1 of 2" in page
    page = _get(client, admin_user, production.get_absolute_url() + "?page=2")
    assert "Page 2 of 2" in page


def test_environment_page_is_not_found_for_a_non_member(client, production):
    _get(client, UserFactory(username="stranger"), production.get_absolute_url(), status=404)


def test_rollback_buttons_for_previous_succeeded_releases(client, production, history, member):
    page = _get(client, member("approver"), production.get_absolute_url())
    assert "Roll back to r12-abc" in page
    assert "Roll back to r14-def" not in page  # it serves now
    assert "Roll back to r13-bad" not in page  # it never served


def test_rollback_asks_for_confirmation(client, production, history, member):
    page = _get(client, member("approver"), _rollback_url(production, history["r12"]))
    assert 'Redeploy <strong class="mono">r12-abc</strong> to <strong>production</strong>?' in (
        page
    )
    assert 'It replaces <span class="mono">r14-def</span>.' in page
    assert 'name="reason"' in page


def test_viewer_cannot_roll_back(client, production, history, member):
    client.force_login(member("viewer"))
    before = Deployment.objects.count()
    response = client.post(_rollback_url(production, history["r12"]), {"reason": "bad"})
    assert response.status_code == 403
    assert Deployment.objects.count() == before


# Needs the deploy services (deployment_request / deployment_rollback).
def test_developer_cannot_roll_back_production(client, production, history, member):
    client.force_login(member("developer"))
    before = Deployment.objects.count()
    response = client.post(_rollback_url(production, history["r12"]), {"reason": "bad"})
    assert response.status_code == 403
    assert "Only members with the approver role may deploy to production." in (
        response.content.decode()
    )
    assert Deployment.objects.count() == before


# Needs the deploy services.
def test_approver_rolls_back_with_a_reason(
    client, production, history, member, django_capture_on_commit_callbacks
):
    lead = member("approver", "lead")
    client.force_login(lead)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            _rollback_url(production, history["r12"]), {"reason": "r14 drops requests"}
        )
    assert response.status_code == 302
    deployment = Deployment.objects.latest("pk")
    assert deployment.release == history["r12"]
    assert response["Location"] == deployment.get_absolute_url()  # follows it live
    assert deployment.is_rollback and deployment.triggered_by == lead
    assert deployment.status == DeploymentStatus.PENDING
    assert deployment.details.get("reason") == "r14 drops requests"


# Needs the deploy services.
def test_rollback_refused_while_frozen_changes_nothing(
    client, production, history, member, admin_user
):
    freeze_window_add(
        environment=production,
        cron="* * * * *",
        duration=timedelta(hours=1),
        actor=admin_user,
        reason="Black Friday",
    )
    client.force_login(member("approver"))
    before = Deployment.objects.count()
    response = client.post(_rollback_url(production, history["r12"]), {"reason": "bad"})
    assert response.status_code == 409
    assert "production is frozen (Black Friday)" in response.content.decode()
    assert Deployment.objects.count() == before


# --------------------------------------------------------------------------- release page


def test_release_page_offers_deploy_or_request_promotion(client, project, member, admin_user):
    release = _release(project, "r20", admin_user)
    page = _get(client, member("developer"), release.get_absolute_url())
    assert "Deploy to dev" in page and "Deploy to staging" in page
    assert "Request promotion to production" in page
    assert "Deploy to production" not in page
    page = _get(client, member("viewer"), release.get_absolute_url())
    assert "Deploy to dev" not in page and "Request promotion" not in page


def test_viewer_cannot_deploy_or_request_promotion(client, project, dev, member, admin_user):
    release = _release(project, "r20", admin_user)
    client.force_login(member("viewer"))
    production = project.environments.get(name="production")
    deploy = reverse("releases:deploy", args=[project.slug, release.version])
    promote = reverse("releases:promote", args=[project.slug, release.version])
    assert client.post(deploy, {"environment": dev.pk}).status_code == 403
    assert client.post(promote, {"environment": production.pk}).status_code == 403
    assert not Deployment.objects.exists() and not Promotion.objects.exists()


def test_request_promotion_from_the_release_page(client, project, member, admin_user):
    release = _release(project, "r20", admin_user)
    production = project.environments.get(name="production")
    developer = member("developer")
    client.force_login(developer)
    response = client.post(
        reverse("releases:promote", args=[project.slug, release.version]),
        {"environment": production.pk},
    )
    promotion = Promotion.objects.get()
    assert response["Location"] == promotion.get_absolute_url()
    assert promotion.status == PromotionStatus.PENDING and promotion.requested_by == developer


# Needs the deploy services.
def test_developer_deploys_to_dev_but_not_to_production(
    client, project, dev, member, admin_user, django_capture_on_commit_callbacks
):
    release = _release(project, "r20", admin_user)
    production = project.environments.get(name="production")
    deploy = reverse("releases:deploy", args=[project.slug, release.version])
    client.force_login(member("developer"))

    response = client.post(deploy, {"environment": production.pk, "reason": "hotfix"})
    assert response.status_code == 302
    assert not Deployment.objects.exists()
    page = client.get(response["Location"]).content.decode()
    assert "Only members with the approver role may deploy to production." in page

    with django_capture_on_commit_callbacks(execute=False):
        client.post(deploy, {"environment": dev.pk, "reason": "try it"})
    deployment = Deployment.objects.get()
    assert deployment.environment == dev and deployment.release == release


def test_deploy_to_another_projects_environment_is_not_found(client, project, member, admin_user):
    from apps.projects.services import project_create

    release = _release(project, "r20", admin_user)
    other = project_create(name="Other", actor=admin_user).environments.get(name="dev")
    client.force_login(admin_user)
    response = client.post(
        reverse("releases:deploy", args=[project.slug, release.version]), {"environment": other.pk}
    )
    assert response.status_code == 404
    assert not Deployment.objects.exists()


def test_a_release_page_is_named_by_its_version_and_old_id_links_redirect(
    client, project, member, admin_user
):
    release = _release(project, "r21-0a1b2c3d", admin_user)
    assert release.get_absolute_url() == f"/p/{project.slug}/releases/r21-0a1b2c3d/"
    viewer = member("viewer")
    page = _get(client, viewer, release.get_absolute_url())
    assert "r21-0a1b2c3d" in page
    client.force_login(viewer)
    old = client.get(f"/p/{project.slug}/releases/{release.pk}/")
    assert old.status_code == 301 and old["Location"] == release.get_absolute_url()
    assert client.get(f"/p/{project.slug}/releases/r99-nothing/").status_code == 404
    # A version that looks like an id is the version, not the other release's id.
    numeric = _release(project, str(release.pk), admin_user)
    assert client.get(numeric.get_absolute_url()).context["release"] == numeric
    # The environment page links rollbacks by version.
    assert _rollback_url(project.environments.get(name="dev"), release).endswith(
        "/rollback/r21-0a1b2c3d/"
    )
