"""What a lost job attempt left running is ended before the job runs again (orphans.py), and
the reaper holds back a retry while an orphan it cannot reach may still run."""

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.processes import group_alive
from apps.pipelines import sweeper
from apps.pipelines.choices import JobStatus
from apps.pipelines.models import Job
from apps.pipelines.orphans import group_entry, host_id, processes_add, processes_end
from apps.pipelines.services import run_create


def orphan() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: S607


def test_a_group_on_this_host_is_ended_and_a_reused_pid_is_not_touched():
    proc = orphan()
    try:
        ending = processes_end(processes_add({}, group=group_entry(proc.pid)))
        assert ending.ended and ending.settled
        proc.wait(timeout=5)
        assert not group_alive(proc.pid)
        other = orphan()  # a pid recorded with another start time is someone else's now
        stale = processes_add({}, group={"pgid": other.pid, "start": "1"})
        assert processes_end(stale).gone and group_alive(other.pid)
    finally:
        for p in (proc, locals().get("other")):
            if p is not None:
                p.kill()
                p.wait()


def test_another_hosts_group_is_unreachable():
    ending = processes_end({"host": "elsewhere", "groups": [{"pgid": 1, "start": "1"}]})
    assert not ending.settled and "cannot reach process group 1 on elsewhere" in ending.describe()


@pytest.mark.django_db
def test_the_reaper_waits_for_an_unreachable_orphan_until_the_jobs_timeout(project, admin_user):
    run = run_create(
        project=project, actor=admin_user, jobs=[{"name": "j", "script": ["true"], "timeout": 60}]
    )
    silent = timezone.now() - timedelta(minutes=5)
    processes = {"host": "elsewhere", "groups": [{"pgid": 4242, "start": "1"}], "containers": []}
    Job.objects.filter(run=run).update(
        status=JobStatus.RUNNING, worker="elsewhere:1", heartbeat_at=silent, processes=processes
    )
    assert sweeper.job_reap_lost(now=silent + timedelta(seconds=50)) == 0
    assert Job.objects.get(run=run).status == JobStatus.RUNNING
    assert sweeper.job_reap_lost(now=silent + timedelta(seconds=61)) == 1
    job = Job.objects.get(run=run)
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 2)
    assert job.processes == processes  # kept: the next attempt's worker tries again


@pytest.mark.django_db
def test_the_reaper_ends_a_local_orphan_before_it_retries(project, admin_user):
    run = run_create(project=project, actor=admin_user, jobs=[{"name": "j", "script": ["true"]}])
    proc = orphan()
    try:
        Job.objects.filter(run=run).update(
            status=JobStatus.RUNNING,
            worker=f"{host_id()}:1",
            heartbeat_at=timezone.now() - timedelta(minutes=5),
            processes=processes_add({}, group=group_entry(proc.pid)),
        )
        assert sweeper.job_reap_lost() == 1
        proc.wait(timeout=5)
        job = Job.objects.get(run=run)
        assert (job.status, job.processes) == (JobStatus.QUEUED, {})
        from apps.core.models import AuditEvent

        reason = AuditEvent.objects.get(actor_label="reaper", object_id=str(job.pk)).reason
        assert f"ended process group {proc.pid}" in reason
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
