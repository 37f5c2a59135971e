"""Deployments: asking for a release to be deployed to an environment (who may, freeze
windows, rollback), carrying one out (``deployment_execute``: the per-environment lock, the
deployer, the health gate), and the sweeper for deployments a worker left behind."""

import logging
from collections.abc import Mapping
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
from apps.core.services import audit_log
from apps.pipelines.schedules import schedules_follow_environment
from apps.projects.models import Environment
from apps.projects.services import environment_serving_commit_set
from apps.training.services import model_alias_move

from ..choices import DeploymentStatus, PromotionStatus
from ..models import Deployment, Promotion, Release
from ..selectors import environment_needs_approval, freeze_message, serving_deployment
from .transitions import (
    deployment_transition,
    enqueue_deployment,
    enqueue_next_pending,
    promotion_transition,
)

logger = logging.getLogger(__name__)


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
        transaction.on_commit(lambda: enqueue_deployment(deployment.pk))
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

    from ..deployers import DeployRequest

    env, release = deployment.environment, deployment.release
    spec = release.pipeline_run.spec if release.pipeline_run_id else {}
    serve = spec.get("serve") or {}
    # A deployment of its environment gets the protected variables (docs/secrets.md).
    values, _secrets = job_variables(project=env.project, environment=env, protected=True)
    credentials = {k: v for k, v in values.items() if k.startswith("DEPLOY_")}
    service_env = {k: v for k, v in values.items() if not k.startswith("DEPLOY_")}
    service_env.update(
        {
            "CONTROLPLANE_PROJECT": env.project.slug,
            "CONTROLPLANE_ENVIRONMENT": env.name,
            "CONTROLPLANE_RELEASE": release.version,
            "CONTROLPLANE_COMMIT": release.commit_sha,
            # The model version the service reports its observations as (monitoring).
            "CONTROLPLANE_MODEL_VERSION": str(release.model_version_id or ""),
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
    from ..deployers import DeployError, get_deployer

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
        # TRICKY: releases imports this module (release_advance deploys or asks); importing it
        # at the top would be a cycle.
        from .releases import release_advance

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
        if to == DeploymentStatus.SUCCEEDED:
            _now_serving(deployment)
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


def _now_serving(deployment: Deployment) -> None:
    """The release serves the environment now (a deploy or a rollback that succeeded): the
    environment runs its pipelines at the release's commit, and the model the release
    carries becomes ``<model>@<environment>`` in the registry."""
    release, environment = deployment.release, deployment.environment
    environment_serving_commit_set(
        environment=environment, commit_sha=release.commit_sha, actor="deployer"
    )
    # Its schedules follow the spec of that commit (a fetch may be needed: after commit).
    transaction.on_commit(lambda: schedules_follow_environment(environment=environment))
    if release.model_version_id:
        model_alias_move(
            environment=environment, model_version=release.model_version, actor="deployer"
        )


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
        enqueue_next_pending(environment_id)
        resent += 1
    return {"failed": failed, "resent": resent}
