"""The delivery row's state machine: a pending delivery ends once (sent, failed or skipped)
through core.state_transition, with one audit row; a retry to come is no move."""

import itertools

import pytest
from django.contrib.contenttypes.models import ContentType

from apps.core.exceptions import IllegalTransition
from apps.core.models import AuditEvent
from apps.core.services import state_transition
from apps.core.transient import RETRY_TRANSIENT
from apps.notifications.choices import DELIVERY_TRANSITIONS, DeliveryStatus
from apps.notifications.models import NotificationDelivery
from apps.notifications.services import dispatch
from apps.notifications.tasks import deliver_task
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery(project, webhook_target, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        [row] = dispatch(event="build.failed", obj=RunFactory(project=project, status="failed"))
    return row


def _trail(delivery):
    ct = ContentType.objects.get_for_model(NotificationDelivery)
    return list(
        AuditEvent.objects.filter(content_type=ct, object_id=str(delivery.pk))
        .order_by("id")
        .values_list("action", "actor_label", "from_state", "to_state", "reason")
    )


def test_a_sent_delivery_leaves_one_audit_row(delivery, hook_server):
    hook_server.codes = [503]  # one retry first: no move, no audit row
    deliver_task.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    [(action, actor, from_state, to_state, reason)] = _trail(delivery)
    assert (action, from_state, to_state, reason) == (
        "notificationdelivery.sent",
        "pending",
        "sent",
        "",
    )
    assert actor == "notifications"


def test_a_failure_is_audited_with_its_reason(delivery, hook_server):
    hook_server.codes = [410]
    deliver_task.apply(args=[delivery.pk])
    [(action, _actor, _from, to_state, reason)] = _trail(delivery)
    assert (action, to_state) == ("notificationdelivery.failed", "failed")
    assert reason.startswith("HTTP 410")


def test_408_is_transient_as_everywhere_else(delivery, hook_server):
    hook_server.codes = [408]
    deliver_task.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 2)


def test_the_deliver_task_uses_the_shared_retry_policy():
    for name, value in RETRY_TRANSIENT.items():
        assert getattr(deliver_task, name) == value


@pytest.mark.parametrize(
    ("start", "to"), list(itertools.product(DeliveryStatus.values, DeliveryStatus.values))
)
def test_every_move_of_the_table(project, webhook_target, start, to):
    row = NotificationDelivery.objects.create(
        project=project,
        target=webhook_target,
        kind="webhook",
        event="test",
        event_id="00000000-0000-0000-0000-000000000001",
        object_type="target",
        object_id=webhook_target.pk,
        status=start,
    )
    audit_before = AuditEvent.objects.count()
    move = lambda: state_transition(  # noqa: E731
        instance=row, to=to, table=DELIVERY_TRANSITIONS, actor="t", project_id=project.pk
    )
    if to in DELIVERY_TRANSITIONS[start]:
        move()
        assert NotificationDelivery.objects.get(pk=row.pk).status == to
        assert AuditEvent.objects.count() == audit_before + 1
    else:
        with pytest.raises(IllegalTransition):
            move()
        assert NotificationDelivery.objects.get(pk=row.pk).status == start
        assert AuditEvent.objects.count() == audit_before
