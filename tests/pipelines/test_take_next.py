"""A worker that finishes a job runs the next ready job of the run itself when it serves that
job's queue: claimed in the finishing transaction, with its audit rows, and no message sent
for it. Jobs it may not take are queued and sent as before."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.models import AuditEvent
from apps.pipelines import services
from apps.pipelines.choices import JobStatus, RunStatus
from apps.pipelines.models import Job
from apps.pipelines.routing import job_queue
from apps.pipelines.services import scheduling
from apps.pipelines.tasks import next_job_taker

pytestmark = pytest.mark.django_db

CHAIN = [
    {"name": "test", "kind": "test", "script": ["true"]},
    {"name": "build", "kind": "build", "needs": ["test"], "script": ["true"]},
    {"name": "deploy", "needs": ["build"], "script": ["true"]},
]


@pytest.fixture
def sent(monkeypatch):
    """The job ids given to the broker (the real send, recorded on its way)."""
    ids: list[int] = []
    real = scheduling._send_job

    def send(job, *, resend=False):
        ids.append(job.pk)
        real(job, resend=resend)

    monkeypatch.setattr(scheduling, "_send_job", send)
    return ids


def _finish(job: Job, take) -> Job:
    return services.job_finish(job_id=job.pk, worker="w", succeeded=True, exit_code=0, take=take)


def test_the_next_job_is_claimed_for_the_finishing_worker_and_not_sent(
    project, admin_user, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(project=project, actor=admin_user, jobs=CHAIN)
    test, build, deploy = run.jobs.order_by("id")
    assert sent == [test.pk]
    claimed = services.job_claim(job_id=test.pk, worker="w")
    with django_capture_on_commit_callbacks(execute=True):
        finished = _finish(claimed, take=lambda job: True)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.taken.pk == build.pk
    build.refresh_from_db()
    assert (build.status, build.worker) == (JobStatus.RUNNING, "w")
    assert build.queued_at and build.started_at >= build.queued_at
    assert sent == [test.pk]  # nothing went to the broker for the job taken
    actions = list(
        AuditEvent.objects.filter(object_id=str(build.pk), action__startswith="job.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["job.queued", "job.running"]

    with django_capture_on_commit_callbacks(execute=True):
        last = _finish(finished.taken, take=lambda job: True).taken
    assert last.pk == deploy.pk
    with django_capture_on_commit_callbacks(execute=True):
        assert _finish(last, take=lambda job: True).taken is None
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert sent == [test.pk]


def test_a_job_the_worker_may_not_take_is_queued_and_sent(
    project, admin_user, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(project=project, actor=admin_user, jobs=CHAIN)
    test, build, _ = run.jobs.order_by("id")
    claimed = services.job_claim(job_id=test.pk, worker="w")
    with django_capture_on_commit_callbacks(execute=True):
        finished = _finish(claimed, take=lambda job: False)
    assert finished.taken is None
    build.refresh_from_db()
    assert (build.status, build.worker) == (JobStatus.QUEUED, "")
    assert sent == [test.pk, build.pk]


def test_a_failed_job_hands_nothing_on(project, admin_user, sent):
    run = services.run_create(project=project, actor=admin_user, jobs=CHAIN)
    test = run.jobs.get(name="test")
    services.job_claim(job_id=test.pk, worker="w")
    failed = services.job_finish(
        job_id=test.pk, worker="w", succeeded=False, exit_code=1, take=lambda job: True
    )
    assert failed.taken is None
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert set(run.jobs.values_list("status", flat=True)) == {JobStatus.FAILED, JobStatus.SKIPPED}


def test_the_taker_takes_jobs_of_the_queues_the_worker_consumes_only(project, admin_user, settings):
    from controlplane.celery import app

    run = services.run_create(project=project, actor=admin_user, jobs=CHAIN)
    test, build, deploy = run.jobs.order_by("id")
    queues = app.amqp.queues
    queues.select([job_queue(test), job_queue(deploy)])  # what `worker -Q test,default` does
    try:
        take = next_job_taker(app)
        assert [take(job) for job in (test, build, deploy)] == [True, False, True]
        # A job whose timeout no longer fits in the task's time limit is sent instead.
        settings.CELERY_TASK_SOFT_TIME_LIMIT = deploy.timeout_seconds
        assert next_job_taker(app)(deploy) is False
        settings.JOBS_TAKE_NEXT = False  # every ready job goes to the broker
        assert next_job_taker(app) is None
    finally:
        queues._consume_from = None


def test_finishing_and_taking_costs_no_more_statements_than_finishing(project, admin_user):
    """The claim rides on the finish's locks: one UPDATE more, the audit rows in one INSERT."""
    counts = []
    for take in (lambda job: False, lambda job: True):
        run = services.run_create(project=project, actor=admin_user, jobs=CHAIN)
        test = run.jobs.get(name="test")
        services.job_claim(job_id=test.pk, worker="w")
        with CaptureQueriesContext(connection) as queries:
            _finish(test, take=take)
        counts.append(len(queries))
    assert counts[1] == counts[0] + 1, counts


def test_the_worker_preparing_a_run_takes_its_first_job(
    project, tmp_path, sent, django_capture_on_commit_callbacks
):
    from apps.pipelines.commits import Commit

    from .gitrepo import Repo

    repo = Repo(tmp_path)
    spec = (
        "version: 1\njobs:\n"
        "  first: {kind: test, script: ['true']}\n"
        "  second: {kind: test, script: ['true']}\n"
    )
    sha = repo.commit("two jobs at once", {".controlplane.yml": spec})
    project.repository_url = repo.url
    project.save()
    run = services.run_request(
        project=project, actor="t", commit=Commit(sha=sha, ref="main"), send_prepare=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        prepared = services.run_prepare(run_id=run.pk, take=lambda job: True, worker="w")
    assert prepared.status != RunStatus.FAILED, prepared.error_message
    first, second = prepared.jobs.order_by("id")
    assert prepared.taken.pk == first.pk
    assert (first.status, first.worker) == (JobStatus.RUNNING, "w")
    assert prepared.status == RunStatus.RUNNING
    assert sent == [second.pk]  # both were ready: the other one goes to the broker

    other = services.run_request(
        project=project, actor="t", commit=Commit(sha=sha, ref="main"), send_prepare=False
    )
    assert services.run_prepare(run_id=other.pk).taken is None  # no taker: all are sent
