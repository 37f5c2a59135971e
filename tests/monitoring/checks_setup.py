"""What the check and retrain tests share: a project whose Git repository's spec monitors
production, a training dataset, the model version trained on it serving in production, and
observations and labels written to the store as the ingest API would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from django.conf import settings
from django.utils import timezone

from apps.pipelines import git
from apps.projects.models import Environment
from apps.projects.spec import parse_spec
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment, Release
from apps.training import datafiles
from apps.training.models import ModelVersion
from apps.training.profile import profile as profile_of
from apps.training.services import dataset_version_record
from tests.factories import RunFactory
from tests.pipelines.gitrepo import Repo

FEATURES = ("f0", "f1", "plan")
SPEC = """\
version: 1
environments: {production: {}}
jobs:
  unit: {kind: test, script: ["echo ok"]}
pipelines:
  train:
    jobs:
      fit:
        kind: train
        script: ["echo train"]
        consumes: {features: data/features.csv}
        model: model.joblib
monitor:
  features: [f0, f1, plan]
  target: churned
  every: 15m
  window: 1h
  min_rows: 100
  on_drift: retrain
  retrain: {pipeline: train, cooldown: 6h, max_per_day: 2, min_rows: 50}
  alerts:
    performance: {metric: accuracy, below: 0.8}
    no_observations: 30m
"""


def frame(n: int, *, shift: float = 0.0, seed: int = 0, plan_b: float = 0.3) -> dict:
    """``n`` rows of the churn features: f0, f1 normal (f0 shifted by ``shift``), plan a/b."""
    rng = np.random.default_rng(seed)
    return {
        "f0": rng.normal(shift, 1.0, n),
        "f1": rng.normal(0.0, 1.0, n),
        "plan": np.where(rng.random(n) < plan_b, "b", "a"),
    }


def churned(rows: dict) -> np.ndarray:
    return (rows["f0"] + rows["f1"] > 0).astype(np.int64)


@dataclass
class World:
    project: object
    environment: Environment
    repo: Repo
    model_version: ModelVersion
    release: Release
    deployment: Deployment
    dataset_version: object
    extra: dict = field(default_factory=dict)


def dataset_from_file(project, path: Path, name: str = "features"):
    """``path`` stored and recorded as the next version of dataset ``name``, as a job that
    produced it would record it, without starting what its ``on_dataset`` names."""
    description = datafiles.describe(path)
    stored = datafiles.store(path, settings.DATASET_DIR)
    return dataset_version_record(
        project=project,
        name=name,
        description=description.to_dict(),
        path=str(stored),
        profile=profile_of(stored, description=description),
        announce=False,
    )


def make_world(project, tmp_path: Path, spec: str = SPEC, train_rows: int = 2000) -> World:
    source = tmp_path / "source"
    source.mkdir()
    (source / ".controlplane.yml").write_text(spec)
    repo = Repo(tmp_path / "repo", source=source)
    project.repository_url = repo.url
    project.save()
    environment, _ = Environment.objects.get_or_create(project=project, name="production")
    rows = frame(train_rows, seed=1)
    table = pa.table({**rows, "churned": churned(rows)})
    path = tmp_path / "features.csv"
    pcsv.write_csv(table, path)
    version = dataset_from_file(project, path)
    model_version = ModelVersion.objects.create(project=project, name="churn", version=1)
    model_version.trained_on.add(version)
    # The run that made the release, with the spec it ran (references read the block there).
    run = RunFactory(project=project, commit_sha=repo.head, spec=parse_spec(spec).to_dict())
    release = Release.objects.create(
        project=project,
        version="v1",
        commit_sha=repo.head,
        model_version=model_version,
        pipeline_run=run,
    )
    deployment = Deployment.objects.create(
        release=release,
        environment=environment,
        status=DeploymentStatus.SUCCEEDED,
        started_at=timezone.now() - timedelta(days=1),
        finished_at=timezone.now() - timedelta(days=1),
    )
    environment.pipeline_commit_sha = repo.head
    environment.save()
    git.mirror_update(project)  # what a push does; the checks read the spec from the mirror
    return World(project, environment, repo, model_version, release, deployment, version)


def observe(
    world: World,
    rows: dict,
    start: datetime,
    *,
    seconds: float = 3000.0,
    labels: np.ndarray | None = None,
) -> list[str]:
    """Observations spread over ``seconds`` from ``start`` (and their labels), as one batch
    of each in the store with its row; returns the request ids."""
    from apps.monitoring import store
    from apps.monitoring.models import LabelBatch, ObservationBatch

    n = len(rows["f0"])
    ids = [uuid.uuid4().hex for _ in range(n)]
    ts = [start + timedelta(seconds=seconds * i / n) for i in range(n)]
    prediction = (rows["f0"] + rows["f1"] > 0).astype(np.float64)
    table = pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "model_version_id": pa.array([world.model_version.pk] * n, pa.int64()),
            "prediction": pa.array(prediction, pa.float64()),
            "latency_ms": pa.array([5.0] * n, pa.float64()),
            "f0": pa.array(rows["f0"], pa.float64()),
            "f1": pa.array(rows["f1"], pa.float64()),
            "plan": pa.array(rows["plan"].tolist(), pa.string()),
        }
    )
    window = store.window_of(start)
    rel, size = store.write_table(
        environment_id=world.environment.pk, what="observations", window_start=window, table=table
    )
    ObservationBatch.objects.create(
        environment=world.environment,
        model_version=world.model_version,
        window_start=window,
        first_at=ts[0],
        last_at=ts[-1],
        rows=n,
        path=rel,
        size_bytes=size,
    )
    if labels is not None:
        # A NaN label: none was sent for that request.
        sent = [i for i in range(n) if not np.isnan(float(labels[i]))]
        label_table = pa.table(
            {
                "request_id": pa.array([ids[i] for i in sent], pa.string()),
                "label": pa.array(labels[sent].astype(np.float64), pa.float64()),
                "labelled_at": pa.array([ts[-1]] * len(sent), pa.timestamp("us", tz="UTC")),
            }
        )
        rel, size = store.write_table(
            environment_id=world.environment.pk,
            what="labels",
            window_start=window,
            table=label_table,
        )
        LabelBatch.objects.create(
            environment=world.environment,
            window_start=window,
            rows=len(sent),
            path=rel,
            size_bytes=size,
        )
    return ids


def aligned(minutes: int = 15) -> datetime:
    """A window end of the spec's ``every`` (15m), well in the past."""
    now = datetime.now(tz=UTC) - timedelta(hours=3)
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % (minutes * 60), tz=UTC)
