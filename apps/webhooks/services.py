"""The delivery ledger's writes: receiving a delivery, redelivering one, pruning the ledger.

Accept fast, start the run in a worker: the receiver only verifies the delivery
(:mod:`apps.webhooks.verify`) and inserts its row (the row is the outbox, ``awaiting_run``); the
runs are started by :mod:`apps.webhooks.outbox`, commit statuses sent by
:mod:`apps.webhooks.commit_status`.
"""

import hashlib
import json
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ConflictError, PermissionDeniedError
from apps.core.services import audit_log
from apps.projects.models import Project

from .choices import DELIVERY_UNTRUSTED, DeliveryStatus, RefType
from .models import RejectedDeliveryCount, WebhookDelivery
from .outbox import start_run, wake_run_starter
from .providers import BaseProvider, PayloadError, Push, get_provider
from .providers.base import FORM, form_payload
from .verify import delivery_verify, receiver_fields

#: The one answer to a bad signature, a missing secret and an unknown project alike.
FORBIDDEN = {"detail": "Forbidden."}
ALREADY_RECEIVED = {"detail": "already received"}
#: The project columns every receiver needs (the filters); each provider adds its credentials.
RECEIVER_PROJECT_FIELDS = ("id", "slug", "branch_filter", "tag_filter")


@dataclass(frozen=True)
class Reply:
    """What the receiver answers, and the ledger row that records it."""

    status_code: int
    body: dict[str, Any]
    # None for an unverified request over its source's per-minute allowance: only counted.
    delivery: WebhookDelivery | None


# --- receiving ------------------------------------------------------------------------------


def delivery_receive(
    *,
    provider: str,
    slug: str,
    headers: Mapping[str, str],
    body: bytes,
    content_type: str = "application/json",
    remote_addr: str | None = None,
) -> Reply:
    """Check one request to ``/hooks/<provider>/<slug>/``, record it and act on it.

    The signature is checked over the raw bytes before anything is parsed. A missing project,
    a project without a secret and a bad signature get the same 403, in about the same time.
    """
    source = get_provider(provider)
    project = _receiver_project(slug, source)
    verdict = delivery_verify(
        source=source, project=project, headers=headers, body=body, content_type=content_type
    )
    body_sha256 = hashlib.sha256(body).hexdigest()
    fields: dict[str, Any] = {
        "provider": provider,
        "project": project,
        "event": source.event(headers),
        "hook_id": source.hook_id(headers),
        "delivery_id": source.delivery_id(headers) or body_sha256,
        "headers": source.stored_headers(headers),
        "body_sha256": body_sha256,
        "body_size": len(body),
        "remote_addr": remote_addr,
    }
    if not verdict.ok:
        # No payload: whoever sent it could not sign it. Past a few a minute, only counted.
        if not _count_unverified(provider, slug, project, remote_addr):
            return Reply(403, FORBIDDEN, None)
        return _record(fields, DeliveryStatus.REJECTED, 403, FORBIDDEN, detail=verdict.reason)
    try:
        payload = _parse(body, content_type)
    except ValueError:
        return _record(fields, DeliveryStatus.INVALID, 400, {"detail": "Malformed JSON."})
    return _process(source, project, payload, fields)


def _receiver_project(slug: str, source: BaseProvider) -> Project | None:
    """The project the URL names, with only what a receiver needs (the API token, say, would
    cost one more decryption; the provider's credentials are decrypted as the row is read)."""
    sql = _receiver_project_sql(transaction.get_connection().vendor, source.name)
    return next(iter(Project.objects.raw(sql, [slug])), None)


@cache
def _receiver_project_sql(vendor: str, provider: str) -> str:
    # The ORM writes the query, once per process and provider: compiling it on every request
    # cost more CPU than the database spends running it (the receivers' hot path).
    fields = (*RECEIVER_PROJECT_FIELDS, *receiver_fields(get_provider(provider)))
    query = Project.objects.only(*fields).filter(slug="").order_by()[:1]
    return query.query.sql_with_params()[0]


def delivery_refuse_oversize(
    *, provider: str, slug: str, headers: Mapping[str, str], size: int, remote_addr: str | None
) -> Reply:
    """Record a body over ``WEBHOOK_MAX_BODY_BYTES`` (413), unread and unverified."""
    source = get_provider(provider)
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    fields = {
        "provider": provider,
        "project": Project.objects.filter(slug=slug).only("pk").first(),
        "event": source.event(headers),
        "hook_id": source.hook_id(headers),
        "delivery_id": source.delivery_id(headers) or f"oversize:{uuid.uuid4()}",
        "headers": source.stored_headers(headers),
        "body_size": min(size, 2**31 - 1),
        "remote_addr": remote_addr,
    }
    body = {"detail": f"The body is larger than {limit} bytes."}
    if not _count_unverified(provider, slug, fields["project"], remote_addr):
        return Reply(413, body, None)
    return _record(fields, DeliveryStatus.INVALID, 413, body, detail=body["detail"])


def _count_unverified(
    provider: str, slug: str, project: Project | None, remote_addr: str | None
) -> bool:
    """Count one unverified request of its source (provider, slug, address) in this minute;
    True while the source is within ``WEBHOOK_REJECTED_ROWS_PER_MINUTE`` (the request also gets
    its ledger row), False past it (the count is all that is kept). One statement, so
    concurrent requests of one source count exactly."""
    allowance = settings.WEBHOOK_REJECTED_ROWS_PER_MINUTE
    minute = timezone.now().replace(second=0, microsecond=0)
    connection = connections[RejectedDeliveryCount.objects.db]
    table = connection.ops.quote_name(RejectedDeliveryCount._meta.db_table)
    sql = (
        f"INSERT INTO {table}"  # noqa: S608 - the model's own table name, quoted
        " (provider, slug, project_id, remote_addr, minute, count, not_stored)"
        " VALUES (%s, %s, %s, %s, %s, 1, %s)"
        " ON CONFLICT (provider, slug, remote_addr, minute) DO UPDATE SET"
        f" count = {table}.count + 1,"
        f" not_stored = {table}.not_stored"
        f" + CASE WHEN {table}.count + 1 > %s THEN 1 ELSE 0 END"
        " RETURNING count"
    )
    params = [
        provider,
        slug[:100],
        project.pk if project is not None else None,
        remote_addr or "",
        connection.ops.adapt_datetimefield_value(minute),
        0 if allowance >= 1 else 1,
        allowance,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (count,) = cursor.fetchone()
    return count <= allowance


def delivery_redeliver(*, delivery: WebhookDelivery, actor: Any) -> WebhookDelivery:
    """Process a recorded delivery's payload again as a new delivery (it may start a new run,
    like GitHub's "Redeliver"). The new row points at the original.

    Low volume (a button, an API call), so synchronous: an accepted push's run is started in the
    same transaction, and the new row comes back with its run (or its error)."""
    if getattr(actor, "is_authenticated", False) and not has_role(
        actor, delivery.project_id, Role.DEVELOPER
    ):
        raise PermissionDeniedError("Redelivering needs the developer role.")
    original = WebhookDelivery.objects.select_related("project").get(pk=delivery.pk)
    if not original.can_redeliver:
        raise ConflictError(
            f"This delivery was {original.status}; there is no trusted payload to redeliver."
        )
    user = actor if getattr(actor, "is_authenticated", False) else None
    fields: dict[str, Any] = {
        "provider": original.provider,
        "project": original.project,
        "event": original.event,
        "hook_id": original.hook_id,
        "delivery_id": f"redelivery:{uuid.uuid4()}",
        "headers": original.headers,
        "body_sha256": original.body_sha256,
        "body_size": original.body_size,
        "redelivery_of": original,
        "redelivered_by": user,
    }
    with transaction.atomic():
        # One transaction: no worker sees the new row before its run is there.
        reply = _process(
            get_provider(original.provider), original.project, original.payload, fields, wake=False
        )
        new = reply.delivery
        if new.awaiting_run:
            start_run(new, actor=actor, answered=False)
        audit_log(
            actor=actor,
            action="webhookdelivery.redelivered",
            obj=new,
            project_id=original.project_id,
            to_state=new.status,
            data={"original": original.pk, "run": new.run_id},
        )
    return new


def delivery_prune(*, now: datetime | None = None) -> int:
    """Housekeeping (daily): delete rejected and invalid rows older than the retention period,
    and drop the payloads of older deliveries (they can no longer be redelivered). Without it a
    steady trickle of forged requests would grow the table for ever."""
    cutoff = (now or timezone.now()) - settings.WEBHOOK_DELIVERY_RETENTION
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff)
    deleted, _ = old.filter(status__in=DELIVERY_UNTRUSTED).delete()
    counted, _ = RejectedDeliveryCount.objects.filter(minute__lt=cutoff).delete()
    deleted += counted
    # Not the payload of a push still waiting for its run: the run is started from it.
    cleared = old.filter(payload__isnull=False, awaiting_run=False).update(payload=None)
    return deleted + cleared


# --- the steps --------------------------------------------------------------------------------


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON object in the body (GitHub and Gitea may also send it form-encoded as
    ``payload=``). Raises ValueError for anything else."""
    if content_type == FORM:
        field = form_payload(body)
        if field is None:
            raise ValueError("no payload field")
        body = field
    payload = json.loads(body, parse_constant=_refuse_constant)
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    if b"\\u0000" in body:
        # PostgreSQL's jsonb cannot hold NUL characters.
        payload = _without_nul(payload)
    return payload


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _process(
    source: BaseProvider,
    project: Project,
    payload: dict[str, Any],
    fields: dict[str, Any],
    *,
    wake: bool = True,
) -> Reply:
    """From an authenticated payload to an answer: ping, ignore, refuse, or accept a push (whose
    run a worker starts; ``wake`` sends it word)."""
    event = fields["event"]
    kind = source.kind(event=event, payload=payload)
    if kind == "ping":
        return _record(fields, DeliveryStatus.PING, 200, {"detail": "pong"}, payload=payload)
    if kind is None:
        body = {"detail": f"Event '{event}' ignored: only pushes start pipelines."}
        return _record(fields, DeliveryStatus.IGNORED, 202, body, payload=payload)
    try:
        push = source.parse_push(payload)
    except PayloadError as exc:
        return _record(fields, DeliveryStatus.INVALID, 400, {"detail": str(exc)}, payload=payload)
    fields = {**fields, "ref": push.ref[:255], "commit_sha": push.sha}
    reason = _ignore_reason(project, push)
    if reason:
        return _record(fields, DeliveryStatus.IGNORED, 202, {"detail": reason}, payload=payload)
    return _accept(payload, fields, wake=wake)


def _ignore_reason(project: Project, push: Push) -> str:
    if push.ref_type is None:
        return f"Ref '{push.ref}' is neither a branch nor a tag."
    label = "Branch" if push.ref_type == RefType.BRANCH else "Tag"
    if push.deleted:
        return f"{label} '{push.name}' was deleted."
    if not project.ref_allowed(push.ref_type, push.name):
        return f"{label} '{push.name}' does not match the project's {push.ref_type} filter."
    return ""


def _accept(payload: dict[str, Any], fields: dict[str, Any], *, wake: bool) -> Reply:
    """Record an accepted push: the delivery row, the request's only write. The run is started
    by a worker (:func:`apps.webhooks.outbox.delivery_start_runs`), woken after the commit."""
    try:
        delivery = _insert_accepted(payload, fields)
    except IntegrityError:
        # The claim is unique per (project, provider, delivery id) among accepted rows: a copy
        # arriving at the same moment waits for the first insert's commit, then fails here.
        return _record(fields, DeliveryStatus.DUPLICATE, 202, ALREADY_RECEIVED, payload=payload)
    if wake:
        transaction.on_commit(wake_run_starter)  # at once when not inside a transaction
    return Reply(202, delivery.response_body, delivery)


def _insert_accepted(payload: dict[str, Any], fields: dict[str, Any]) -> WebhookDelivery:
    """Insert the accepted row with its answer, which names the row.

    PostgreSQL: the id is drawn from the table's sequence first, so the row goes in with its
    answer in ONE insert, in autocommit mode (the statement is its own transaction: no
    BEGIN/COMMIT round trips; inside a transaction, a savepoint, so that a failed insert does not
    abort it). Elsewhere (SQLite: local, no sequence) the answer is added in the same transaction.
    """
    row = {
        **fields,
        "status": DeliveryStatus.ACCEPTED,
        "http_status": 202,
        "payload": payload,
        "awaiting_run": True,
    }
    connection = transaction.get_connection()
    sequence = (
        _delivery_id_sequence(connection.alias) if connection.vendor == "postgresql" else None
    )
    if sequence is None:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(**row)
            delivery.response_body = _accepted_body(delivery.pk)
            delivery.save(update_fields=["response_body"])
        return delivery
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [sequence])
        (pk,) = cursor.fetchone()
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        return WebhookDelivery.objects.create(pk=pk, response_body=_accepted_body(pk), **row)


def _accepted_body(pk: int) -> dict[str, Any]:
    return {"detail": "accepted", "delivery": pk}


@cache
def _delivery_id_sequence(alias: str) -> str | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_serial_sequence(%s, %s)",
            [WebhookDelivery._meta.db_table, WebhookDelivery._meta.pk.column],
        )
        return cursor.fetchone()[0]


def _record(
    fields: Mapping[str, Any],
    status: str,
    http_status: int,
    body: dict[str, Any],
    *,
    payload: dict[str, Any] | None = None,
    detail: str = "",
) -> Reply:
    delivery = WebhookDelivery.objects.create(
        **fields,
        status=status,
        http_status=http_status,
        response_body=body,
        payload=payload,
        detail=(detail or str(body.get("detail", "")))[:500],
    )
    return Reply(http_status, body, delivery)
