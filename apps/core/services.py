"""The audit log and the one state-transition routine every state machine goes through."""

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.db import models, transaction
from django.utils import timezone

from .exceptions import IllegalTransition
from .models import AuditEvent, WorkerPing

M = TypeVar("M", bound=models.Model)


def actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return actor.get_username()


def audit_log(
    *,
    actor: Any,
    action: str,
    obj: models.Model,
    project_id: int | None = None,
    from_state: str = "",
    to_state: str = "",
    reason: str = "",
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Record an action. ``actor`` is a user, a system name ("reaper") or None.

    Inside :func:`audit_batch` the row is inserted with the block's others when it ends."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    event = AuditEvent(
        actor=user,
        actor_label=actor_label(actor),
        action=action,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        project_id=project_id,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        data=dict(data or {}),
    )
    pending = getattr(_audit_pending, "events", None)
    if pending is not None:
        pending.append(event)
    else:
        event.save(force_insert=True)
    return event


_audit_pending = threading.local()


@contextlib.contextmanager
def audit_batch() -> Iterator[None]:
    """Insert the audit rows written inside the block in one statement when it ends: for the
    hot paths that move several objects in one transaction (a job finishing queues the next
    and may end the run). Use it inside that transaction, around code that rolls no savepoint
    back (a row of a rolled-back savepoint would still be written); an exception out of the
    block writes none. Nested blocks write with the outermost."""
    if getattr(_audit_pending, "events", None) is not None:
        yield
        return
    _audit_pending.events = events = []
    try:
        yield
    finally:
        _audit_pending.events = None
    if events:
        AuditEvent.objects.bulk_create(events)


def _keep_related(source: models.Model, target: models.Model) -> None:
    """Give the freshly locked row the related objects the caller had loaded (its run, its
    project, …) when they are the same rows, so the audit row's description costs no queries.

    Only forward foreign keys: they cannot have changed under the lock we now hold unless the
    id did, and then the cached object is not used.
    """
    for name, value in source._state.fields_cache.items():
        try:
            relation = source._meta.get_field(name)
        except FieldDoesNotExist:  # a reverse relation's cache: not ours to copy
            continue
        if relation.many_to_one and getattr(target, relation.attname) == getattr(value, "pk", None):
            target._state.fields_cache.setdefault(name, value)


def state_transition(
    *,
    instance: M,
    to: str,
    table: Mapping[str, Iterable[str]],
    actor: Any,
    reason: str = "",
    timestamps: Mapping[str, str] | None = None,
    project_id: int | None = None,
    update: Mapping[str, Any] | None = None,
    on_commit: Callable[[M], None] | None = None,
    field: str = "status",
    held_lock: bool = False,
) -> M:
    """Move ``instance`` to state ``to`` or raise :class:`IllegalTransition`.

    Locks the row, re-reads its state (the caller's copy may be stale), checks ``table``
    (state → allowed next states), stamps ``timestamps`` (state → datetime field set on entry),
    applies ``update``, writes one audit row, and runs ``on_commit`` after the transaction
    commits. Returns the locked, updated instance.

    ``held_lock=True``: the caller read ``instance`` with ``select_for_update()`` in the open
    transaction, so it is current and locked; it is changed in place, in the caller's
    transaction, without a second read or a savepoint (the hot path of claiming and finishing
    jobs: three round trips fewer per transition).
    """
    model = type(instance)
    if held_lock and not transaction.get_connection().in_atomic_block:
        raise RuntimeError("held_lock=True needs the caller's transaction and row lock")
    with contextlib.nullcontext() if held_lock else transaction.atomic():
        if held_lock:
            locked = instance
        else:
            locked = model.objects.select_for_update().get(pk=instance.pk)
            _keep_related(instance, locked)
        current = getattr(locked, field)
        if to not in table.get(current, ()):
            raise IllegalTransition(obj=locked, current=current, target=to)
        setattr(locked, field, to)
        changed = [field]
        stamp = (timestamps or {}).get(to)
        if stamp:
            setattr(locked, stamp, timezone.now())
            changed.append(stamp)
        for name, value in (update or {}).items():
            setattr(locked, name, value)
            changed.append(name)
        if any(f.name == "modified" for f in model._meta.concrete_fields):
            changed.append("modified")
        locked.save(update_fields=changed)
        audit_log(
            actor=actor,
            action=f"{model._meta.model_name}.{to}",
            obj=locked,
            project_id=project_id,
            from_state=current,
            to_state=to,
            reason=reason,
        )
        if on_commit is not None:
            locked._previous_state = current
            transaction.on_commit(lambda: on_commit(locked))
    # Keep the caller's object in step with the row.
    for name in changed if locked is not instance else ():
        setattr(instance, name, getattr(locked, name))
    return locked


@dataclass(frozen=True)
class StateMachine(Generic[M]):
    """One state machine: its transition table, the time stamped on entering a state, where the
    object's project is, and what happens after a change commits.

    Calling it moves one object, named by keyword as the machine's ``noun``
    (``run_transition(run=run, to=...)``), through :func:`state_transition`. Every app's
    ``*_transition`` service is one of these, so the locking, the check and the audit row are
    written once.
    """

    noun: str
    table: Mapping[str, Iterable[str]]
    timestamps: Mapping[str, str]
    project_id: Callable[[M], int | None]
    on_commit: Callable[[M], None] | None = None

    def __call__(
        self,
        *,
        to: str,
        actor: Any,
        reason: str = "",
        update: Mapping[str, Any] | None = None,
        held_lock: bool = False,
        **obj: M,
    ) -> M:
        if list(obj) != [self.noun]:
            raise TypeError(f"Name the object to move as {self.noun}=…")
        instance = obj[self.noun]
        return state_transition(
            instance=instance,
            to=to,
            table=self.table,
            timestamps=self.timestamps,
            actor=actor,
            reason=reason,
            project_id=self.project_id(instance),
            update=update,
            on_commit=self.on_commit,
            held_lock=held_lock,
        )


def worker_ping_create(*, user: Any) -> WorkerPing:
    from .tasks import worker_ping_task

    ping = WorkerPing.objects.create(requested_by=user if user and user.is_authenticated else None)
    transaction.on_commit(lambda: worker_ping_task.delay(ping.pk))
    return ping


def worker_ping_answer(*, ping_id: int, worker: str) -> None:
    WorkerPing.objects.filter(pk=ping_id, answered_at__isnull=True).update(
        answered_at=timezone.now(), worker=worker[:200]
    )
