"""Every move of every state machine: illegal ones are refused and change nothing, legal ones
write exactly one audit row. The tables are read from choices.py, so a new state is covered."""

import itertools

import pytest

from apps.core.exceptions import IllegalTransition
from apps.core.models import AuditEvent
from apps.pipelines.choices import JOB_TRANSITIONS, RUN_TRANSITIONS, JobStatus, RunStatus
from apps.pipelines.services import job_transition, run_transition
from apps.releases.choices import (
    DEPLOYMENT_TRANSITIONS,
    PROMOTION_TRANSITIONS,
    DeploymentStatus,
    PromotionStatus,
)
from apps.releases.services import deployment_transition, promotion_transition
from tests.factories import DeploymentFactory, JobFactory, PromotionFactory, RunFactory


def _run(status):
    return RunFactory(status=status)


def _job(status):
    return JobFactory(status=status)


def _deployment(status):
    return DeploymentFactory(status=status)


def _promotion(status):
    return PromotionFactory(status=status)


MACHINES = {
    "run": (
        RunStatus,
        RUN_TRANSITIONS,
        _run,
        lambda o, to: run_transition(run=o, to=to, actor="t"),
    ),
    "job": (
        JobStatus,
        JOB_TRANSITIONS,
        _job,
        lambda o, to: job_transition(job=o, to=to, actor="t"),
    ),
    "deployment": (
        DeploymentStatus,
        DEPLOYMENT_TRANSITIONS,
        _deployment,
        lambda o, to: deployment_transition(deployment=o, to=to, actor="t"),
    ),
    "promotion": (
        PromotionStatus,
        PROMOTION_TRANSITIONS,
        _promotion,
        lambda o, to: promotion_transition(promotion=o, to=to, actor="t"),
    ),
}

CASES = [
    pytest.param(machine, src, dst, id=f"{machine}:{src}->{dst}")
    for machine, (statuses, _table, _make, _move) in MACHINES.items()
    for src, dst in itertools.product(statuses.values, statuses.values)
]


def test_tables_cover_every_status():
    for statuses, table, _make, _move in MACHINES.values():
        assert set(table) == set(statuses.values)
        for targets in table.values():
            assert set(targets) <= set(statuses.values)


@pytest.mark.django_db
@pytest.mark.parametrize(("machine", "src", "dst"), CASES)
def test_transition(machine, src, dst, django_capture_on_commit_callbacks):
    statuses, table, make, move = MACHINES[machine]
    obj = make(src)
    before = AuditEvent.objects.count()
    legal = dst in table[src]
    with django_capture_on_commit_callbacks(execute=False):
        if legal:
            moved = move(obj, dst)
            assert moved.status == dst
        else:
            with pytest.raises(IllegalTransition):
                move(obj, dst)
    obj.refresh_from_db()
    if legal:
        assert obj.status == dst
        events = list(AuditEvent.objects.all()[: AuditEvent.objects.count() - before])
        assert len(events) == 1
        event = events[0]
        assert (event.from_state, event.to_state, event.object_id) == (src, dst, str(obj.pk))
        assert event.actor_label == "t"
    else:
        assert obj.status == src
        assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_transition_stamps_times(django_capture_on_commit_callbacks):
    job = JobFactory(status=JobStatus.QUEUED)
    with django_capture_on_commit_callbacks(execute=False):
        job_transition(job=job, to=JobStatus.RUNNING, actor="t")
        job_transition(job=job, to=JobStatus.SUCCEEDED, actor="t")
    job.refresh_from_db()
    assert job.started_at is not None
    assert job.finished_at >= job.started_at


@pytest.mark.django_db
def test_transition_uses_the_row_not_a_stale_copy(django_capture_on_commit_callbacks):
    run = RunFactory(status=RunStatus.QUEUED)
    stale = type(run).objects.get(pk=run.pk)
    run_transition(run=run, to=RunStatus.RUNNING, actor="t")
    run_transition(run=run, to=RunStatus.SUCCEEDED, actor="t")
    # The stale copy still says "queued" (→ failed would be legal); the row says succeeded.
    with pytest.raises(IllegalTransition):
        run_transition(run=stale, to=RunStatus.FAILED, actor="t")


@pytest.mark.django_db(transaction=True)
def test_audit_batch_writes_its_rows_in_one_insert_at_the_end():
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from apps.core.services import audit_batch

    job = JobFactory(status=JobStatus.QUEUED)
    before = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        with audit_batch():
            job_transition(job=job, to=JobStatus.RUNNING, actor="t", held_lock=False)
            with audit_batch():  # nested: written with the outer block's
                job_transition(job=job, to=JobStatus.SUCCEEDED, actor="t")
            assert AuditEvent.objects.count() == before  # not yet
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "core_auditevent"')]
    assert len(inserts) == 1
    rows = AuditEvent.objects.filter(object_id=str(job.pk)).order_by("id")
    assert [r.action for r in rows] == ["job.running", "job.succeeded"]
    assert all(r.created for r in rows)


@pytest.mark.django_db(transaction=True)
def test_audit_batch_writes_nothing_when_the_block_fails():
    from django.db import transaction

    from apps.core.services import audit_batch

    job = JobFactory(status=JobStatus.QUEUED)
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic(), audit_batch():
        job_transition(job=job, to=JobStatus.RUNNING, actor="t")
        raise RuntimeError("boom")
    assert AuditEvent.objects.count() == before
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    # Outside a block, each row is written at once again.
    job_transition(job=job, to=JobStatus.RUNNING, actor="t")
    assert AuditEvent.objects.count() == before + 1
