"""One of each thing the API serves, in one project, built through the services where they are
cheap (so the rows look like the ones the product makes) and with factories where a service
would need a worker or a Git server (a finished job, a deployment that served)."""

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.monitoring.services.alerts import alert_fire, silence_create
from apps.monitoring.services.ingest import ingest_token_create
from apps.notifications.services import target_create
from apps.pipelines.models import Artifact
from apps.projects.models import Project
from apps.projects.services import freeze_window_add, variable_set
from apps.releases.services import promotion_request, release_create
from apps.training.models import Dataset, DatasetVersion, ModelVersion
from apps.webhooks.models import WebhookDelivery
from tests.factories import DeploymentFactory, JobFactory, RunFactory

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class World:
    project: Project
    objects: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.objects[name]


def finished_run(project, *, status: str = "failed"):
    run = RunFactory(project=project, status=status, finished_at=timezone.now())
    job = JobFactory(run=run, status=status, finished_at=timezone.now())
    return run, job


def build_world(project: Project, actor) -> World:
    """``project`` was made by ``project_create`` (dev and staging deploy at once, production
    takes one approval)."""
    w = World(project=project)
    envs = {e.name: e for e in project.environments.all()}
    w.objects.update(envs)
    run, job = finished_run(project)
    w.objects.update(run=run, job=job)
    w.objects["active_run"] = RunFactory(project=project, status="running")
    artifact = Artifact.objects.create(job=job, path="model.pkl", size=5, sha256="0" * 64)
    artifact.file_path.parent.mkdir(parents=True, exist_ok=True)
    artifact.file_path.write_bytes(b"bytes")
    w.objects["artifact"] = artifact
    report = Artifact.objects.create(job=job, path="reports/index.html", size=15, sha256="1" * 64)
    report.file_path.parent.mkdir(parents=True, exist_ok=True)
    report.file_path.write_bytes(b"<h1>report</h1>")
    w.objects["report"] = report
    w.objects["model_version"] = ModelVersion.objects.create(
        project=project, name="model", version=1, job=job, artifact_uri="artifact:model.pkl"
    )
    dataset = Dataset.objects.create(project=project, name="customers")
    csv = Path(settings.DATASET_DIR) / f"{project.slug}-customers.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text("id,churned\n1,0\n")
    w.objects["dataset"] = dataset
    w.objects["dataset_version"] = DatasetVersion.objects.create(
        dataset=dataset,
        version=1,
        fingerprint="2" * 64,
        rows=1,
        size_bytes=csv.stat().st_size,
        format="csv",
        path=str(csv),
    )
    old = release_create(project=project, version="1.0.0", commit_sha=SHA, actor=actor)
    new = release_create(project=project, version="1.1.0", commit_sha=SHA, actor=actor)
    w.objects.update(release=new, old_release=old)
    # 1.0.0 served dev before 1.1.0 did: a rollback target.
    earlier = timezone.now() - timedelta(hours=1)
    DeploymentFactory(release=old, environment=envs["dev"], status="succeeded", finished_at=earlier)
    w.objects["deployment"] = DeploymentFactory(
        release=new, environment=envs["dev"], status="succeeded", finished_at=timezone.now()
    )
    w.objects["promotion"] = promotion_request(
        release=new, environment=envs["production"], actor=actor
    )
    w.objects["freeze_window"] = freeze_window_add(
        environment=envs["staging"], cron="0 17 * * 5", duration=timedelta(hours=2), actor=actor
    )
    w.objects["variable"] = variable_set(
        project=project, key="REGION", value="eu", actor=actor, is_secret=True
    )
    w.objects["alert"] = alert_fire(
        rule="error_rate",
        labels={"service": "api"},
        severity="warning",
        summary="Error rate high",
        project=project,
        environment=envs["production"],
    )
    w.objects["silence"] = silence_create(
        project=project,
        matchers=[{"name": "service", "op": "=", "value": "api"}],
        reason="maintenance",
        ends_at=timezone.now() + timedelta(hours=1),
        actor=actor,
    )
    w.objects["target"] = target_create(
        project=project, actor=actor, kind="email", destination="team@example.com"
    )
    w.objects["ingest_token"] = ingest_token_create(
        environment=envs["production"], name="prod scorer", actor=actor
    )[0]
    w.objects["webhook_delivery"] = WebhookDelivery.objects.create(
        provider="github",
        project=project,
        delivery_id=f"ping-{project.pk}",
        event="ping",
        status="ping",
        http_status=200,
        payload={"zen": "Keep it logically awesome.", "hook_id": 1},
    )
    return w
