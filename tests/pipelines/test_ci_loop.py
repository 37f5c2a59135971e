"""The CI loop end to end on a real Git repository and a real worker: the example project's
tests and reproducibility check pass; a broken test fails the run with the test in the log;
a model change fails the reproducibility job with the differences shown."""

import json

import pytest
from django.urls import reverse

from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus, Trigger
from apps.pipelines.commits import Commit
from apps.pipelines.models import PipelineRun

from .gitrepo import Repo
from .test_worker import finished, log_of
from .worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path)


@pytest.fixture
def git_project(project, repo):
    project.repository_url = repo.url
    project.webhook_secret = SECRET
    project.save()
    return project


@pytest.fixture
def running_worker():
    worker = WorkerProcess(concurrency=2).start()
    yield worker
    worker.stop()


SECRET = "whsec-ci-loop-test"


def push(project, repo, admin_user) -> PipelineRun:
    """What GitHub sends after `git push`: a signed push event for the new head."""
    from django.test import Client

    from apps.webhooks.testing import sign

    sha = repo.head
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "repository": {"clone_url": repo.url, "full_name": "acme/churn-model"},
            "head_commit": {
                "id": sha,
                "message": "pushed",
                "url": f"https://git.example/c/{sha}",
                "author": {"name": "Ada Author", "email": "ada@example.com"},
            },
        }
    ).encode()
    headers = sign("github", SECRET, body, event="push")
    response = Client().post(
        f"/hooks/github/{project.slug}/", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 202, response.content
    from apps.webhooks.models import WebhookDelivery

    # The worker turns the accepted delivery into a run within milliseconds.
    delivery = WebhookDelivery.objects.get(pk=response.json()["delivery"])
    run_id = wait_for(
        lambda: WebhookDelivery.objects.filter(pk=delivery.pk).values_list("run", flat=True)[0],
        30,
    )
    return PipelineRun.objects.get(pk=run_id)


def test_example_project_passes_then_breaks_then_drifts(
    git_project, repo, admin_user, running_worker, client
):
    # 1. The example as committed: tests pass, predictions reproduce exactly.
    run = finished(push(git_project, repo, admin_user), timeout=300)
    jobs = {j.name: j for j in run.jobs.all()}
    assert run.status == RunStatus.SUCCEEDED, {
        n: (j.status, j.error_message, log_of(run, n)[-2000:]) for n, j in jobs.items()
    }
    assert run.commit_author == "Ada Author"
    assert run.spec["jobs"]["reproduce"]["kind"] == "reproducibility"
    junit = jobs["test"].result["junit"]
    assert junit["failures"] == 0 and junit["passed"] >= 20
    repro = jobs["reproduce"].result["reproducibility"]
    assert repro["passed"] and repro["rows_outside"] == 0 and repro["rows_compared"] == 50
    assert jobs["build"].result["bundle_digest"].startswith("sha256:")
    # No environment deploys images here: the in-image check says it did not run.
    assert jobs["reproduce-image"].status == JobStatus.SKIPPED  # no image: nothing checked
    assert jobs["reproduce-image"].result["in_image"]["checked"] is False
    # A succeeded pipeline on the release branch made an immutable release with its evidence.
    from apps.releases.models import Release

    release = wait_for(lambda: Release.objects.filter(pipeline_run=run).first(), 30)
    assert release.bundle_digest == jobs["build"].result["bundle_digest"]
    assert release.evidence["reproducibility"]["reproduce"]["rows_outside"] == 0
    artifact = jobs["test"].artifacts.get(path="reports/junit.xml")
    client.force_login(admin_user)
    download = client.get(
        reverse("pipelines:artifact", args=[git_project.slug, run.number, "test", artifact.path])
    )
    assert download.status_code == 200
    assert b"<testsuite" in b"".join(download.streaming_content)
    assert f"checked out {run.commit_sha[:12]}" in log_of(run, "reproduce")

    # 2. A commit that breaks a test: the run fails, the failing test is in the log.
    test_file = "tests/test_prepare.py"
    repo.commit(
        "Break a test",
        {
            test_file: repo.read(test_file)
            + ("\n\ndef test_deliberately_broken():\n    assert 1 + 1 == 3\n")
        },
    )
    run = finished(push(git_project, repo, admin_user), timeout=300)
    jobs = {j.name: j for j in run.jobs.all()}
    assert run.status == RunStatus.FAILED
    assert jobs["test"].status == JobStatus.FAILED
    assert "test_deliberately_broken" in log_of(run, "test")
    failed = [c["name"] for c in jobs["test"].result["junit"]["failed_cases"]]
    assert failed == ["test_deliberately_broken"]
    assert jobs["build"].status == JobStatus.SKIPPED
    assert jobs["reproduce"].status == JobStatus.SKIPPED
    page = client.get(run.get_absolute_url()).content.decode()
    assert "test_deliberately_broken" in page

    # 3. Fix the test but change the model: tests pass, the predictions no longer reproduce.
    training = "model/training.py"
    repo.commit(
        "Stronger regularisation",
        {
            test_file: repo.read(test_file).split("\n\ndef test_deliberately_broken")[0] + "\n",
            training: repo.read(training).replace('"C": 1.0', '"C": 0.5'),
        },
    )
    run = finished(push(git_project, repo, admin_user), timeout=300)
    jobs = {j.name: j for j in run.jobs.all()}
    assert jobs["test"].status == JobStatus.SUCCEEDED
    assert run.status == RunStatus.FAILED
    reproduce = jobs["reproduce"]
    assert reproduce.status == JobStatus.FAILED
    repro = reproduce.result["reproducibility"]
    assert not repro["passed"]
    assert repro["rows_outside"] > 0
    assert repro["max_abs_diff"] > 1e-6
    assert repro["examples"] and repro["examples"][0]["column"] == "probability"
    assert reproduce.error_message == repro["reason"]
    page = client.get(reproduce.get_absolute_url()).content.decode()
    assert "Rows outside tolerance" in page
    assert repro["examples"][0]["expected"] in page


def test_invalid_spec_fails_the_run_at_once_with_the_line(
    git_project, repo, admin_user, running_worker
):
    repo.commit(
        "Typo in the spec",
        {
            ".controlplane.yml": (
                "version: 1\njobs:\n  test:\n    kind: test\n    scirpt: [pytest]\n"
            )
        },
    )
    run = finished(push(git_project, repo, admin_user), timeout=300)
    assert run.status == RunStatus.FAILED
    assert ".controlplane.yml:5" in run.error_message
    assert "scirpt" in run.error_message
    assert run.jobs.count() == 0


def test_missing_spec_and_unknown_ref(git_project, repo, admin_user, running_worker):
    repo.commit("No pipeline", {".controlplane.yml": None})
    run = finished(push(git_project, repo, admin_user), timeout=300)
    assert run.status == RunStatus.FAILED
    assert "No .controlplane.yml" in run.error_message
    run = finished(
        services.run_request(
            project=git_project,
            actor=admin_user,
            trigger=Trigger.MANUAL,
            commit=Commit(ref="no-such-branch"),
        )
    )
    assert run.status == RunStatus.FAILED
    assert "no-such-branch" in run.error_message
