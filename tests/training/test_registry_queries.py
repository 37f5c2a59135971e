"""The registry's pages and API stay within 10 queries whatever the number of versions."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.training.models import MetricPoint, ModelAlias, ModelVersion
from tests.releases.test_deploy_rules import deploy_dir  # noqa: F401

from .registry_chain import model_chain

pytestmark = pytest.mark.django_db

VERSIONS = 300


def many_versions(project, job):
    ModelVersion.objects.bulk_create(
        ModelVersion(
            project=project,
            name="churn" if i % 3 else "fraud",
            version=i + 100,
            job=job,
            metrics={"f1": 0.5 + i / 1000, "loss": 1 - i / 1000},
            params={"seed": i},
            tags={"sklearn_version": "1.5.2"},
            artifact_digest=f"sha256:{i}",
        )
        for i in range(VERSIONS)
    )


@pytest.fixture
def registry(project, admin_user, tmp_path):
    mv, release, _ = model_chain(project, admin_user, tmp_path)
    many_versions(project, mv.job)
    production = project.environments.get(name="production")
    ModelAlias.objects.create(
        project=project, model_name="churn", environment=production, model_version=mv
    )
    MetricPoint.objects.bulk_create(
        MetricPoint(
            job=mv.job, model_version=mv, key="loss", step=s, value=1 / (s + 1), at=mv.created
        )
        for s in range(2000)
    )
    return mv


def count(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries), response


def test_pages_and_api_stay_within_ten_queries(registry, project, member, client, api):
    viewer = member("viewer")
    client.force_login(viewer)
    ids = ",".join(str(i) for i in ModelVersion.objects.values_list("pk", flat=True)[:5])
    token = api(viewer)
    calls = {
        "list": lambda: client.get(f"/p/{project.slug}/models/"),
        "list page 3 of churn": lambda: client.get(f"/p/{project.slug}/models/?name=churn&page=3"),
        "version": lambda: client.get(registry.get_absolute_url()),
        "compare": lambda: client.get(f"/p/{project.slug}/models/compare/?ids={ids}"),
        "lineage page": lambda: client.get(registry.get_absolute_url() + "lineage/"),
        "api list": lambda: token.get("/api/v1/model-versions/?name=churn"),
        "api detail": lambda: token.get(f"/api/v1/model-versions/{registry.pk}/"),
        "api compare": lambda: token.get(f"/api/v1/model-versions/compare/?ids={ids}"),
        "api lineage": lambda: token.get(f"/api/v1/model-versions/{registry.pk}/lineage/"),
    }
    counts = {}
    for name, call in calls.items():
        call()  # warm: the content types, the session
        counts[name], _ = count(call)
    if not all(n <= 10 for n in counts.values()):
        for name, call in calls.items():
            with CaptureQueriesContext(connection) as ctx:
                call()
            print(name, *[q["sql"][:160] for q in ctx.captured_queries], sep="\n  ")
    assert all(n <= 10 for n in counts.values()), counts
    _, page = count(calls["list"])
    assert page.content.decode().count('name="ids"') == 50  # one page of versions
