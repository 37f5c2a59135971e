"""A build job's model name, as the job and run pages and the job's result show it, is the
name the model is registered under (its ModelVersion's name)."""

import pytest

from apps.pipelines import services
from apps.pipelines.commits import Commit
from apps.projects.spec import parse_spec
from apps.training.models import ModelVersion

pytestmark = pytest.mark.django_db

MODEL = {
    "name": "churn",
    "path": "out/model.pkl",
    "digest": "sha256:" + "a" * 64,
    "metrics": {"auc": 0.91},
}


def test_job_and_run_pages_show_the_registered_model_name(
    client, admin_user, project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(
            project=project,
            actor=admin_user,
            commit=Commit(sha="0123456789abcdef0123456789abcdef01234567", ref="main"),
            jobs=[
                {
                    "name": "build",
                    "kind": "build",
                    "script": ["true"],
                    "options": {"model": "out/model.pkl", "model_name": "churn"},
                }
            ],
        )
        job = run.jobs.get()
        services.job_claim(job_id=job.pk, worker="w")
        services.job_finish(
            job_id=job.pk,
            worker="w",
            succeeded=True,
            exit_code=0,
            result={"bundle_digest": "sha256:" + "b" * 64, "model": MODEL},
        )
    registered = ModelVersion.objects.get(pipeline_run=run)
    assert registered.name == "churn"
    client.force_login(admin_user)
    job_page = client.get(job.get_absolute_url()).content.decode()
    assert f'<strong id="model-name">{registered.name}</strong>' in job_page
    assert "out/model.pkl" not in job_page
    run_page = client.get(run.get_absolute_url()).content.decode()
    assert f"model <strong>{registered.name}</strong>" in run_page
    api = client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert api["result"]["model"]["name"] == registered.name


def test_the_spec_model_name_reaches_the_build_job():
    spec = parse_spec(
        "version: 1\njobs:\n  build:\n    kind: build\n    script: 'true'\n"
        "    model: out/model.pkl\n    model_name: churn\n"
    )
    (job,) = services.jobs_from_spec(spec)
    assert job["options"]["model_name"] == "churn"
