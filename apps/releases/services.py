"""Writes to releases, deployments, promotions and approvals: the approval rules and the
deploy orchestration (release → environments in order, per-environment lock, freeze windows,
health-gated deployers, rollback)."""

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import (
    ConflictError,
    IllegalTransition,
    PermissionDeniedError,
    ServiceError,
)
from apps.core.services import audit_log, state_transition
from apps.projects.models import Environment
from apps.training.models import ModelVersion

from .choices import (
    DEPLOYMENT_TIMESTAMPS,
    DEPLOYMENT_TRANSITIONS,
    PROMOTION_TIMESTAMPS,
    PROMOTION_TRANSITIONS,
    ApprovalChannel,
    ApprovalDecision,
    DeploymentStatus,
    PromotionStatus,
)
from .models import Approval, Deployment, Promotion, Release
from .signals import (
    approval_recorded,
    deployment_status_changed,
    promotion_reminder,
    promotion_status_changed,
)

logger = logging.getLogger(__name__)


def deployment_transition(
    *,
    deployment: Deployment,
    to: str,
    actor: Any,
    reason: str = "",
    update: Mapping | None = None,
) -> Deployment:
    return state_transition(
        instance=deployment,
        to=to,
        table=DEPLOYMENT_TRANSITIONS,
        timestamps=DEPLOYMENT_TIMESTAMPS,
        actor=actor,
        reason=reason,
        project_id=deployment.environment.project_id,
        update=update,
        on_commit=_deployment_changed,
    )


def _deployment_changed(deployment: Deployment) -> None:
    deployment_status_changed.send(
        sender=Deployment,
        deployment=deployment,
        from_status=deployment._previous_state,
        to_status=deployment.status,
    )
    if deployment.is_terminal:
        # The environment's lock is free: start what waits for it.
        _enqueue_next_pending(deployment.environment_id)


def promotion_transition(
    *,
    promotion: Promotion,
    to: str,
    actor: Any,
    reason: str = "",
    update: Mapping | None = None,
) -> Promotion:
    return state_transition(
        instance=promotion,
        to=to,
        table=PROMOTION_TRANSITIONS,
        timestamps=PROMOTION_TIMESTAMPS,
        actor=actor,
        reason=reason,
        project_id=promotion.environment.project_id,
        update=update,
        on_commit=_promotion_changed,
    )


def _promotion_changed(promotion: Promotion) -> None:
    promotion_status_changed.send(
        sender=Promotion,
        promotion=promotion,
        from_status=promotion._previous_state,
        to_status=promotion.status,
    )


@transaction.atomic
def release_create(*, project, version: str, commit_sha: str, actor: Any, **fields) -> Release:
    if Release.objects.filter(project=project, version=version).exists():
        raise ConflictError(f"Release {version} exists already; releases are immutable.")
    user = actor if getattr(actor, "is_authenticated", False) else None
    release = Release.objects.create(
        project=project, version=version, commit_sha=commit_sha, created_by=user, **fields
    )
    audit_log(
        actor=actor,
        action="release.created",
        obj=release,
        project_id=project.pk,
        data={"commit": commit_sha},
    )
    return release


def release_create_from_run(*, run) -> Release | None:
    """The immutable release of a succeeded pipeline on the project's release branch that
    built a bundle: commit, bundle digest, image, and the evidence (tests, reproducibility).
    Idempotent: one release per run."""
    from apps.pipelines.choices import JobKind, JobStatus, RunStatus

    project = run.project
    if run.status != RunStatus.SUCCEEDED or not run.commit_sha or run.ref != project.releases_from:
        return None
    jobs = list(run.jobs.filter(status=JobStatus.SUCCEEDED))
    build = next(
        (j for j in jobs if j.kind == JobKind.BUILD and j.result.get("bundle_digest")), None
    )
    if build is None:
        return None
    version = f"r{run.number}-{run.commit_sha[:8]}"
    if Release.objects.filter(project=project, version=version).exists():
        return None
    evidence = {
        "run": run.number,
        "tests": {j.name: j.result["junit"] for j in jobs if "junit" in j.result},
        "reproducibility": {
            j.name: {
                k: j.result["reproducibility"].get(k)
                for k in (
                    "passed",
                    "max_abs_diff",
                    "rows_outside",
                    "rows_compared",
                    "tolerance",
                    "image",  # checked inside the release's image
                    "model",  # the build's model it checked: digest, path, build job
                )
            }
            for j in jobs
            if "reproducibility" in j.result
        },
    }
    for j in jobs:
        if "in_image" in j.result:  # an in-image check that had no image to run in
            evidence["reproducibility"][j.name] = j.result["in_image"]
    image = build.result.get("image") or {}
    if image.get("repo_digest"):
        evidence["image"] = {"repo_digest": image["repo_digest"]}
    model = build.result.get("model")
    model_version = None
    if model:
        evidence["model"] = model
        model_version = _model_version_for(run=run, model=model)
    try:
        return release_create(
            project=project,
            version=version,
            commit_sha=run.commit_sha,
            actor="pipeline",
            ref=run.ref,
            pipeline_run=run,
            bundle_digest=build.result["bundle_digest"],
            image_ref=image.get("pushed") or image.get("ref", ""),
            image_digest=image.get("id", ""),
            model_version=model_version,
            evidence=evidence,
        )
    except (ConflictError, IntegrityError):
        return None  # made by a concurrent call


def _model_version_for(*, run, model: Mapping) -> ModelVersion:
    """The registry entry of the model a build bundled: the same artifact digest is the same
    model version (a rebuild of one commit does not make a new version)."""
    name = model.get("name") or "model"
    with transaction.atomic():
        existing = ModelVersion.objects.filter(
            project=run.project, name=name, artifact_digest=model["digest"]
        ).first()
        if existing is not None:
            return existing
        last = (
            ModelVersion.objects.select_for_update()
            .filter(project=run.project, name=name)
            .order_by("-version")
            .first()
        )
        return ModelVersion.objects.create(
            project=run.project,
            name=name,
            version=(last.version + 1) if last else 1,
            pipeline_run=run,
            commit_sha=run.commit_sha,
            metrics=model.get("metrics") or {},
            artifact_uri=f"bundle:{model.get('path', '')}",
            artifact_digest=model["digest"],
        )


@transaction.atomic
def release_block(*, release: Release, actor: Any, reason: str) -> Release:
    """Stop a release everywhere: pending promotions of it are rejected, no deploy starts."""
    if not reason.strip():
        raise ServiceError("Say why the release is blocked.")
    release = Release.objects.select_for_update().get(pk=release.pk)
    if release.is_blocked:
        raise ConflictError(f"Release {release.version} is blocked already.")
    user = actor if getattr(actor, "is_authenticated", False) else None
    release.blocked_at = timezone.now()
    release.blocked_reason = reason
    release.blocked_by = user
    release.save(update_fields=["blocked_at", "blocked_reason", "blocked_by", "modified"])
    audit_log(
        actor=actor,
        action="release.blocked",
        obj=release,
        project_id=release.project_id,
        reason=reason,
    )
    for promotion in release.promotions.select_related("environment").filter(
        status=PromotionStatus.PENDING
    ):
        promotion_transition(
            promotion=promotion,
            to=PromotionStatus.REJECTED,
            actor=actor,
            reason=f"Release blocked: {reason}",
        )
    for deployment in release.deployments.select_related("environment").filter(
        status=DeploymentStatus.PENDING
    ):
        deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.FAILED,
            actor=actor,
            reason=f"Release blocked: {reason}",
            update={"error_message": f"Release blocked: {reason}", "hold_reason": ""},
        )
    return release


@transaction.atomic
def promotion_request(*, release: Release, environment: Environment, actor: Any) -> Promotion:
    """Ask for approval to deploy ``release`` to ``environment``; supersedes older requests."""
    if release.project_id != environment.project_id:
        raise ServiceError("The release and the environment belong to different projects.")
    # Read the row, not the caller's copy: it may have been blocked meanwhile.
    release = Release.objects.select_for_update().get(pk=release.pk)
    if release.is_blocked:
        raise ConflictError(f"Release {release.version} is blocked: {release.blocked_reason}")
    for older in Promotion.objects.select_related("environment").filter(
        environment=environment, status=PromotionStatus.PENDING
    ):
        promotion_transition(
            promotion=older,
            to=PromotionStatus.SUPERSEDED,
            actor=actor,
            reason=f"Superseded by release {release.version}.",
        )
    user = actor if getattr(actor, "is_authenticated", False) else None
    promotion = Promotion.objects.create(
        release=release,
        environment=environment,
        requested_by=user,
        required_approvals=max(environment.required_approvals, 1),
        expires_at=timezone.now() + environment.approval_ttl,
    )
    audit_log(
        actor=actor,
        action="promotion.requested",
        obj=promotion,
        project_id=environment.project_id,
        to_state=promotion.status,
    )
    transaction.on_commit(
        lambda: promotion_status_changed.send(
            sender=Promotion, promotion=promotion, from_status=None, to_status=promotion.status
        )
    )
    return promotion


def promotion_decision_blocker(*, promotion: Promotion, user) -> str | None:
    """Why ``user`` may not decide on ``promotion`` (role, own request, own commit), or None.

    Pure (no writes, no status check): the decision service raises it, the approvals inbox and
    the promotion page show it before anyone clicks.
    """
    env = promotion.environment
    if not has_role(user, env.project_id, env.approver_min_role):
        return (
            f"Only members with the {env.approver_min_role} role may approve deploys to {env.name}."
        )
    if env.allow_self_approval:
        return None
    if promotion.requested_by_id == user.pk:
        return "You requested this promotion; someone else must approve it."
    author_email = (
        promotion.release.pipeline_run.commit_author_email
        if promotion.release.pipeline_run_id
        else ""
    )
    if author_email and user.email and author_email.lower() == user.email.lower():
        return "You wrote this commit; someone else must approve it."
    return None


def _check_may_decide(*, promotion: Promotion, user) -> None:
    blocker = promotion_decision_blocker(promotion=promotion, user=user)
    if blocker is not None:
        raise PermissionDeniedError(blocker)


def promotion_decide(
    *,
    promotion: Promotion,
    user,
    decision: str,
    comment: str = "",
    channel: str = ApprovalChannel.WEB,
) -> Promotion:
    """Record one approver's decision. A rejection ends the request; the N-th approval
    approves it."""
    with transaction.atomic():
        promotion = (
            Promotion.objects.select_for_update(of=("self",))
            .select_related("environment", "release", "release__pipeline_run")
            .get(pk=promotion.pk)
        )
        _check_may_decide(promotion=promotion, user=user)
        if promotion.status != PromotionStatus.PENDING:
            raise ConflictError(f"This promotion is {promotion.status}; it takes no decisions.")
        if promotion.expires_at and promotion.expires_at <= timezone.now():
            raise ConflictError("This promotion has expired.")
        if promotion.release.is_blocked:
            raise ConflictError(f"Release {promotion.release.version} is blocked.")
        try:
            with transaction.atomic():
                Approval.objects.create(
                    promotion=promotion,
                    user=user,
                    decision=decision,
                    comment=comment,
                    channel=channel,
                )
        except IntegrityError:
            raise ConflictError("You have already decided on this promotion.") from None
        approval = promotion.approvals.get(user=user)
        transaction.on_commit(lambda: approval_recorded.send(sender=Approval, approval=approval))
        audit_log(
            actor=user,
            action=f"promotion.{decision}",
            obj=promotion,
            project_id=promotion.environment.project_id,
            reason=comment,
            data={"channel": channel},
        )
        if decision == ApprovalDecision.REJECT:
            return promotion_transition(
                promotion=promotion, to=PromotionStatus.REJECTED, actor=user, reason=comment
            )
        approvals = promotion.approvals.filter(decision=ApprovalDecision.APPROVE).count()
        if approvals >= promotion.required_approvals:
            promotion = promotion_transition(
                promotion=promotion,
                to=PromotionStatus.APPROVED,
                actor=user,
                reason=f"{approvals} of {promotion.required_approvals} approvals.",
            )
            # Approved means deployed next: the deployment is made in the same transaction
            # (held, not refused, while a freeze window is open).
            deployment_request(
                release=promotion.release,
                environment=promotion.environment,
                actor=user,
                promotion=promotion,
            )
            promotion.refresh_from_db()
        return promotion


def promotion_expire_due() -> int:
    """Expire pending promotions past their time (periodic)."""
    expired = 0
    for promotion in Promotion.objects.select_related("environment").filter(
        status=PromotionStatus.PENDING, expires_at__lte=timezone.now()
    ):
        promotion_transition(
            promotion=promotion,
            to=PromotionStatus.EXPIRED,
            actor="expiry",
            reason="No decision before the approval deadline.",
        )
        expired += 1
    return expired


def promotion_remind_due() -> int:
    """Send one reminder for each pending promotion close to its deadline (periodic)."""
    soon = timezone.now() + settings.APPROVAL_REMINDER_BEFORE
    reminded = 0
    for promotion in Promotion.objects.filter(
        status=PromotionStatus.PENDING, reminder_sent_at__isnull=True, expires_at__lte=soon
    ):
        claimed = Promotion.objects.filter(pk=promotion.pk, reminder_sent_at__isnull=True).update(
            reminder_sent_at=timezone.now()
        )
        if claimed:  # one reminder even when two beat ticks overlap
            promotion_reminder.send(sender=Promotion, promotion=promotion)
            reminded += 1
    return reminded


# --------------------------------------------------------------------------- deployments


def environment_needs_approval(environment: Environment) -> bool:
    return not environment.auto_deploy and environment.required_approvals > 0


def serving_deployment(environment: Environment) -> Deployment | None:
    """The deployment whose release serves the environment now."""
    return (
        Deployment.objects.select_related("release")
        .filter(environment=environment, status=DeploymentStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def freeze_message(environment: Environment, at: datetime) -> str:
    window = environment.active_freeze(at)
    if window is None:
        return ""
    ends = window.ends_at(at)
    why = f" ({window.reason})" if window.reason else ""
    return (
        f"{environment.name} is frozen{why} until {ends:%Y-%m-%d %H:%M} {ends.tzname() or 'UTC'}; "
        "deploys are held until then."
    )


def deployment_request(
    *,
    release: Release,
    environment: Environment,
    actor: Any,
    reason: str = "",
    is_rollback: bool = False,
    promotion: Promotion | None = None,
) -> Deployment:
    """Ask for ``release`` to be deployed to ``environment``; a worker carries it out.

    A person asking directly (not through an approved promotion) needs the developer role, or
    the environment's approver role where deploys need approval; there they may only roll back
    to a release that served before. A person is refused inside a freeze window; automatic
    deploys (the pipeline, an approval) are held until it closes instead.
    """
    by_person = promotion is None and getattr(actor, "is_authenticated", False)
    if release.project_id != environment.project_id:
        raise ServiceError("The release and the environment belong to different projects.")
    with transaction.atomic():
        release = Release.objects.select_for_update().get(pk=release.pk)
        if release.is_blocked:
            raise ConflictError(
                f"Release {release.version} is blocked: {release.blocked_reason}",
                code="blocked",
            )
        if by_person:
            gated = environment_needs_approval(environment)
            role = environment.approver_min_role if gated else Role.DEVELOPER
            if not has_role(actor, environment.project_id, role):
                raise PermissionDeniedError(
                    f"Only members with the {role} role may deploy to {environment.name}."
                )
            if gated and not is_rollback:
                raise ConflictError(
                    f"Deploys to {environment.name} need an approved promotion; request one.",
                    code="approval_required",
                )
            frozen = freeze_message(environment, timezone.now())
            if frozen:
                raise ConflictError(frozen, code="frozen")
        if (
            is_rollback
            and not environment.deployments.filter(
                release=release, status=DeploymentStatus.SUCCEEDED
            ).exists()
        ):
            raise ConflictError(
                f"Release {release.version} never served in {environment.name}; "
                "roll back only to a release that did."
            )
        previous = serving_deployment(environment)
        user = actor if getattr(actor, "is_authenticated", False) else None
        deployment = Deployment.objects.create(
            release=release,
            environment=environment,
            previous=previous,
            is_rollback=is_rollback,
            deployer=environment.deployer,
            triggered_by=user,
            promotion=promotion,
            details={"reason": reason} if reason else {},
        )
        audit_log(
            actor=actor,
            action="deployment.rollback_requested" if is_rollback else "deployment.requested",
            obj=deployment,
            project_id=environment.project_id,
            to_state=deployment.status,
            reason=reason,
            data={"release": release.version, "environment": environment.name},
        )
        if promotion is not None:
            promotion_transition(
                promotion=promotion,
                to=PromotionStatus.DEPLOYING,
                actor=actor,
                update={"deployment": deployment},
            )
        transaction.on_commit(lambda: _enqueue_deployment(deployment.pk))
    return deployment


def deployment_rollback(
    *, environment: Environment, release: Release, actor: Any, reason: str = ""
) -> Deployment:
    """Redeploy a release that served ``environment`` before (the UI asks to confirm first)."""
    serving = serving_deployment(environment)
    if serving is not None and serving.release_id == release.pk:
        raise ConflictError(f"Release {release.version} is what serves {environment.name} now.")
    return deployment_request(
        release=release, environment=environment, actor=actor, reason=reason, is_rollback=True
    )


def _enqueue_deployment(deployment_id: int) -> None:
    from .tasks import run_deployment_task

    run_deployment_task.delay(deployment_id)


def _enqueue_next_pending(environment_id: int) -> None:
    nxt = (
        Deployment.objects.filter(environment_id=environment_id, status=DeploymentStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if nxt is not None:
        _enqueue_deployment(nxt)


def deployment_log(deployment_id: int, line: str) -> None:
    """Append one progress line to the deployment (visible while it runs)."""
    stamp = timezone.now().strftime("%H:%M:%S")
    Deployment.objects.filter(pk=deployment_id).update(
        log=Concat(F("log"), Value(f"{stamp} {line.rstrip()}\n")), modified=timezone.now()
    )


def _hold(deployment: Deployment, why: str) -> Deployment:
    if deployment.hold_reason != why:
        Deployment.objects.filter(pk=deployment.pk).update(hold_reason=why)
        deployment_log(deployment.pk, f"held: {why}")
        deployment.hold_reason = why
    return deployment


def _deploy_request(deployment: Deployment):
    from apps.projects.selectors import job_variables

    from .deployers import DeployRequest

    env, release = deployment.environment, deployment.release
    spec = release.pipeline_run.spec if release.pipeline_run_id else {}
    serve = spec.get("serve") or {}
    values, _secrets = job_variables(project=env.project, environment=env)
    credentials = {k: v for k, v in values.items() if k.startswith("DEPLOY_")}
    service_env = {k: v for k, v in values.items() if not k.startswith("DEPLOY_")}
    service_env.update(
        {
            "CONTROLPLANE_PROJECT": env.project.slug,
            "CONTROLPLANE_ENVIRONMENT": env.name,
            "CONTROLPLANE_RELEASE": release.version,
            "CONTROLPLANE_COMMIT": release.commit_sha,
        }
    )
    return DeployRequest(
        project=env.project.slug,
        environment=env.name,
        deployment_id=deployment.pk,
        release=release.version,
        commit_sha=release.commit_sha,
        image_ref=release.image_ref,
        image_digest=release.image_digest,
        bundle_path=release.bundle_path,
        bundle_digest=release.bundle_digest,
        port=env.service_port,
        health_path=env.health_check_path or serve.get("health") or "/healthz",
        health_timeout=env.health_check_timeout,
        command=serve.get("command", ""),
        env=service_env,
        target=dict(env.target or {}),
        credentials=credentials,
        log=lambda line: deployment_log(deployment.pk, line),
    )


def deployment_execute(*, deployment_id: int) -> Deployment | None:
    """Carry out a pending deployment (the ``releases.run_deployment`` task).

    Holds it while a freeze window is open or another deployment holds the environment's lock
    (one running per environment, a database constraint); a newer pending deployment of the
    same environment supersedes it. On success the release moves on to the next environment.
    """
    from .deployers import DeployError, get_deployer

    deployment = (
        Deployment.objects.select_related("environment__project", "release__pipeline_run")
        .filter(pk=deployment_id)
        .first()
    )
    if deployment is None or deployment.status != DeploymentStatus.PENDING:
        return deployment
    env, release = deployment.environment, deployment.release
    try:
        if release.is_blocked:
            return _deployment_end(
                deployment, DeploymentStatus.FAILED, f"Release blocked: {release.blocked_reason}"
            )
        newer = (
            Deployment.objects.filter(
                environment=env, status=DeploymentStatus.PENDING, pk__gt=deployment.pk
            )
            .order_by("-pk")
            .first()
        )
        if newer is not None:
            return _deployment_end(
                deployment,
                DeploymentStatus.SUPERSEDED,
                f"Superseded by deployment #{newer.pk} ({newer.release.version}).",
            )
        frozen = freeze_message(env, timezone.now())
        if frozen:
            return _hold(deployment, frozen)
        try:
            with transaction.atomic():
                deployment = deployment_transition(
                    deployment=deployment,
                    to=DeploymentStatus.RUNNING,
                    actor="deployer",
                    update={"hold_reason": ""},
                )
        except IntegrityError:
            running = Deployment.objects.filter(
                environment=env, status=DeploymentStatus.RUNNING
            ).first()
            label = f"#{running.pk}" if running else "another deployment"
            return _hold(deployment, f"Waiting for deployment {label} to finish.")
    except IllegalTransition:
        return deployment  # another worker took it
    deployment_log(
        deployment.pk, f"deploying {release.version} to {env.name} with {deployment.deployer}"
    )
    try:
        result = get_deployer(deployment.deployer).deploy(_deploy_request(deployment))
    except DeployError as exc:
        deployment_log(deployment.pk, f"failed: {exc}")
        return _deployment_end(
            deployment,
            DeploymentStatus.FAILED,
            str(exc),
            details=exc.details,
            rolled_back=exc.rolled_back,
        )
    except Exception as exc:
        logger.exception("Deployer crashed on deployment %s", deployment.pk)
        deployment_log(deployment.pk, f"deployer error: {exc}")
        return _deployment_end(deployment, DeploymentStatus.FAILED, f"Deployer error: {exc}")
    deployment_log(deployment.pk, f"{release.version} serves {env.name} at {result.url}")
    deployment = _deployment_end(
        deployment, DeploymentStatus.SUCCEEDED, "", details=result.details, url=result.url
    )
    if not deployment.is_rollback:
        release_advance(release=release, after=env)
    return deployment


def _deployment_end(
    deployment: Deployment,
    to: str,
    error: str,
    *,
    details: Mapping | None = None,
    rolled_back: bool = False,
    url: str = "",
) -> Deployment:
    details = {**deployment.details, **(details or {})}
    update: dict[str, Any] = {"hold_reason": "", "details": details}
    if error:
        update["error_message"] = error
    if url:
        update["url"] = url
    with transaction.atomic():
        deployment = deployment_transition(
            deployment=deployment, to=to, actor="deployer", reason=error, update=update
        )
        if rolled_back:
            previous = deployment.previous.release.version if deployment.previous else "nothing"
            deployment = deployment_transition(
                deployment=deployment,
                to=DeploymentStatus.ROLLED_BACK,
                actor="deployer",
                reason=f"The previous release ({previous}) serves again.",
            )
        if deployment.promotion_id:
            promotion = Promotion.objects.select_related("environment").get(
                pk=deployment.promotion_id
            )
            if promotion.status == PromotionStatus.DEPLOYING:
                promotion_transition(
                    promotion=promotion,
                    to=(
                        PromotionStatus.DEPLOYED
                        if to == DeploymentStatus.SUCCEEDED
                        else PromotionStatus.FAILED
                    ),
                    actor="deployer",
                    reason=error,
                )
    return deployment


def release_advance(*, release: Release, after: Environment | None = None) -> None:
    """Move a release on to the environment after ``after`` (the first when None): deploy it
    there when that environment deploys automatically, else ask for approval."""
    environments = Environment.objects.filter(project_id=release.project_id)
    if after is not None:
        environments = environments.filter(order__gt=after.order)
    nxt = environments.order_by("order", "name").first()
    if nxt is None:
        return
    release.refresh_from_db(fields=["blocked_at", "blocked_reason"])
    if release.is_blocked:
        return
    if nxt.auto_deploy:
        deployment_request(release=release, environment=nxt, actor="pipeline")
    elif not Promotion.objects.filter(
        release=release,
        environment=nxt,
        status__in=(
            PromotionStatus.PENDING,
            PromotionStatus.APPROVED,
            PromotionStatus.DEPLOYING,
            PromotionStatus.DEPLOYED,
        ),
    ).exists():
        promotion_request(release=release, environment=nxt, actor="pipeline")


def deployment_sweep() -> dict[str, int]:
    """Periodic: fail deployments whose worker went silent (the lock would stay taken), and
    send pending ones (held or lost messages) to a worker again."""
    stale = timezone.now() - settings.DEPLOY_STALE_AFTER
    failed = 0
    for deployment in Deployment.objects.select_related("environment").filter(
        status=DeploymentStatus.RUNNING, modified__lt=stale
    ):
        try:
            _deployment_end(
                deployment,
                DeploymentStatus.FAILED,
                "The worker went silent during the deploy (worker lost); check the "
                "environment and deploy again.",
            )
            failed += 1
        except IllegalTransition:
            pass
    resent = 0
    for environment_id in (
        Deployment.objects.filter(status=DeploymentStatus.PENDING)
        .values_list("environment_id", flat=True)
        .distinct()
    ):
        _enqueue_next_pending(environment_id)
        resent += 1
    return {"failed": failed, "resent": resent}
