"""Ingest tokens: managed by project admins (value shown once), and made for every deployment
as a secret variable of its environment, with the URL and the model version beside it."""

import pytest

from apps.accounts.models import hash_token
from apps.monitoring.models import IngestToken
from apps.monitoring.services.ingest import ingest_token_ensure, ingest_token_revoke
from apps.projects.models import Environment, Variable
from apps.projects.selectors import job_variables
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.releases.services.deployments import _deploy_request
from apps.releases.services.transitions import deployment_transition
from apps.training.models import ModelVersion
from tests.factories import ReleaseFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(project):
    return Environment.objects.get(project=project, name="production")


def test_admins_create_list_and_revoke_tokens(api, admin_user, member, production):
    client = api(member("admin", "ada"))
    response = client.post(
        "/api/v1/ingest-tokens/", {"environment": production.pk, "name": "batch"}, format="json"
    )
    assert response.status_code == 201, response.content
    raw = response.json()["token"]
    token = IngestToken.objects.get(pk=response.json()["id"])
    assert token.key_hash == hash_token(raw) and raw.startswith("cpi_")
    listed = client.get(f"/api/v1/ingest-tokens/?environment={production.pk}").json()
    assert [t["name"] for t in listed["results"]] == ["batch"]
    assert "token" not in listed["results"][0] and raw not in str(listed)
    revoked = client.post(f"/api/v1/ingest-tokens/{token.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False


def test_developers_cannot_manage_tokens(api, member, production):
    client = api(member("developer", "dev"))
    response = client.post(
        "/api/v1/ingest-tokens/", {"environment": production.pk, "name": "x"}, format="json"
    )
    assert response.status_code == 403
    assert client.get("/api/v1/ingest-tokens/").json()["results"] == []
    assert not IngestToken.objects.exists()


def test_a_deployment_gets_url_token_and_model_version(
    project, production, django_capture_on_commit_callbacks
):
    mv = ModelVersion.objects.create(project=project, name="churn", version=1)
    release = ReleaseFactory(project=project, model_version=mv)
    deployment = Deployment.objects.create(release=release, environment=production)
    with django_capture_on_commit_callbacks(execute=True):
        deployment = deployment_transition(
            deployment=deployment, to=DeploymentStatus.RUNNING, actor="deployer"
        )
    env = _deploy_request(deployment).env
    token = IngestToken.objects.get(environment=production, revoked_at__isnull=True)
    assert token.key_hash == hash_token(env["CONTROLPLANE_INGEST_TOKEN"])
    assert env["CONTROLPLANE_INGEST_URL"].endswith(
        f"/api/v1/environments/{production.pk}/observations/"
    )
    assert env["CONTROLPLANE_MODEL_VERSION"] == str(mv.pk)
    variable = Variable.objects.get(environment=production, key="CONTROLPLANE_INGEST_TOKEN")
    assert variable.is_secret
    _values, secrets = job_variables(project=project, environment=production)
    assert env["CONTROLPLANE_INGEST_TOKEN"] in secrets  # masked in deploy logs


def test_the_token_is_kept_and_replaced_when_revoked(project, production, admin_user):
    assert ingest_token_ensure(environment=production) is True
    first = Variable.objects.get(environment=production, key="CONTROLPLANE_INGEST_TOKEN").value
    assert ingest_token_ensure(environment=production) is False
    ingest_token_revoke(token=IngestToken.objects.get(environment=production), actor=admin_user)
    assert ingest_token_ensure(environment=production) is True
    second = Variable.objects.get(environment=production, key="CONTROLPLANE_INGEST_TOKEN").value
    assert second != first
    assert IngestToken.objects.filter(environment=production, revoked_at__isnull=True).count() == 1
