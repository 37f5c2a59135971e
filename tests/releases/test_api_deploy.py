"""API: roll an environment back, deploy a release, and what serves each environment.

The rollback / deploy calls go through apps.releases.services.deployment_rollback /
deployment_request (the deploy services); the role and state refusals are theirs.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.projects.services import freeze_window_add, project_create
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.releases.services import release_create
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(project):
    return project.environments.get(name="production")


@pytest.fixture
def dev(project):
    return project.environments.get(name="dev")


def _release(project, version, actor):
    return release_create(project=project, version=version, commit_sha="abc1234", actor=actor)


@pytest.fixture
def served(project, production, admin_user):
    """r1 served production, r2 serves it now."""
    r1, r2 = _release(project, "r1-old", admin_user), _release(project, "r2-new", admin_user)
    for minutes, release in ((60, r1), (10, r2)):
        DeploymentFactory(
            release=release,
            environment=production,
            status=DeploymentStatus.SUCCEEDED,
            finished_at=timezone.now() - timedelta(minutes=minutes),
        )
    return {"r1": r1, "r2": r2}


def _rollback(api, user, environment, body):
    return api(user).post(
        reverse("environment-rollback", args=[environment.pk]), body, format="json"
    )


def _deploy(api, user, release, body):
    return api(user).post(reverse("release-deploy", args=[release.pk]), body, format="json")


def test_environment_shows_what_serves_now(api, production, dev, served, member):
    client = api(member("viewer"))
    body = client.get(reverse("environment-detail", args=[production.pk])).json()
    assert body["serving"]["release"] == "r2-new"
    assert body["serving"]["release_id"] == served["r2"].pk
    assert body["serving"]["status"] == "succeeded"
    listed = {
        e["name"]: e["serving"]
        for e in client.get(
            reverse("environment-list"), {"project": production.project.slug}
        ).json()["results"]
    }
    assert listed["production"]["release"] == "r2-new"
    assert listed["dev"] is None


def test_environment_update_answers_with_serving(api, production, served, admin_user):
    response = api(admin_user).patch(
        reverse("environment-detail", args=[production.pk]),
        {"service_url": "https://churn.example.com"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["serving"]["release"] == "r2-new"


@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_viewer_and_developer_cannot_roll_back_production(api, production, served, member, role):
    before = Deployment.objects.count()
    response = _rollback(api, member(role), production, {"release": served["r1"].pk})
    assert response.status_code == 403
    assert Deployment.objects.count() == before


def test_approver_rolls_back(api, production, served, member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = _rollback(
            api, member("approver"), production, {"release": served["r1"].pk, "reason": "5xx"}
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["release"] == "r1-old" and body["is_rollback"] is True
    assert body["status"] == "pending" and body["environment"] == "production"
    assert Deployment.objects.get(pk=body["id"]).details.get("reason") == "5xx"


def test_rollback_to_what_serves_or_while_frozen_is_a_conflict(
    api, production, served, member, admin_user
):
    approver = member("approver")
    before = Deployment.objects.count()
    response = _rollback(api, approver, production, {"release": served["r2"].pk})
    assert response.status_code == 409
    assert "serves production now" in response.json()["detail"]
    freeze_window_add(
        environment=production,
        cron="* * * * *",
        duration=timedelta(hours=1),
        actor=admin_user,
        reason="release freeze",
    )
    response = _rollback(api, approver, production, {"release": served["r1"].pk})
    assert response.status_code == 409
    assert response.json()["code"] == "frozen"
    assert Deployment.objects.count() == before


def test_rollback_to_another_projects_release_is_invalid(
    api, production, served, member, admin_user
):
    foreign = _release(project_create(name="Other", actor=admin_user), "r9", admin_user)
    response = _rollback(api, member("approver"), production, {"release": foreign.pk})
    assert response.status_code == 400
    assert "release" in response.json()


def test_deploy_roles_follow_the_environment(
    api, project, production, dev, member, admin_user, django_capture_on_commit_callbacks
):
    release = _release(project, "r3", admin_user)
    viewer, developer, approver = member("viewer"), member("developer"), member("approver")

    assert _deploy(api, viewer, release, {"environment": dev.pk}).status_code == 403
    # Production needs approval: a developer may not deploy there, an approver must promote.
    assert _deploy(api, developer, release, {"environment": production.pk}).status_code == 403
    response = _deploy(api, approver, release, {"environment": production.pk})
    assert response.status_code == 409
    assert response.json()["code"] == "approval_required"
    assert not Deployment.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        response = _deploy(api, developer, release, {"environment": dev.pk, "reason": "try"})
    assert response.status_code == 202, response.json()
    assert response.json()["environment"] == "dev" and response.json()["release"] == "r3"
    assert Deployment.objects.get().triggered_by == developer


def test_deploy_to_another_projects_environment_is_invalid(api, project, admin_user):
    release = _release(project, "r3", admin_user)
    foreign = project_create(name="Other", actor=admin_user).environments.get(name="dev")
    response = _deploy(api, admin_user, release, {"environment": foreign.pk})
    assert response.status_code == 400
    assert not Deployment.objects.exists()


def test_actions_are_in_the_openapi_schema(client):
    paths = client.get(reverse("schema"), {"format": "json"}).json()["paths"]
    rollback = paths["/api/v1/environments/{id}/rollback/"]["post"]
    deploy = paths["/api/v1/releases/{id}/deploy/"]["post"]
    for operation in (rollback, deploy):
        assert {"202", "400", "403", "409"} <= set(operation["responses"])
    assert rollback["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RollbackRequest"
    )
