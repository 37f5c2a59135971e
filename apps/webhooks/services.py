"""Every write of the webhooks app: receiving a delivery, redelivering one, pruning the ledger,
and reporting commit statuses back to the Git server."""

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
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
    # The API token is not needed here; loading it would cost one more decryption.
    project = Project.objects.defer("git_api_token").filter(slug=slug).first()
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
    return _process(source, project, payload, fields, actor=f"webhook:{provider}", dedupe=True)


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
    like GitHub's "Redeliver"). The new row points at the original."""
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
    reply = _process(
        get_provider(original.provider),
        original.project,
        original.payload,
        fields,
        actor=actor,
        dedupe=False,
    )
    audit_log(
        actor=actor,
        action="webhookdelivery.redelivered",
        obj=reply.delivery,
        project_id=original.project_id,
        to_state=reply.delivery.status,
        data={"original": original.pk, "run": reply.delivery.run_id},
    )
    return reply.delivery


def delivery_prune(*, now: datetime | None = None) -> int:
    """Housekeeping (daily): delete rejected and invalid rows older than the retention period,
    and drop the payloads of older deliveries (they can no longer be redelivered). Without it a
    steady trickle of forged requests would grow the table for ever."""
    cutoff = (now or timezone.now()) - settings.WEBHOOK_DELIVERY_RETENTION
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff)
    deleted, _ = old.filter(status__in=DELIVERY_UNTRUSTED).delete()
    cleared = old.filter(payload__isnull=False).update(payload=None)
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
    actor: Any,
    dedupe: bool,
) -> Reply:
    """From an authenticated payload to an answer: ping, ignore, refuse, or start a run."""
    event = fields["event"]
    kind = source.kind(event=event, payload=payload)
    if dedupe and kind == "push" and _accepted_before(fields):
        return _record(fields, DeliveryStatus.DUPLICATE, 202, ALREADY_RECEIVED, payload=payload)
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
    return _accept(project, push, payload, fields, actor=actor)


def _accepted_before(fields: Mapping[str, Any]) -> bool:
    return WebhookDelivery.objects.filter(
        project=fields["project"],
        provider=fields["provider"],
        delivery_id=fields["delivery_id"],
        status=DeliveryStatus.ACCEPTED,
    ).exists()


def _ignore_reason(project: Project, push: Push) -> str:
    if push.ref_type is None:
        return f"Ref '{push.ref}' is neither a branch nor a tag."
    label = "Branch" if push.ref_type == RefType.BRANCH else "Tag"
    if push.deleted:
        return f"{label} '{push.name}' was deleted."
    if not project.ref_allowed(push.ref_type, push.name):
        return f"{label} '{push.name}' does not match the project's {push.ref_type} filter."
    return ""


def _accept(
    project: Project,
    push: Push,
    payload: dict[str, Any],
    fields: dict[str, Any],
    *,
    actor: Any,
) -> Reply:
    delivery: WebhookDelivery | None = None
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    # The claim: unique per (project, provider, delivery id) among accepted rows.
                    delivery = WebhookDelivery.objects.create(
                        **fields,
                        status=DeliveryStatus.ACCEPTED,
                        http_status=202,
                        payload=payload,
                    )
            except IntegrityError:
                delivery = None  # a copy of this delivery got there first
            if delivery is not None:
                run = run_request(
                    project=project,
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
                delivery.response_body = {"run": run.number, "url": run.get_absolute_url()}
                delivery.detail = f"Run #{run.number} started."
                delivery.save(update_fields=["run", "response_body", "detail"])
                commit_status_enqueue(run=run)
    except ServiceError as exc:
        body = {"detail": exc.message}
        return _record(fields, DeliveryStatus.ERROR, 409, body, payload=payload, detail=exc.message)
    except Exception:
        logger.exception("Webhook delivery %s for %s failed", fields["delivery_id"], project.slug)
        body = {"detail": "Internal error; the delivery is recorded and can be redelivered."}
        return _record(fields, DeliveryStatus.ERROR, 500, body, payload=payload)
    if delivery is None:
        return _record(fields, DeliveryStatus.DUPLICATE, 202, ALREADY_RECEIVED, payload=payload)
    return Reply(202, delivery.response_body, delivery)


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
