"""Every write of the webhooks app: receiving a delivery, starting the runs of accepted pushes,
redelivering one, pruning the ledger, and reporting commit statuses back to the Git server.

Accept fast, start the run in a worker: the receiver only checks the signature and inserts the
delivery row (the row is the outbox, ``awaiting_run``); a debounced Celery message wakes a worker
that starts the runs (:func:`delivery_start_runs`), and the beat runs the same task as a safety
net in case the message was lost.
"""

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ConflictError, PermissionDeniedError, ServiceError
from apps.core.fields import decrypt, encrypt
from apps.core.services import audit_log
from apps.pipelines.choices import Trigger
from apps.pipelines.models import PipelineRun
from apps.pipelines.services import run_request
from apps.projects.models import Project

from .choices import (
    COMMIT_STATES,
    DELIVERY_UNTRUSTED,
    DeliveryStatus,
    RefType,
)
from .commit_status import TransientStatusError, build_status_request, scrub
from .models import CommitStatusReport, WebhookDelivery
from .providers import BaseProvider, PayloadError, Push, get_provider

logger = logging.getLogger(__name__)

#: The one answer to a bad signature, a missing secret and an unknown project alike.
FORBIDDEN = {"detail": "Forbidden."}
ALREADY_RECEIVED = {"detail": "already received"}
INTERNAL_ERROR = "Internal error; the delivery is recorded and can be redelivered."
#: The project columns a receiver needs (the secret, the filters); the rest is not loaded.
RECEIVER_PROJECT_FIELDS = ("id", "slug", "webhook_secret", "branch_filter", "tag_filter")
#: A worker is woken at most once per this many seconds per web process (plus one trailing
#: message per window, so a delivery that arrives inside the window is not left waiting).
#: A lone push wakes it at once; under a burst a run starts at most this much later, and
#: the web process saves a broker publish (~0.5 ms of CPU) per push.
WAKE_WINDOW = 0.2
# Used in place of a secret when there is none, so refusing takes as long as checking.
_DUMMY_SECRET = "controlplane-no-such-webhook-secret-0000000000000000"  # noqa: S105


@dataclass(frozen=True)
class Reply:
    """What the receiver answers, and the ledger row that records it."""

    status_code: int
    body: dict[str, Any]
    delivery: WebhookDelivery


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
    project = _receiver_project(slug)
    secret = project.webhook_secret if project is not None else ""
    if not secret:
        _same_work_as_loading_a_secret()
    signed = source.verify(headers=headers, body=body, secret=secret or _DUMMY_SECRET)
    body_sha256 = hashlib.sha256(body).hexdigest()
    fields: dict[str, Any] = {
        "provider": provider,
        "project": project,
        "event": source.event(headers),
        "delivery_id": source.delivery_id(headers) or body_sha256,
        "headers": source.stored_headers(headers),
        "body_sha256": body_sha256,
        "body_size": len(body),
        "remote_addr": remote_addr,
    }
    if project is None or not secret or not signed:
        reason = (
            "No project with this slug."
            if project is None
            else "The project has no webhook secret."
            if not secret
            else "Bad or missing signature."
        )
        # No payload: whoever sent it could not sign it.
        return _record(fields, DeliveryStatus.REJECTED, 403, FORBIDDEN, detail=reason)
    try:
        payload = _parse(body, content_type)
    except ValueError:
        return _record(fields, DeliveryStatus.INVALID, 400, {"detail": "Malformed JSON."})
    return _process(source, project, payload, fields)


def _receiver_project(slug: str) -> Project | None:
    """The project the URL names, with only what a receiver needs (the API token, say, would
    cost one more decryption; the secret is decrypted as the row is read)."""
    sql = _receiver_project_sql(transaction.get_connection().vendor)
    return next(iter(Project.objects.raw(sql, [slug])), None)


@cache
def _receiver_project_sql(vendor: str) -> str:
    # The ORM writes the query, once per process: compiling it on every request cost more CPU
    # than the database spends running it (the receivers' hot path).
    query = Project.objects.only(*RECEIVER_PROJECT_FIELDS).filter(slug="").order_by()[:1]
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
        "delivery_id": source.delivery_id(headers) or f"oversize:{uuid.uuid4()}",
        "headers": source.stored_headers(headers),
        "body_size": min(size, 2**31 - 1),
        "remote_addr": remote_addr,
    }
    body = {"detail": f"The body is larger than {limit} bytes."}
    return _record(fields, DeliveryStatus.INVALID, 413, body, detail=body["detail"])


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
            _start_run(new, actor=actor, answered=False)
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
    # Not the payload of a push still waiting for its run: the run is started from it.
    cleared = old.filter(payload__isnull=False, awaiting_run=False).update(payload=None)
    return deleted + cleared


# --- the steps --------------------------------------------------------------------------------


def _same_work_as_loading_a_secret() -> None:
    # TRICKY: loading a project decrypts its secret (Fernet). Decrypt a dummy when there is no
    # project or no secret, so the time taken does not tell whether the slug exists.
    decrypt(_dummy_ciphertext())


_dummy: list[str] = []


def _dummy_ciphertext() -> str:
    if not _dummy:
        _dummy.append(encrypt(_DUMMY_SECRET))
    return _dummy[0]


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON object in the body (GitHub and Gitea may also send it form-encoded as
    ``payload=``). Raises ValueError for anything else."""
    if content_type == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8"), max_num_fields=10).get("payload")
        if not values:
            raise ValueError("no payload field")
        body = values[0].encode()
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
    by a worker (:func:`delivery_start_runs`), woken after the commit."""
    try:
        delivery = _insert_accepted(payload, fields)
    except IntegrityError:
        # The claim is unique per (project, provider, delivery id) among accepted rows: a copy
        # arriving at the same moment waits for the first insert's commit, then fails here.
        return _record(fields, DeliveryStatus.DUPLICATE, 202, ALREADY_RECEIVED, payload=payload)
    if wake:
        transaction.on_commit(_wake_run_starter)  # at once when not inside a transaction
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


# --- starting the runs of accepted pushes (a worker) --------------------------------------------


def delivery_start_runs(*, limit: int = 200) -> int:
    """Start the run of every accepted push still waiting for it (the task
    ``webhooks.start_runs``: woken by the receivers, and every ``SWEEPER_INTERVAL`` by the beat
    in case a wake-up message was lost). Returns how many deliveries it took care of.

    Batches of ``limit`` rows, locked with SKIP LOCKED, so several workers share the work and
    each delivery gets exactly one run: a row another worker holds is skipped, and one it has
    finished no longer matches (``awaiting_run`` is re-checked under the lock). A delivery whose
    run cannot be started is marked ``error`` (redeliver it once fixed); the others go on.
    """
    handled = 0
    while True:
        with transaction.atomic():
            batch = list(
                WebhookDelivery.objects.select_for_update(skip_locked=True)
                .filter(
                    awaiting_run=True,
                    status=DeliveryStatus.ACCEPTED,
                    run__isnull=True,
                    payload__isnull=False,
                )
                .order_by("id")[:limit]
            )
            projects = Project.objects.in_bulk({d.project_id for d in batch})
            # TRICKY: numbering a run locks its project's row until this transaction ends. Taking
            # the projects in one order (by id) means two workers never wait for each other in
            # a cycle (a deadlock); within a project, deliveries keep their arrival order.
            for delivery in sorted(batch, key=lambda d: (d.project_id, d.pk)):
                delivery.project = projects[delivery.project_id]
                _start_run(delivery, actor=f"webhook:{delivery.provider}")
        handled += len(batch)
        if len(batch) < limit:
            return handled


def _start_run(delivery: WebhookDelivery, *, actor: Any, answered: bool = True) -> None:
    """Start the run of one accepted delivery and record it on the row, or mark the row
    ``error``. The caller holds the row (locked, or inserted in its still open transaction).
    ``answered``: the Git server was already told 202, so the answer recorded stays as it is;
    a redelivery (not answered yet) records the error as its answer, as the receiver would."""
    try:
        with transaction.atomic():
            push = get_provider(delivery.provider).parse_push(delivery.payload)
            run = run_request(
                project=delivery.project,
                commit_sha=push.sha,
                actor=actor,
                trigger=Trigger.TAG if push.ref_type == RefType.TAG else Trigger.PUSH,
                ref=push.name,
                commit_message=push.message,
                commit_author=push.author[:200],
                commit_author_email=_email_or_blank(push.author_email),
                commit_url=_url_or_blank(push.url),
            )
            delivery.run = run
            delivery.detail = f"Run #{run.number} started."
            delivery.awaiting_run = False
            delivery.save(update_fields=["run", "detail", "awaiting_run"])
            commit_status_enqueue(run=run)
            return
    except OperationalError:
        raise  # the database (a lost connection, a deadlock): try the whole batch again later
    except (ServiceError, PayloadError) as exc:
        message, code = str(getattr(exc, "message", exc)), 409
    except Exception:
        logger.exception(
            "Starting the run of webhook delivery %s (%s) failed", delivery.pk, delivery.delivery_id
        )
        message, code = INTERNAL_ERROR, 500
    delivery.status = DeliveryStatus.ERROR
    delivery.detail = message[:500]
    delivery.awaiting_run = False
    update = ["status", "detail", "awaiting_run"]
    if not answered:
        delivery.http_status, delivery.response_body = code, {"detail": message}
        update += ["http_status", "response_body"]
    delivery.save(update_fields=update)


class _Debounce:
    """When a web process last woke a worker (module state: one per process)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.last = float("-inf")  # time.monotonic() of the last leading message
        self.trailing = False  # a trailing message was sent in the current window


_wake = _Debounce()
# A forked child (gunicorn) starts with a fresh lock and window.
os.register_at_fork(after_in_child=_wake.reset)


def _wake_run_starter() -> None:
    """Send ``webhooks.start_runs`` to a worker, at most once per ``WAKE_WINDOW`` per process:
    at once when the last message is a window old (leading edge), else one trailing message per
    window, due a window later — after every delivery that arrived inside the window, so none
    waits for the beat. Called after the delivery's commit; never raises."""
    with _wake.lock:
        now = time.monotonic()
        if now - _wake.last >= WAKE_WINDOW:
            _wake.last, _wake.trailing = now, False
            countdown = None
        elif not _wake.trailing:
            _wake.trailing = True
            countdown = WAKE_WINDOW
        else:
            return
    _send_start_runs(countdown)


def _send_start_runs(countdown: float | None) -> None:
    from .tasks import start_runs_task

    try:
        start_runs_task.apply_async(countdown=countdown)
    except Exception:
        # The row is the outbox: the beat's webhooks.start_runs picks the delivery up.
        logger.exception("Could not wake a worker to start webhook runs; the beat will")


def _email_or_blank(value: str) -> str:
    try:
        validate_email(value)
    except ValidationError:
        return ""
    return value


def _url_or_blank(value: str) -> str:
    return value if value.startswith(("https://", "http://")) and len(value) <= 500 else ""


# --- commit statuses --------------------------------------------------------------------------


def commit_status_configured(project: Project) -> bool:
    return bool(
        project.git_provider in COMMIT_STATES
        and project.git_api_url
        and project.git_api_token
        and project.git_repository
    )


def commit_status_enqueue(*, run: PipelineRun) -> bool:
    """Have a worker tell the Git server the run's status, after commit. Returns whether the
    project reports statuses at all."""
    if not run.commit_sha or not commit_status_configured(run.project):
        return False
    run_id = run.pk
    transaction.on_commit(lambda: _send_status_task(run_id))
    return True


def _send_status_task(run_id: int) -> None:
    from .tasks import report_commit_status_task

    try:
        report_commit_status_task.delay(run_id)
    except Exception:
        # A missed status is cosmetic; the next transition reports the then current state.
        logger.exception("Could not queue the commit status of run %s", run_id)


def commit_status_report(*, run_id: int) -> CommitStatusReport | None:
    """Send the run's current status to the Git server (the task calls this).

    Reports the status the run has *now*, so a late or retried task never sets an older state
    over a newer one. 5xx, 429 and connection errors raise (the task retries); other answers
    are final: logged and recorded on the report, with the token scrubbed.
    """
    run = PipelineRun.objects.select_related("project").filter(pk=run_id).first()
    if run is None or not run.commit_sha or not commit_status_configured(run.project):
        return None
    project = run.project
    provider = project.git_provider
    state = COMMIT_STATES[provider][run.status]
    report = _status_report_for(run, provider)
    if report.reported_at is not None and report.run_status == run.status:
        return report  # already told
    request = build_status_request(
        provider=provider,
        api_url=project.git_api_url,
        repository=project.git_repository,
        token=project.git_api_token,
        sha=run.commit_sha,
        state=state,
        description=f"Pipeline #{run.number} {run.get_status_display().lower()}",
        target_url=settings.SITE_URL + run.get_absolute_url(),
        ref=run.ref,
    )
    CommitStatusReport.objects.filter(pk=report.pk).update(attempts=F("attempts") + 1)
    try:
        response = requests.post(
            request.url,
            json=request.json,
            headers=request.headers,
            timeout=settings.COMMIT_STATUS_TIMEOUT,
            # A redirect could carry PRIVATE-TOKEN to another host; treat it as a failure.
            allow_redirects=False,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", request.secrets)
        _status_failed(report, None, message)
        logger.warning("Commit status for %s not sent (will retry): %s", run, message)
        raise
    code = response.status_code
    if 200 <= code < 300:
        CommitStatusReport.objects.filter(pk=report.pk).update(
            provider=provider,
            run_status=run.status,
            state=state,
            description=request.json["description"],
            target_url=request.json["target_url"][:500],
            reported_at=timezone.now(),
            http_status=code,
            error_message="",
        )
        report.refresh_from_db()
        return report
    message = scrub(f"HTTP {code}: {response.text[:500]}", request.secrets)
    _status_failed(report, code, message)
    if code >= 500 or code == 429:
        logger.warning("Commit status for %s refused for now (will retry): %s", run, message)
        raise TransientStatusError(message)
    logger.warning("Commit status for %s refused by the Git server: %s", run, message)
    report.refresh_from_db()
    return report


def _status_report_for(run: PipelineRun, provider: str) -> CommitStatusReport:
    report = CommitStatusReport.objects.filter(run=run).first()
    if report is not None:
        return report
    try:
        with transaction.atomic():
            return CommitStatusReport.objects.create(run=run, provider=provider)
    except IntegrityError:  # another task created it meanwhile
        return CommitStatusReport.objects.get(run=run)


def _status_failed(report: CommitStatusReport, code: int | None, message: str) -> None:
    CommitStatusReport.objects.filter(pk=report.pk).update(
        http_status=code, error_message=message[:2000]
    )
