"""From a signal to the ledger: receivers only enqueue ids after commit; dispatch makes one
delivery per target that wants the event, once."""

import uuid

import pytest

from apps.notifications.models import NotificationDelivery, NotificationTarget
from apps.notifications.services import delivery_sweep, dispatch
from apps.notifications.tasks import deliver_task, dispatch_task
from apps.pipelines.models import PipelineRun
from apps.pipelines.signals import run_status_changed
from apps.releases import signals as release_signals
from apps.releases.models import Approval, Deployment, Promotion
from apps.releases.services import promotion_request
from tests.factories import ProjectFactory, RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch, hook):
    calls = []
    monkeypatch.setattr(dispatch_task, "delay", lambda *args: calls.append(args))
    return calls


@pytest.fixture
def hook(project):
    return NotificationTarget.objects.create(
        project=project, kind="webhook", destination="http://127.0.0.1:9/x", secret="s" * 20
    )


def test_a_receiver_enqueues_ids_after_commit_only(
    project, queued, django_capture_on_commit_callbacks
):
    run = RunFactory(project=project, status="failed")
    with django_capture_on_commit_callbacks(execute=True):
        run_status_changed.send(
            sender=PipelineRun, run=run, from_status="running", to_status="failed"
        )
        assert queued == []  # nothing before the commit
    [(event, source, source_id, event_id, extra, target_id)] = queued
    assert (event, source, source_id, target_id) == ("build.failed", "run", run.pk, None)
    assert extra == {"transition": {"from": "running", "to": "failed"}}
    uuid.UUID(event_id)


@pytest.mark.parametrize("to_status", ["queued", "running", "succeeded", "canceled"])
def test_only_failed_builds_are_notified(
    project, queued, django_capture_on_commit_callbacks, to_status
):
    run = RunFactory(project=project, status=to_status)
    with django_capture_on_commit_callbacks(execute=True):
        run_status_changed.send(sender=PipelineRun, run=run, from_status="", to_status=to_status)
    assert queued == []


@pytest.mark.parametrize(
    ("to_status", "event"),
    [
        ("pending", "promotion.pending"),
        ("approved", "promotion.approved"),
        ("rejected", "promotion.rejected"),
        ("expired", "promotion.expired"),
        ("superseded", "promotion.superseded"),
        ("deployed", "promotion.deployed"),
        ("failed", "promotion.failed"),
        ("deploying", None),
    ],
)
def test_promotion_statuses(
    release, production, queued, django_capture_on_commit_callbacks, to_status, event
):
    promotion = Promotion.objects.create(release=release, environment=production, status=to_status)
    with django_capture_on_commit_callbacks(execute=True):
        release_signals.promotion_status_changed.send(
            sender=Promotion, promotion=promotion, from_status="pending", to_status=to_status
        )
    assert [q[0] for q in queued] == ([event] if event else [])


@pytest.mark.parametrize(
    ("is_rollback", "to_status", "event"),
    [
        (False, "succeeded", "deployment.succeeded"),
        (False, "failed", "deployment.failed"),
        (False, "rolled_back", "deployment.rolled_back"),
        (True, "succeeded", "deployment.rolled_back"),
        (True, "failed", "deployment.failed"),
        (False, "running", None),
    ],
)
def test_deployment_statuses(
    release, production, queued, django_capture_on_commit_callbacks, is_rollback, to_status, event
):
    deployment = Deployment.objects.create(
        release=release, environment=production, status=to_status, is_rollback=is_rollback
    )
    with django_capture_on_commit_callbacks(execute=True):
        release_signals.deployment_status_changed.send(
            sender=Deployment, deployment=deployment, from_status="running", to_status=to_status
        )
    assert [q[0] for q in queued] == ([event] if event else [])


def test_an_approval_is_about_its_promotion(
    release, production, member, hook, django_capture_on_commit_callbacks
):
    promotion = Promotion.objects.create(release=release, environment=production)
    approval = Approval.objects.create(
        promotion=promotion, user=member("approver", "alice"), decision="approve", channel="slack"
    )
    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = dispatch(event="approval.recorded", obj=approval)
    assert (delivery.object_type, delivery.object_id) == ("promotion", promotion.pk)
    assert delivery.payload["approval"]["user"] == "alice"
    assert delivery.payload["approval"]["channel"] == "slack"
    assert delivery.payload["promotion"]["approvals"][0]["user"] == "alice"


def test_the_real_promotion_request_is_notified(
    project, release, production, hook, queued, admin_user, django_capture_on_commit_callbacks
):
    """The releases service's own promotion_status_changed (after commit) is notified exactly
    once, as ``promotion.pending``."""
    with django_capture_on_commit_callbacks(execute=True):
        promotion = promotion_request(release=release, environment=production, actor=admin_user)
    assert [(q[0], q[2]) for q in queued] == [("promotion.pending", promotion.pk)]


def test_targets_are_chosen_by_project_event_and_state(
    project, release, production, django_capture_on_commit_callbacks
):
    def target(**fields):
        return NotificationTarget.objects.create(
            **{"project": project, "kind": "slack", "destination": "C0ALL", **fields}
        )

    everything = target()
    deploys_only = target(events=["deployment.succeeded"])
    promotions = target(events=["promotion.pending", "promotion.approved"])
    target(enabled=False)
    NotificationTarget.objects.create(project=ProjectFactory(), kind="slack", destination="C0OTHER")
    email = NotificationTarget.objects.create(project=project, kind="email", destination="a@b.c")
    promotion = Promotion.objects.create(release=release, environment=production)

    with django_capture_on_commit_callbacks(execute=False):
        pending = dispatch(event="promotion.pending", obj=promotion)
        recorded = dispatch(
            event="approval.recorded",
            obj=Approval(promotion=promotion, user=project.created_by, decision="approve"),
        )
    assert {d.target for d in pending} == {everything, promotions, email}
    assert {d.target for d in recorded} == {everything}  # email takes no per-click mail
    assert deploys_only not in {d.target for d in pending}


def test_dispatch_is_idempotent_per_event(
    project, hook, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(deliver_task, "delay", lambda pk: sent.append(pk))
    run = RunFactory(project=project, status="failed")
    event_id = uuid.uuid4()
    with django_capture_on_commit_callbacks(execute=True):
        first = dispatch(event="build.failed", obj=run, event_id=event_id)
        again = dispatch(event="build.failed", obj=run, event_id=event_id)  # a repeated message
    assert len(first) == 1 and again == []
    assert NotificationDelivery.objects.count() == 1
    assert sent == [first[0].pk]


def test_no_enabled_target_no_message(project, monkeypatch, django_capture_on_commit_callbacks):
    calls = []
    monkeypatch.setattr(dispatch_task, "delay", lambda *args: calls.append(args))
    NotificationTarget.objects.create(
        project=project, kind="slack", destination="C0X", enabled=False
    )
    NotificationTarget.objects.create(project=ProjectFactory(), kind="slack", destination="C0Y")
    run = RunFactory(project=project, status="failed")
    with django_capture_on_commit_callbacks(execute=True):
        run_status_changed.send(
            sender=PipelineRun, run=run, from_status="running", to_status="failed"
        )
    assert calls == []


def test_no_targets_no_rows(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch(event="build.failed", obj=RunFactory(project=project)) == []
    assert NotificationDelivery.objects.count() == 0


def test_the_sweeper_resends_forgotten_deliveries(
    project, hook, django_capture_on_commit_callbacks, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = dispatch(event="build.failed", obj=RunFactory(project=project))
    sent = []
    monkeypatch.setattr(deliver_task, "delay", lambda pk: sent.append(pk))
    assert delivery_sweep() == 0  # fresh: its message may still be on its way
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        created=timezone.now() - timedelta(minutes=20)
    )
    assert delivery_sweep() == 1
    assert sent == [delivery.pk]
