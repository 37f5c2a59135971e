"""The dashboard, the approvals inbox and the build history (each with the approvals badge of
the nav) take the same number of queries for 2 projects as for 8: nothing is read once per
project, environment, promotion or model (bench/load.py measures them under load)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.projects.services import membership_set, project_create
from apps.releases.services import promotion_request, release_create
from apps.training.models import ModelAlias
from apps.training.services import model_version_register
from tests.factories import DeploymentFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = ("/", "/approvals/", "/runs/")


def add_projects(count: int, start: int, admin, lead) -> None:
    """Projects where ``lead`` approves, each with a release serving in staging, a model
    alias there, a promotion waiting in production and a few runs."""
    for i in range(start, start + count):
        project = project_create(name=f"Queries {i}", actor=admin)
        membership_set(project=project, user=lead, role="approver", actor=admin)
        staging = project.environments.get(name="staging")
        production = project.environments.get(name="production")
        serving = release_create(project=project, version="v1", commit_sha="a" * 40, actor=admin)
        DeploymentFactory(
            release=serving, environment=staging, status="succeeded", finished_at=timezone.now()
        )
        version = model_version_register(
            project=project, run=None, name="churn", artifact_digest=f"sha256:{i}", metrics={}
        )
        ModelAlias.objects.create(
            project=project, model_name="churn", environment=staging, model_version=version
        )
        waiting = release_create(project=project, version="v2", commit_sha="b" * 40, actor=admin)
        promotion_request(release=waiting, environment=production, actor=admin)
        for number in range(1, 4):
            RunFactory(project=project, number=number, status="succeeded")


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


def test_pages_read_nothing_per_project(client, admin_user):
    lead = UserFactory(username="queries-lead")
    add_projects(2, 0, admin_user, lead)
    client.force_login(lead)
    for url in PAGES:
        client.get(url)  # warm: the session, the content types
    few = {url: queries(client, url) for url in PAGES}
    add_projects(6, 2, admin_user, lead)
    many = {url: queries(client, url) for url in PAGES}
    assert many == few
    body = client.get("/approvals/").content.decode()
    assert body.count("Queries ") >= 8  # all eight waiting promotions are listed
    assert max(many.values()) <= 15, many
