"""A dataset committed in the repository becomes its first version; a run in an environment
that asks for synthetic data consumes generated data with the real schema and no real row."""

import csv
import io
from pathlib import Path

import pytest

from apps.pipelines.choices import JobStatus
from apps.pipelines.commits import Commit
from apps.projects.services import environment_update, project_update
from apps.training.datafiles import describe
from apps.training.models import DatasetVersion

from ..pipelines.gitrepo import Repo
from .datasets import churn_csv, run_one_job

pytestmark = pytest.mark.django_db

RAW = churn_csv(300)


@pytest.fixture
def repo(tmp_path, project, admin_user):
    source = tmp_path / "source"
    (source / "data").mkdir(parents=True)
    (source / "data" / "raw.csv").write_text(RAW)
    (source / "README.md").write_text("data project\n")
    repo = Repo(tmp_path / "git", source=source)
    project_update(project=project, repository_url=repo.url, actor=admin_user)
    return repo


def consume_raw(capture, project, actor, repo, environment=None, script=None):
    return run_one_job(
        capture,
        project=project,
        actor=actor,
        commit=Commit(sha=repo.head, ref="main"),
        environment=environment,
        script=script or ['cp "$DATA_RAW" seen.csv', "wc -l < $DATA_RAW"],
        options={"consumes": {"raw": "data/raw.csv"}, "artifacts": ["seen.csv"]},
    )


def test_a_committed_file_becomes_the_first_version(
    project, admin_user, repo, django_capture_on_commit_callbacks
):
    job = consume_raw(django_capture_on_commit_callbacks, project, admin_user, repo)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    version = DatasetVersion.objects.get(dataset__project=project, dataset__name="raw")
    assert (version.version, version.rows, version.synthetic) == (1, 300, False)
    assert Path(version.path).read_text() == RAW
    # Produced by the commit: the run it was read in, no job.
    assert (version.run_id, version.job_id) == (job.run_id, None)
    assert job.result["consumed"]["raw"]["fingerprint"] == version.fingerprint

    # The next run gets the recorded version; nothing new is recorded.
    again = consume_raw(django_capture_on_commit_callbacks, project, admin_user, repo)
    assert again.status == JobStatus.SUCCEEDED
    assert again.result["consumed"]["raw"]["version"] == 1
    assert DatasetVersion.objects.count() == 1


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_synthetic_run_consumes_generated_data_with_the_real_schema_and_no_real_row(
    project, admin_user, repo, django_capture_on_commit_callbacks
):
    real_job = consume_raw(django_capture_on_commit_callbacks, project, admin_user, repo)
    assert real_job.status == JobStatus.SUCCEEDED, real_job.error_message
    real = DatasetVersion.objects.get(dataset__name="raw")

    dev = project.environments.get(name="dev")
    environment_update(environment=dev, synthetic_data=True, actor=admin_user)
    job = consume_raw(
        django_capture_on_commit_callbacks, project, admin_user, repo, environment=dev
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message

    fake = DatasetVersion.objects.get(dataset__name="raw", synthetic=True)
    assert fake.version == 2 and fake.rows == real.rows
    assert fake.fingerprint != real.fingerprint
    assert (fake.run_id, fake.job_id) == (job.run_id, job.pk)
    assert job.result["consumed"]["raw"] == {
        "version": 2,
        "fingerprint": fake.fingerprint,
        "synthetic": True,
    }
    seen = job.artifacts.get(path="seen.csv").file_path
    assert describe(seen).fingerprint == fake.fingerprint  # the job read the fake file

    # The real schema: the same columns of the same types…
    assert describe(seen).columns == real.columns
    real_rows, fake_rows = _rows(RAW), _rows(Path(seen).read_text())
    assert len(fake_rows) == 300
    # …values inside the real ranges and category sets…
    for column in ("age", "monthly_fee"):
        low = min(float(r[column]) for r in real_rows)
        high = max(float(r[column]) for r in real_rows)
        assert all(low <= float(r[column]) <= high for r in fake_rows), column
    for column in ("plan", "region", "churned"):
        assert {r[column] for r in fake_rows} <= {r[column] for r in real_rows}, column
    assert len({r["plan"] for r in fake_rows}) > 1
    # …and not one real row.
    as_tuple = lambda r: tuple(r.values())  # noqa: E731
    assert not {as_tuple(r) for r in fake_rows} & {as_tuple(r) for r in real_rows}

    # The newest *real* version is still what a run outside dev consumes.
    prod_job = consume_raw(django_capture_on_commit_callbacks, project, admin_user, repo)
    assert prod_job.result["consumed"]["raw"] == {
        "version": 1,
        "fingerprint": real.fingerprint,
        "synthetic": False,
    }


def test_data_produced_from_synthetic_input_is_synthetic(
    project, admin_user, repo, django_capture_on_commit_callbacks
):
    dev = project.environments.get(name="dev")
    environment_update(environment=dev, synthetic_data=True, actor=admin_user)
    job = run_one_job(
        django_capture_on_commit_callbacks,
        project=project,
        actor=admin_user,
        commit=Commit(sha=repo.head, ref="main"),
        environment=dev,
        script=["mkdir -p out && head -n 50 $DATA_RAW > out/features.csv"],
        options={"consumes": {"raw": "data/raw.csv"}, "produces": {"features": "out/features.csv"}},
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    # raw: v1 from the commit (real), v2 generated; features derived from v2: synthetic.
    assert list(
        DatasetVersion.objects.order_by("dataset__name", "version").values_list(
            "dataset__name", "version", "synthetic"
        )
    ) == [("features", 1, True), ("raw", 1, False), ("raw", 2, True)]
