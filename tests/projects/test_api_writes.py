"""Writes through the projects API go through services: saved and audited together, and a
refused write changes nothing."""

import pytest
from django.urls import reverse

from apps.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_project_update_is_saved_and_audited(api, project, admin_user):
    response = api(admin_user).patch(
        f"/api/v1/projects/{project.slug}/", {"description": "scores loans"}, format="json"
    )
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.description == "scores loans"
    event = AuditEvent.objects.get(action="project.updated")
    assert event.data == {"fields": ["description"]}
    assert event.project_id == project.pk


def test_environment_cannot_move_to_another_project(api, project, admin_user):
    from apps.projects.services import project_create

    other = project_create(name="Other", actor=admin_user, with_default_environments=False)
    staging = project.environments.get(name="staging")
    response = api(admin_user).patch(
        f"/api/v1/environments/{staging.pk}/",
        {"project": other.slug, "required_approvals": 3},
        format="json",
    )
    assert response.status_code == 403, response.content
    staging.refresh_from_db()
    assert (staging.project_id, staging.required_approvals) == (project.pk, 0)
    assert not AuditEvent.objects.filter(action="environment.updated").exists()


def test_environment_create_is_audited_and_validated(api, project, admin_user):
    client = api(admin_user)
    response = client.post(
        "/api/v1/environments/",
        {"project": project.slug, "name": "canary", "order": 5},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert AuditEvent.objects.filter(action="environment.created", object_repr__contains="canary")
    again = client.post(
        "/api/v1/environments/",
        {"project": project.slug, "name": "canary", "order": 6},
        format="json",
    )
    assert again.status_code == 400
    assert project.environments.filter(name="canary").count() == 1


def test_token_revoke_is_audited(client, admin_user):
    from apps.accounts.services import api_token_create

    token, _raw = api_token_create(user=admin_user, name="ci")
    client.force_login(admin_user)
    response = client.post(reverse("token-revoke", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_token.revoked", object_id=str(token.pk)).exists()


def test_a_project_time_zone_is_an_iana_name(api, project, admin_user):
    client = api(admin_user)
    url = f"/api/v1/projects/{project.slug}/"
    response = client.patch(url, {"timezone": "Mars/Olympus_Mons"}, format="json")
    assert response.status_code == 400
    assert response.json()["timezone"] == ["Unknown time zone 'Mars/Olympus_Mons'."]
    project.refresh_from_db()
    assert project.timezone == "UTC"
    response = client.patch(url, {"timezone": "Europe/Paris"}, format="json")
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.timezone == "Europe/Paris"
