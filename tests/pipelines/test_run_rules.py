"""Per-project run rules with a real worker: the concurrency limit, cancel_previous, manual
triggers of a branch or a commit, retry and re-run."""

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

SLOW_SPEC = """version: 1
cancel_previous: true
jobs:
  slow: {kind: test, script: ["echo start $CONTROLPLANE_COMMIT_SHA", "sleep 30"]}
"""


@pytest.fixture
def running_worker():
    worker = WorkerProcess(concurrency=3).start()
    yield worker
    worker.stop()


def test_concurrency_limit_holds_runs_until_a_slot_frees(project, admin_user, running_worker):
    project.max_concurrent_runs = 1
    project.save()
    slow = [{"name": "slow", "script": ["sleep 2"]}]
    first = services.run_create(project=project, actor=admin_user, jobs=slow)
    second = services.run_create(project=project, actor=admin_user, jobs=slow)
    wait_for(lambda: PipelineRun.objects.get(pk=first.pk).status == RunStatus.RUNNING, 30)
    second.refresh_from_db()
    assert second.status == RunStatus.QUEUED
    assert second.jobs.get().status == JobStatus.PENDING  # waiting for a slot, not queued
    first, second = finished(first), finished(second)
    assert first.status == second.status == RunStatus.SUCCEEDED
    assert second.started_at >= first.finished_at


def test_newer_push_cancels_the_older_run_on_the_branch(project, tmp_path, running_worker):
    repo = Repo(tmp_path)
    repo.commit("slow pipeline", {".controlplane.yml": SLOW_SPEC})
    project.repository_url = repo.url
    project.save()
    old = services.run_request(project=project, actor="t", commit=Commit(sha=repo.head, ref="main"))
    wait_for(lambda: PipelineRun.objects.get(pk=old.pk).status == RunStatus.RUNNING, 30)
    repo.commit("newer", {"README.md": "newer\n"})
    new = services.run_request(project=project, actor="t", commit=Commit(sha=repo.head, ref="main"))
    old = finished(old)
    assert old.status == RunStatus.CANCELED
    assert f"Superseded by run #{new.number}" in old.error_message
    services.run_cancel(run=new, actor="t")
    assert finished(new).status == RunStatus.CANCELED


def test_manual_trigger_retry_and_rerun_from_the_ui(
    project, admin_user, member, client, tmp_path, running_worker
):
    repo = Repo(tmp_path)
    repo.commit(
        "flaky pipeline",
        {
            ".controlplane.yml": (
                "version: 1\njobs:\n"
                # Fails on its first attempt only.
                "  flaky: {kind: test, script: ['[ $CONTROLPLANE_JOB_ATTEMPT -gt 1 ]']}\n"
                "  after: {kind: test, needs: [flaky], script: ['echo after ran']}\n"
            )
        },
    )
    project.repository_url = repo.url
    project.save()
    first_sha = repo.head
    repo.commit("another commit", {"README.md": "x\n"})
    viewer = member("viewer")
    client.force_login(viewer)
    client.post(reverse("pipelines:run-trigger", args=[project.slug]), {"ref": "main"})
    assert not PipelineRun.objects.exists()  # viewers cannot start pipelines
    client.force_login(member("developer"))
    response = client.post(
        reverse("pipelines:run-trigger", args=[project.slug]), {"commit_sha": first_sha}
    )
    run = PipelineRun.objects.get()
    assert response["Location"] == run.get_absolute_url()
    run = finished(run)
    assert run.trigger == Trigger.MANUAL and run.commit_sha == first_sha
    assert run.status == RunStatus.FAILED
    assert run.jobs.get(name="after").status == JobStatus.SKIPPED
    # Retry the failed job: attempt 2 passes, the skipped job after it runs too.
    client.post(reverse("pipelines:job-retry", args=[project.slug, run.number, "flaky"]))
    run = wait_for(
        lambda: (
            (r := PipelineRun.objects.get(pk=run.pk)).is_terminal
            and r.jobs.get(name="after").is_terminal
            and r
        ),
        60,
    )
    assert run.status == RunStatus.SUCCEEDED
    assert run.jobs.get(name="flaky").attempt == 2
    assert "after ran" in log_of(run, "after")
    # Re-run the pipeline: a new run of the same commit.
    response = client.post(reverse("pipelines:run-rerun", args=[project.slug, run.number]))
    rerun = PipelineRun.objects.get(number=run.number + 1)
    assert (rerun.trigger, rerun.commit_sha) == (Trigger.RERUN, first_sha)
    finished(rerun)
