"""Fixtures of the ingest tests: an environment serving a model version trained on a real CSV
file, and an ingest token of it (imported by tests/monitoring/test_ingest*.py)."""

from dataclasses import dataclass

import pytest

from apps.monitoring.services.ingest import expected_cache_clear, ingest_token_create
from apps.projects.models import Environment
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment
from apps.training.models import Dataset, DatasetVersion, ModelVersion
from tests.factories import ReleaseFactory, RunFactory

FEATURES = ["f0", "f1", "plan"]

SPEC = {
    "version": 1,
    "raw": {"monitor": {"target": "label", "features": FEATURES, "every": "15m"}},
    "monitor": None,
}


@dataclass
class Served:
    project: object
    environment: object
    model_version: object
    dataset_version: object
    release: object
    token: object
    raw_token: str


def make_dataset_version(project, path, name="features", synthetic=False):
    dataset, _ = Dataset.objects.get_or_create(project=project, name=name)
    n = dataset.versions.count() + 1
    return DatasetVersion.objects.create(
        dataset=dataset,
        version=n,
        fingerprint=f"{name}-{n}-{path.stat().st_size}-{synthetic}",
        rows=None,
        format="csv",
        path=str(path),
        synthetic=synthetic,
    )


def write_training_csv(path, rows=300):
    lines = ["id,f0,f1,plan,label"]
    for i in range(rows):
        lines.append(f"c{i},{i % 17 / 10},{(i * 7) % 13},{['basic', 'pro', 'team'][i % 3]},{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(project, environment, tmp_path, spec=None, admin=None):
    csv = write_training_csv(tmp_path / f"train-{environment.pk}.csv")
    dv = make_dataset_version(project, csv)
    mv = ModelVersion.objects.create(
        project=project, name="churn", version=ModelVersion.objects.count() + 1
    )
    mv.trained_on.add(dv)
    run = RunFactory(project=project, spec=spec if spec is not None else SPEC)
    release = ReleaseFactory(project=project, model_version=mv, pipeline_run=run)
    Deployment.objects.create(
        release=release, environment=environment, status=DeploymentStatus.SUCCEEDED
    )
    return mv, dv, release


@pytest.fixture
def served(project, admin_user, settings, tmp_path):
    settings.OBSERVATION_DIR = tmp_path / "observations"
    expected_cache_clear()
    environment, _ = Environment.objects.get_or_create(project=project, name="production")
    mv, dv, release = serve(project, environment, tmp_path)
    token, raw = ingest_token_create(environment=environment, name="svc", actor=admin_user)
    yield Served(project, environment, mv, dv, release, token, raw)
    expected_cache_clear()
