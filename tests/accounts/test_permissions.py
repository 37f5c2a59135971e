"""Who may do what: unauthenticated → 401, viewers write nothing, roles gate actions."""

import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from apps.core.models import AuditEvent
from apps.pipelines.services import run_create
from apps.releases.services import promotion_request, release_create
from controlplane.api import router

pytestmark = pytest.mark.django_db

JOBS = [{"name": "unit", "kind": "test", "script": ["true"]}]


@pytest.fixture
def world(project, admin_user, django_capture_on_commit_callbacks):
    """One object of every kind in ``project``."""
    with django_capture_on_commit_callbacks(execute=False):
        run = run_create(project=project, jobs=JOBS, actor=admin_user)
    release = release_create(project=project, version="v1", commit_sha="abc1234", actor=admin_user)
    production = project.environments.get(name="production")
    promotion = promotion_request(release=release, environment=production, actor=admin_user)
    from apps.releases.models import Deployment

    deployment = Deployment.objects.create(release=release, environment=production)
    from apps.webhooks.models import WebhookDelivery

    delivery = WebhookDelivery.objects.create(
        provider="generic",
        project=project,
        delivery_id="d-1",
        event="push",
        status="accepted",
        http_status=202,
        payload={"ref": "refs/heads/main", "commit": "a" * 40},
    )
    from apps.notifications.services import target_create

    target = target_create(
        project=project,
        actor=admin_user,
        kind="webhook",
        name="ops",
        destination="http://127.0.0.1:9/hook",
        secret="a-secret-of-20-chars",
    )
    from apps.training.models import Dataset, DatasetVersion, ModelVersion

    dataset = Dataset.objects.create(project=project, name="features")
    dataset_version = DatasetVersion.objects.create(
        dataset=dataset, version=1, fingerprint="f" * 64, format="csv", path="/nowhere.csv"
    )
    model_version = ModelVersion.objects.create(project=project, name="churn", version=1)
    from apps.projects.services import variable_set

    variable = variable_set(project=project, key="TOKEN", value="theirs", actor=admin_user)
    from apps.monitoring.services.ingest import ingest_token_create

    ingest_token, _raw = ingest_token_create(environment=production, name="svc", actor=admin_user)
    from apps.monitoring.services.alerts import alert_fire, silence_create

    alert = alert_fire(
        rule="dataset_drift",
        labels={},
        severity="warning",
        summary="drift",
        project=project,
        environment=production,
    )
    silence = silence_create(
        project=project,
        matchers=[{"name": "alertname", "op": "=", "value": "dataset_drift"}],
        reason="known",
        ends_at=timezone.now() + timedelta(hours=1),
        actor=admin_user,
    )
    return {
        "variable": variable.pk,
        "project": project.slug,
        "dataset": dataset.pk,
        "dataset-version": dataset_version.pk,
        "model-version": model_version.pk,
        "notification-target": target.pk,
        "notification-delivery": 1,  # read-only: every write is 405 before any lookup
        "environment": production.pk,
        "run": run.pk,
        "job": run.jobs.get().pk,
        "release": release.pk,
        "deployment": deployment.pk,
        "promotion": promotion.pk,
        "webhook-delivery": delivery.pk,
        "ingest-token": ingest_token.pk,
        "alert": alert.pk,
        "silence": silence.pk,
    }


def _snapshot():
    """Row counts and statuses of everything a write could touch."""
    counts = {
        m._meta.label: m.objects.count()
        for m in apps.get_models()
        if m._meta.app_label
        in {
            "projects",
            "pipelines",
            "training",
            "releases",
            "accounts",
            "core",
            "webhooks",
            "notifications",
            "monitoring",
        }
    }
    statuses = {
        m._meta.label: sorted(m.objects.values_list("pk", "status"))
        for m in apps.get_models()
        if any(f.name == "status" for f in m._meta.fields)
    }
    return counts, statuses


def _write_requests(world):
    """Every (method, url) the API offers for writing, filled in with real ids."""
    for _prefix, viewset, basename in router.registry:
        key = basename
        list_url = reverse(f"{basename}-list")
        yield "post", list_url
        lookup = world["project"] if basename == "project" else world[key]
        detail_url = reverse(f"{basename}-detail", args=[lookup])
        for method in ("put", "patch", "delete"):
            yield method, detail_url
        for action in viewset.get_extra_actions():
            if "post" in action.mapping:
                yield "post", reverse(f"{basename}-{action.url_name}", args=[lookup])
    yield "post", reverse("worker-ping")  # staff only: asserted in tests/security


BODIES = {
    "silence": {
        "project": "churn-model",
        "matchers": [{"name": "alertname", "op": "=", "value": "dataset_drift"}],
        "reason": "x",
        "ends_at": "2099-01-01T00:00:00Z",
    },
    "project": {"name": "Another"},
    "environment": {"project": "churn-model", "name": "qa"},
    "run": {"project": "churn-model", "jobs": JOBS},
    "variable": {"project": "churn-model", "key": "TOKEN", "value": "mine"},
    "notification-target": {
        "project": "churn-model",
        "name": "ops hook",
        "kind": "webhook",
        "destination": "http://127.0.0.1:9/hook",
        "secret": "a-secret-of-20-chars",
    },
}


def test_viewer_cannot_write_anything(world, member, api):
    client = api(member("viewer"))
    before = _snapshot()
    tried = 0
    for method, url in _write_requests(world):
        if url == reverse("worker-ping"):
            continue
        basename = next((b for _p, _v, b in router.registry if f"/{_p}/" in url), "")
        body = BODIES.get(basename, {"comment": "x", "reason": "x", "name": "x"})
        response = getattr(client, method)(url, body, format="json")
        tried += 1
        assert response.status_code in (403, 405), (method, url, response.status_code)
    assert tried >= 20
    assert _snapshot() == before


def test_viewer_cannot_write_through_the_ui(world, member, client):
    client.force_login(member("viewer"))
    before = _snapshot()
    from apps.pipelines.models import PipelineRun
    from apps.releases.models import Promotion

    run = PipelineRun.objects.get(pk=world["run"])
    promotion = Promotion.objects.get(pk=world["promotion"])
    client.post(reverse("pipelines:run-cancel", args=[run.project.slug, run.number]))
    client.post(
        reverse("releases:decide", args=[world["project"], promotion.pk]), {"decision": "approve"}
    )
    assert _snapshot() == before


@pytest.mark.parametrize(
    "name", ["project", "environment", "run", "job", "release", "deployment", "promotion"]
)
def test_unauthenticated_api_gets_401(world, api, name):
    client = api()
    assert client.get(reverse(f"{name}-list")).status_code == 401
    response = client.post(reverse(f"{name}-list"), {}, format="json")
    assert response.status_code in (401, 405)
    assert response.status_code == 401 or name not in BODIES


def test_bad_or_revoked_token_gets_401(world, admin_user, api):
    from django.utils import timezone

    from apps.accounts.models import ApiToken

    client = api(admin_user)
    assert client.get(reverse("project-list")).status_code == 200
    ApiToken.objects.update(revoked_at=timezone.now())
    assert client.get(reverse("project-list")).status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer cpt_not-a-token")
    assert client.get(reverse("project-list")).status_code == 401


def test_tokens_are_stored_hashed(admin_user):
    from apps.accounts.models import ApiToken
    from apps.accounts.services import api_token_create

    _token, raw = api_token_create(user=admin_user, name="ci")
    stored = ApiToken.objects.get()
    assert raw not in {stored.key_hash, stored.prefix}
    assert re.fullmatch(r"[0-9a-f]{64}", stored.key_hash)


def test_lists_show_only_member_projects(world, api, admin_user):
    from apps.projects.services import project_create
    from tests.factories import UserFactory

    outsider = UserFactory(username="outsider")
    project_create(name="Theirs", actor=outsider)
    client = api(outsider)
    slugs = [p["slug"] for p in client.get(reverse("project-list")).json()["results"]]
    assert slugs == ["theirs"]
    assert client.get(reverse("run-list")).json()["count"] == 0
    assert client.get(reverse("run-detail", args=[world["run"]])).status_code == 404


def test_developer_can_trigger_and_cancel_but_not_approve(
    world, member, api, project, django_capture_on_commit_callbacks
):
    client = api(member("developer"))
    # Inline jobs run code nobody pushed: admin only (docs/secrets.md).
    response = client.post(reverse("run-list"), BODIES["run"], format="json")
    assert response.status_code == 403
    project.repository_url = "https://git.example.com/acme/churn-model.git"
    project.save()
    with django_capture_on_commit_callbacks(execute=False):
        body = {"project": project.slug, "ref": "main"}
        response = client.post(reverse("run-list"), body, format="json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    assert client.post(reverse("run-cancel", args=[run_id])).status_code == 200
    assert client.post(reverse("run-cancel", args=[run_id])).status_code == 409
    response = client.post(reverse("promotion-approve", args=[world["promotion"]]), {})
    assert response.status_code == 403


def test_approver_approves_once_and_not_own_request(world, member, api, admin_user):
    lead = member("approver", "lead")
    client = api(lead)
    url = reverse("promotion-approve", args=[world["promotion"]])
    response = client.post(url, {"comment": "looks good"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "deploying"  # approved; its deployment is requested
    assert client.post(url, {}, format="json").status_code == 409
    assert AuditEvent.objects.filter(action="promotion.approve", actor=lead).count() == 1


def test_requester_cannot_approve_own_promotion(world, api, admin_user):
    response = api(admin_user).post(reverse("promotion-approve", args=[world["promotion"]]), {})
    assert response.status_code == 403
    assert "someone else" in response.json()["detail"]


def test_project_creation_needs_permission(db, api, member):
    viewer = member("viewer")
    assert (
        api(viewer).post(reverse("project-list"), {"name": "X"}, format="json").status_code == 403
    )


def test_admin_creates_project_with_default_environments(admin_user, api):
    response = api(admin_user).post(reverse("project-list"), {"name": "Fraud model"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["environments"] == ["dev", "staging", "production"]
    assert "webhook_secret" not in response.json()


def test_token_page_creates_a_working_token_and_revokes_it(db, client, admin_user, api):
    import re as _re

    from rest_framework.test import APIClient

    client.force_login(admin_user)
    page = client.post(reverse("tokens"), {"name": "script"}).content.decode()
    raw = _re.search(r'id="new-token">(cpt_[^<]+)<', page).group(1)
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get(reverse("project-list")).status_code == 200
    from apps.accounts.models import ApiToken

    token = ApiToken.objects.get()
    assert raw not in client.get(reverse("tokens")).content.decode()
    client.post(reverse("token-revoke", args=[token.pk]))
    assert api_client.get(reverse("project-list")).status_code == 401
