"""References: built from the model version's training data (lineage) or the spec's
monitor.reference at the serving commit, kinds inferred or overridden, reused while unchanged."""

import pyarrow.parquet as pq
import pytest

from apps.monitoring import store
from apps.monitoring.choices import ReferenceSource
from apps.monitoring.models import Reference
from apps.monitoring.reference import ReferenceError, reference_for, reference_table
from apps.projects.models import Environment
from tests.monitoring import ingest_fixtures
from tests.pipelines.gitrepo import Repo

pytestmark = pytest.mark.django_db
served = ingest_fixtures.served


def test_lineage_reference_with_inferred_kinds(served):
    reference = reference_for(served.environment, served.model_version)
    assert reference.source == ReferenceSource.LINEAGE
    assert reference.dataset_version == served.dataset_version
    assert reference.columns == {"f0": "numeric", "f1": "numeric", "plan": "categorical"}
    assert reference.target == "label" and reference.rows == 300
    table = reference_table(reference)
    assert table.column_names == ["f0", "f1", "plan", "label"]
    assert table.column("plan").to_pylist()[:3] == ["basic", "pro", "team"]
    assert str(table.schema.field("f1").type) == "double"
    # Unchanged inputs: the same row, nothing rebuilt.
    assert reference_for(served.environment, served.model_version).pk == reference.pk
    assert Reference.objects.count() == 1


def test_kind_override_and_default_features(served, project, tmp_path):
    environment = Environment.objects.get(project=project, name="staging")
    spec = {"raw": {"monitor": {"target": "label", "columns": {"f1": {"kind": "categorical"}}}}}
    mv, _dv, _release = ingest_fixtures.serve(project, environment, tmp_path, spec=spec)
    reference = reference_for(environment, mv)
    # Default features: every column but the target (the id too: monitor.features narrows it).
    assert reference.columns == {
        "id": "categorical",
        "f0": "numeric",
        "f1": "categorical",
        "plan": "categorical",
    }
    assert reference_table(reference).column("f1").to_pylist()[:2] == ["0", "7"]


def test_no_source_is_none_and_a_bad_feature_is_an_error(served, project, tmp_path):
    from apps.training.models import ModelVersion

    bare = ModelVersion.objects.create(project=project, name="churn", version=50)
    assert reference_for(served.environment, bare) is None
    environment = Environment.objects.get(project=project, name="dev")
    spec = {"raw": {"monitor": {"features": ["f0", "nope"]}}}
    mv, _dv, _release = ingest_fixtures.serve(project, environment, tmp_path, spec=spec)
    with pytest.raises(ReferenceError, match="nope"):
        reference_for(environment, mv)


def test_spec_reference_read_at_the_serving_commit(project, tmp_path, settings):
    settings.OBSERVATION_DIR = tmp_path / "observations"
    repo = Repo(tmp_path / "repo")
    project.repository_url = repo.url
    project.save()
    environment = Environment.objects.get(project=project, name="production")
    spec = {
        "raw": {
            "monitor": {
                "reference": "data/eval.csv",
                "target": "label",
                "features": ["f0", "f1", "f2"],
            }
        }
    }
    mv, _dv, release = ingest_fixtures.serve(project, environment, tmp_path, spec=spec)
    release.commit_sha = repo.head
    release.save()
    reference = reference_for(environment, mv)
    assert reference.source == ReferenceSource.SPEC and reference.spec_path == "data/eval.csv"
    assert reference.columns == {"f0": "numeric", "f1": "numeric", "f2": "numeric"}
    eval_rows = (repo.work / "data/eval.csv").read_text().strip().count("\n")
    assert reference.rows == eval_rows
    assert pq.read_table(store.path_of(reference.path)).column_names == ["f0", "f1", "f2", "label"]
    # A new commit changing the file is a new reference once it serves.
    text = (repo.work / "data/eval.csv").read_text()
    release.commit_sha = repo.commit("fewer rows", {"data/eval.csv": text[: text.index("\n", 200)]})
    release.save()
    newer = reference_for(environment, mv)
    assert newer.pk != reference.pk and newer.rows < reference.rows


def test_a_monitored_release_that_starts_serving_has_its_reference_built_on_the_monitor_queue(
    served, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.monitoring.tasks import build_reference_task
    from apps.releases.models import Deployment
    from apps.releases.signals import deployment_status_changed

    sent = []

    def apply_async(*, args, queue):
        sent.append(queue)
        return build_reference_task.apply(args=args)

    monkeypatch.setattr(build_reference_task, "apply_async", apply_async)
    deployment = Deployment.objects.get(environment=served.environment)
    with django_capture_on_commit_callbacks(execute=True):
        deployment_status_changed.send(
            sender=Deployment, deployment=deployment, from_status="running", to_status="succeeded"
        )
    assert sent == ["monitor"]
    reference = Reference.objects.get(environment=served.environment)
    assert reference.model_version == served.model_version and reference.rows == 300

    # A release whose spec has no monitor block asks for nothing.
    served.release.pipeline_run.spec = {"version": 1}
    served.release.pipeline_run.save(update_fields=["spec"])
    deployment.release.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        deployment_status_changed.send(
            sender=Deployment,
            deployment=Deployment.objects.get(pk=deployment.pk),
            from_status="running",
            to_status="succeeded",
        )
    assert sent == ["monitor"]
