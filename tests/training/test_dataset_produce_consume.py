"""Datasets a job produces are recorded (content-addressed, with their schema); datasets a job
consumes are placed in its workspace with DATA_<NAME> pointing at them."""

from pathlib import Path

import pytest

from apps.pipelines.choices import JobStatus
from apps.pipelines.logs import log_path
from apps.training.models import Dataset, DatasetVersion

from .datasets import churn_csv, run_one_job

pytestmark = pytest.mark.django_db

CSV = "customer_id,plan,fee\n1,basic,9.5\n2,pro,19\n3,basic,9.5\n4,pro,19.5\n"


def produce(capture, project, actor, text=CSV, path="out/features.csv"):
    return run_one_job(
        capture,
        project=project,
        actor=actor,
        script=[f"mkdir -p out && printf '%s' '{text}' > {path}"],
        options={"produces": {"features": path}},
    )


def test_a_produced_file_is_recorded_with_its_schema(
    project, admin_user, django_capture_on_commit_callbacks
):
    job = produce(django_capture_on_commit_callbacks, project, admin_user)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    produced = job.result["datasets"]["features"]
    assert produced["rows"] == 4
    assert produced["columns"] == [
        {"name": "customer_id", "type": "integer"},
        {"name": "plan", "type": "string"},
        {"name": "fee", "type": "number"},
    ]
    assert Path(produced["path"]).read_text() == CSV  # the stored copy, outside the workspace
    assert produced["profile"]["rows"] == 4

    version = DatasetVersion.objects.get(dataset__project=project, dataset__name="features")
    assert (version.version, version.rows, version.synthetic) == (1, 4, False)
    assert version.fingerprint == produced["fingerprint"]
    assert version.columns == produced["columns"]
    assert version.format == "csv"
    assert (version.run_id, version.job_id) == (job.run_id, job.pk)
    plan, fee = version.profile["columns"][1:]
    assert sorted(plan["categories"]) == ["basic", "pro"]
    assert (fee["min"], fee["max"]) == (9.5, 19.5)


def test_same_content_is_the_same_version_and_only_a_new_one_starts_pipelines(
    project, admin_user, django_capture_on_commit_callbacks, monkeypatch
):
    # pipelines.triggers.pipelines_on_dataset starts the on_dataset pipelines: stand in for it
    # here to see which versions are announced.
    from apps.training import services as training_services

    announced = []
    monkeypatch.setattr(
        training_services,
        "pipelines_on_dataset",
        lambda **kwargs: announced.append(kwargs) or [],
    )
    first = produce(django_capture_on_commit_callbacks, project, admin_user)
    again = produce(django_capture_on_commit_callbacks, project, admin_user)
    changed = produce(
        django_capture_on_commit_callbacks, project, admin_user, text=CSV + "5,team,29\n"
    )
    assert {first.status, again.status, changed.status} == {JobStatus.SUCCEEDED}
    versions = list(DatasetVersion.objects.filter(dataset__name="features").order_by("version"))
    assert [(v.version, v.rows) for v in versions] == [(1, 4), (2, 5)]
    assert versions[0].job_id == first.pk  # the re-run's identical output made no version
    assert Dataset.objects.filter(project=project).count() == 1
    assert [(a["dataset"], a["version_label"]) for a in announced] == [
        ("features", "v1"),
        ("features", "v2"),
    ]
    assert all(a["project"] == project for a in announced)


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (["true"], "cannot be read"),
        (["mkdir -p out && printf 'a,b\\n1,2,3\\n' > out/features.csv"], "cannot read as CSV"),
        (["mkdir -p out && : > out/features.csv"], "is empty"),
    ],
    ids=["missing", "malformed", "empty"],
)
def test_an_unreadable_produced_file_fails_the_job_naming_the_file(
    project, admin_user, django_capture_on_commit_callbacks, script, why
):
    job = run_one_job(
        django_capture_on_commit_callbacks,
        project=project,
        actor=admin_user,
        script=script,
        options={"produces": {"features": "out/features.csv"}},
    )
    assert job.status == JobStatus.FAILED
    assert job.error_message.startswith("produced dataset 'features': out/features.csv ")
    assert why in job.error_message
    assert not DatasetVersion.objects.exists()


def test_a_consumed_dataset_is_placed_and_data_x_points_at_it(
    project, admin_user, django_capture_on_commit_callbacks
):
    data = churn_csv(20)
    producer = produce(django_capture_on_commit_callbacks, project, admin_user, text=data)
    version = DatasetVersion.objects.get(dataset__name="features")
    consumer = run_one_job(
        django_capture_on_commit_callbacks,
        project=project,
        actor=admin_user,
        script=['echo "path=$DATA_FEATURES"', 'cat "$DATA_FEATURES"'],
        options={"consumes": {"features": "data/features.csv"}},
    )
    assert producer.status == consumer.status == JobStatus.SUCCEEDED, consumer.error_message
    log = log_path(consumer.pk, consumer.run_id).read_text()
    assert "path=data/features.csv" in log
    assert data.splitlines()[-1] in log and data.splitlines()[0] in log
    assert consumer.result["consumed"] == {
        "features": {"version": 1, "fingerprint": version.fingerprint, "synthetic": False}
    }


def test_a_dataset_with_no_version_and_no_file_in_the_commit_fails_the_job(
    project, admin_user, django_capture_on_commit_callbacks
):
    job = run_one_job(
        django_capture_on_commit_callbacks,
        project=project,
        actor=admin_user,
        script=["echo never runs"],
        options={"consumes": {"raw": "data/raw.csv"}},
    )
    assert job.status == JobStatus.FAILED
    assert job.error_message == (
        "dataset 'raw' has no version yet and data/raw.csv is not in the commit"
    )
    assert "never runs" not in log_path(job.pk, job.run_id).read_text().replace(
        "echo never runs", ""
    )
