"""Reads of releases, deployments, promotions and approvals, scoped to what the user may see."""

from dataclasses import dataclass
from datetime import datetime
from numbers import Real
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from apps.accounts.permissions import has_role, restrict_to_visible
from apps.core.models import AuditEvent
from apps.pipelines import git
from apps.pipelines.models import Schedule
from apps.pipelines.schedules import next_fires
from apps.projects.models import Environment, FreezeWindow
from apps.projects.selectors import environment_list
from apps.training.metricsfile import is_metric, split_metrics
from apps.training.models import ModelAlias

from .choices import ApprovalDecision, DeploymentStatus, PromotionStatus
from .models import Approval, Deployment, Promotion, Release

COMMITS_SHOWN = 100


def release_list(*, user) -> QuerySet[Release]:
    return restrict_to_visible(Release.objects.select_related("project", "model_version"), user)


def deployment_list(*, user) -> QuerySet[Deployment]:
    return restrict_to_visible(
        Deployment.objects.select_related("release", "environment", "environment__project"),
        user,
        project_field="environment__project",
    )


def promotion_list(*, user) -> QuerySet[Promotion]:
    return restrict_to_visible(
        # release__project: a promotion's URL names its release's project.
        Promotion.objects.select_related(
            "release", "release__project", "environment", "environment__project"
        ).prefetch_related("approvals__user"),
        user,
        project_field="environment__project",
    )


def _serving_deployments() -> QuerySet[Deployment]:
    """Succeeded deployments of ``OuterRef("pk")`` (an environment), the one serving first."""
    return Deployment.objects.filter(
        environment=OuterRef("pk"), status=DeploymentStatus.SUCCEEDED
    ).order_by("-finished_at", "-pk")


def environment_matrix(*, projects) -> list[dict]:
    """For each project, each environment with the release serving there now and since when,
    the model versions serving there, the commit whose pipelines it runs and its schedules
    with their next fire time; and the project's own schedules (the default branch's)."""
    envs = (
        Environment.objects.filter(project__in=projects)
        .annotate(current_deployment_id=Subquery(_serving_deployments().values("pk")[:1]))
        .order_by("project__name", "order")
    )
    # release__project: the cells link to releases and promotions, whose URLs name the project.
    deployments = Deployment.objects.select_related("release__project").in_bulk(
        [e.current_deployment_id for e in envs if e.current_deployment_id]
    )
    pending = {
        p.environment_id: p
        for p in Promotion.objects.filter(
            environment__in=envs, status=PromotionStatus.PENDING
        ).select_related("release__project")
    }
    models: dict[int, list] = {}
    aliases = ModelAlias.objects.filter(environment__in=envs)
    for alias in aliases.select_related("model_version__project"):
        models.setdefault(alias.environment_id, []).append(alias.model_version)
    # Each environment runs its own schedules, or (none of its own) the project's.
    schedules: dict[tuple[int, int | None], list] = {}
    for schedule in Schedule.objects.filter(project__in=projects, paused=False):
        schedules.setdefault((schedule.project_id, schedule.environment_id), []).append(schedule)
    rows: dict[int, dict] = {p.pk: {"project": p, "environments": []} for p in projects}
    for env in envs:
        own = schedules.get((env.project_id, env.pk))
        scheduled = [
            {"schedule": s, "next": next((t for t in next_fires(s, count=1)), None)}
            for s in (own or [])
        ]
        rows[env.project_id]["environments"].append(
            {
                "environment": env,
                "deployment": deployments.get(env.current_deployment_id),
                "pending": pending.get(env.pk),
                "models": models.get(env.pk, []),
                "pipeline_commit": env.pipeline_commit_sha,
                "schedules": scheduled,
            }
        )
    for project_id, row in rows.items():
        row["schedules"] = [
            {"schedule": s, "next": next((t for t in next_fires(s, count=1)), None)}
            for s in schedules.get((project_id, None), [])
        ]
    return list(rows.values())


def with_serving(environments: QuerySet[Environment]) -> QuerySet[Environment]:
    """Annotate each environment with what serves there now: ``serving_deployment_id``,
    ``serving_release_id``, ``serving_release_version``, ``serving_since``, ``serving_status``
    (all None when nothing was deployed)."""
    serving = _serving_deployments()
    return environments.annotate(
        serving_deployment_id=Subquery(serving.values("pk")[:1]),
        serving_release_id=Subquery(serving.values("release_id")[:1]),
        serving_release_version=Subquery(serving.values("release__version")[:1]),
        serving_since=Subquery(serving.values("finished_at")[:1]),
        serving_status=Subquery(serving.values("status")[:1]),
    )


def environment_list_with_serving(*, user) -> QuerySet[Environment]:
    return with_serving(environment_list(user=user))


def serving_deployment(environment: Environment) -> Deployment | None:
    """The deployment whose release serves the environment now."""
    return (
        Deployment.objects.select_related("release")
        .filter(environment=environment, status=DeploymentStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def environment_needs_approval(environment: Environment) -> bool:
    return not environment.auto_deploy and environment.required_approvals > 0


def freeze_message(environment: Environment, at: datetime) -> str:
    """Why deploys to ``environment`` are held at ``at`` (the open freeze window and its end),
    or "" when no window is open."""
    window = environment.active_freeze(at)
    if window is None:
        return ""
    ends = window.ends_at(at)
    why = f" ({window.reason})" if window.reason else ""
    return (
        f"{environment.name} is frozen{why} until {ends:%Y-%m-%d %H:%M} {ends.tzname() or 'UTC'}; "
        "deploys are held until then."
    )


# --------------------------------------------------------------------------- approvals inbox


def approval_inbox(*, user) -> list[Promotion]:
    """Open promotions in environments where ``user`` holds the approver role, closest deadline
    first. Each carries ``approvals_so_far`` (approve decisions) and ``my_decision`` (None when
    the user has not decided yet). Whether the user may decide is
    ``services.promotion_decision_blocker``'s answer, not this list's."""
    mine = Approval.objects.filter(promotion=OuterRef("pk"), user=user.pk).values("decision")[:1]
    promotions = (
        restrict_to_visible(
            Promotion.objects.filter(status=PromotionStatus.PENDING).filter(
                # Past its deadline it takes no decisions; the expiry task closes it soon.
                Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
            ),
            user,
            project_field="environment__project",
        )
        .select_related(
            "release",
            "release__project",  # the promotion's URL
            "release__pipeline_run",
            "environment",
            "environment__project",
            "requested_by",
        )
        .annotate(
            approvals_so_far=Count(
                "approvals", filter=Q(approvals__decision=ApprovalDecision.APPROVE)
            ),
            my_decision=Subquery(mine),
        )
        .order_by(F("expires_at").asc(nulls_last=True), "created", "pk")
    )
    return [
        p
        for p in promotions
        if has_role(user, p.environment.project_id, p.environment.approver_min_role)
    ]


# --------------------------------------------------------------------------- promotion evidence


def _model_values(release: Release | None) -> dict[str, Any]:
    """Everything the release's model recorded, metrics, params and tags together: from its
    registry entry (already split), else from the release's evidence (an older release)."""
    if release is None:
        return {}
    if release.model_version_id:
        mv = release.model_version
        if mv.metrics or mv.params or mv.tags:
            return {**mv.tags, **mv.params, **mv.metrics}
    recorded = ((release.evidence or {}).get("model") or {}).get("metrics") or {}
    split = split_metrics(recorded)
    return {**split.tags, **split.params, **split.metrics}


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def is_judging_metric(name: str, value: Any) -> bool:
    """A score to judge a model by: the registry's rule (``training.metricsfile``): a number
    whose name is not a seed, a size (``n_*``), a version or a hash."""
    return is_metric(name, value)


def metrics_comparison(*, release: Release, production: Release | None) -> list[dict[str, Any]]:
    """One row per metric of either release (see :func:`is_judging_metric`): this release's
    value, production's, the delta (this minus production) when both are numbers."""
    return _compared(release=release, production=production, metrics=True)


def parameters_comparison(*, release: Release, production: Release | None) -> list[dict[str, Any]]:
    """The other values the model recorded (seed, library versions, dataset hash, …): this
    release's and production's, side by side, no delta."""
    return _compared(release=release, production=production, metrics=False)


def _compared(
    *, release: Release, production: Release | None, metrics: bool
) -> list[dict[str, Any]]:
    mine, theirs = _model_values(release), _model_values(production)
    rows = []
    for name in sorted(set(mine) | set(theirs)):
        value, base = mine.get(name), theirs.get(name)
        judged = is_judging_metric(name, value if name in mine else base)
        if judged != metrics:
            continue
        delta = value - base if metrics and _is_number(value) and _is_number(base) else None
        rows.append({"name": name, "value": value, "production": base, "delta": delta})
    return rows


@dataclass
class CommitRange:
    commits: list[dict[str, Any]]
    base_release: Release | None = None
    base_known: bool = False  # the base commit is in the mirror: the list is exactly the range
    error: str = ""


def commits_since(
    *, release: Release, base_release: Release | None, limit: int = COMMITS_SHOWN
) -> CommitRange:
    """The commits ``release`` adds on top of ``base_release`` (what serves the environment);
    the last ``limit`` commits when there is no base or the repository copy lacks it."""
    project = release.project
    base_sha = base_release.commit_sha if base_release else ""
    try:
        commits = git.commits_between(project, base_sha, release.commit_sha, limit=limit)
        base_known = bool(base_sha) and git.has_commit(project, base_sha)
    except (git.GitError, OSError) as exc:
        return CommitRange(commits=[], base_release=base_release, error=str(exc))
    return CommitRange(commits=commits, base_release=base_release, base_known=base_known)


def promotion_evidence(*, promotion: Promotion, serving: Deployment | None) -> dict[str, Any]:
    """What a team lead reads before deciding: the commits since the release serving the
    environment, tests, reproducibility, model metrics against production, provenance.

    ``serving`` is the deployment serving the environment now; once the promotion has been
    deployed, the comparison is with what served before it."""
    release = promotion.release
    base, deployment = serving, None
    if promotion.deployment_id:
        deployment = (
            Deployment.objects.select_related("previous__release")
            .filter(pk=promotion.deployment_id)
            .first()
        )
    if deployment is not None:
        base = deployment.previous
    base_release = base.release if base is not None else None
    redeploy = base_release is not None and base_release.pk == release.pk
    if redeploy:
        base_release = None  # it serves there already: nothing to compare with
    run = release.pipeline_run
    evidence = release.evidence or {}
    return {
        "base_release": base_release,
        "redeploy": redeploy,
        "commits": None if redeploy else commits_since(release=release, base_release=base_release),
        "tests": evidence.get("tests") or {},
        "reproducibility": evidence.get("reproducibility") or {},
        "metrics": metrics_comparison(release=release, production=base_release),
        "parameters": parameters_comparison(release=release, production=base_release),
        "run": run,
        "deployment": deployment,
        "gate": gate_comparison(evidence.get("gate")),
    }


def gate_comparison(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gate evidence of a model release with one row per metric either side was
    evaluated on: candidate, champion, change (candidate minus champion); the primary metric
    and the guards first."""
    if not gate:
        return None
    mine, theirs = gate.get("candidate_metrics") or {}, gate.get("champion_metrics") or {}
    judged = [gate.get("metric"), *sorted(gate.get("guards") or {})]
    names = [n for n in judged if n] + sorted((set(mine) | set(theirs)) - set(judged))
    rows = []
    for name in dict.fromkeys(names):
        value, base = mine.get(name), theirs.get(name)
        delta = value - base if _is_number(value) and _is_number(base) else None
        role = (
            "primary"
            if name == gate.get("metric")
            else f"guard ({gate['guards'][name]} is better)"
            if name in (gate.get("guards") or {})
            else ""
        )
        rows.append(
            {"name": name, "role": role, "candidate": value, "champion": base, "delta": delta}
        )
    return {**gate, "rows": rows}


# --------------------------------------------------------------------------- environment page


def deployment_history(*, environment: Environment) -> QuerySet[Deployment]:
    """Deployments of ``environment``, newest first, each with ``run_time`` (None until it
    has started and finished)."""
    return (
        environment.deployments.select_related("release", "triggered_by")
        .annotate(run_time=F("finished_at") - F("started_at"))
        .order_by("-created", "-pk")
    )


def rollback_candidates(
    *, environment: Environment, serving: Deployment | None, limit: int = 10
) -> list[Deployment]:
    """The last successful deployment of each release that served ``environment`` before,
    newest first, without the release serving now: what a rollback may go back to."""
    seen = {serving.release_id} if serving is not None else set()
    candidates = []
    for deployment in (
        environment.deployments.select_related("release")
        .filter(status=DeploymentStatus.SUCCEEDED, release__blocked_at__isnull=True)
        .order_by("-finished_at", "-pk")[:200]
    ):
        if deployment.release_id in seen:
            continue
        seen.add(deployment.release_id)
        candidates.append(deployment)
        if len(candidates) >= limit:
            break
    return candidates


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # deployment, promotion, approval, audit
    text: str
    actor: str = ""
    status: str = ""
    detail: str = ""
    url: str = ""


def _name(user) -> str:
    return user.get_username() if user is not None else ""


def environment_timeline(*, environment: Environment, limit: int = 50) -> list[TimelineEntry]:
    """Deployments, promotions, approvals and the environment's own audit events, newest
    first."""
    entries: list[TimelineEntry] = []
    for d in deployment_history(environment=environment)[:limit]:
        what = "Rollback to" if d.is_rollback else "Deploy of"
        anchor = f"{environment.get_absolute_url()}#deployment-{d.pk}"
        entries.append(
            TimelineEntry(
                at=d.created,
                kind="deployment",
                text=f"{what} {d.release.version} requested",
                actor=_name(d.triggered_by) or "pipeline",
                detail=(d.details or {}).get("reason", ""),
                url=anchor,
            )
        )
        if d.finished_at:
            entries.append(
                TimelineEntry(
                    at=d.finished_at,
                    kind="deployment",
                    text=f"{d.release.version} {d.get_status_display().lower()}",
                    status=d.status,
                    detail=d.error_message,
                    url=anchor,
                )
            )
    promotions = list(
        environment.promotions.select_related("release", "requested_by").order_by("-created")[
            :limit
        ]
    )
    # Why a promotion ended (superseded by…, no decision before the deadline…) is on its
    # audit row, not on the promotion.
    ended = {
        (event.object_id, event.to_state): event
        for event in AuditEvent.objects.filter(
            content_type=ContentType.objects.get_for_model(Promotion),
            object_id__in=[str(p.pk) for p in promotions],
        ).exclude(to_state="")
    }
    for p in promotions:
        entries.append(
            TimelineEntry(
                at=p.created,
                kind="promotion",
                text=f"Promotion of {p.release.version} requested",
                actor=_name(p.requested_by) or "pipeline",
                url=p.get_absolute_url(),
            )
        )
        for at, states in (
            (p.decided_at, {"approved", "rejected", "expired", "superseded"}),
            (p.finished_at, {"deployed", "failed"}),
        ):
            if at is None:
                continue
            event = next((ended[(str(p.pk), s)] for s in states if (str(p.pk), s) in ended), None)
            status = event.to_state if event else (p.status if p.status in states else "")
            entries.append(
                TimelineEntry(
                    at=at,
                    kind="promotion",
                    text=f"Promotion of {p.release.version} {status or 'decided'}",
                    actor=event.actor_label if event else "",
                    status=status,
                    detail=event.reason if event else "",
                    url=p.get_absolute_url(),
                )
            )
    for a in (
        Approval.objects.filter(promotion__environment=environment)
        .select_related("user", "promotion__release")
        .order_by("-created")[:limit]
    ):
        verb = "Approved" if a.decision == ApprovalDecision.APPROVE else "Rejected"
        entries.append(
            TimelineEntry(
                at=a.created,
                kind="approval",
                text=f"{verb} {a.promotion.release.version} ({a.get_channel_display()})",
                actor=_name(a.user),
                detail=a.comment,
                url=a.promotion.get_absolute_url(),
            )
        )
    own = (
        Q(
            content_type=ContentType.objects.get_for_model(Environment),
            object_id=str(environment.pk),
        )
        | Q(
            content_type=ContentType.objects.get_for_model(FreezeWindow),
            object_id__in=[
                str(pk) for pk in environment.freeze_windows.values_list("pk", flat=True)
            ],
        )
        | Q(
            # Rows of apps to the right (monitoring's alerts) name the environment in their data;
            # releases cannot import them, the audit log can carry them.
            project_id=environment.project_id,
            data__environment_id=environment.pk,
        )
    )
    for event in AuditEvent.objects.filter(own).order_by("-created")[:limit]:
        changed = ", ".join((event.data or {}).get("fields", []))
        why = event.reason or (event.data or {}).get("reason", "")
        entries.append(
            TimelineEntry(
                at=event.created,
                kind="audit",
                # "freeze_window.added" → "Freeze window added"
                text=event.action.replace(".", " ").replace("_", " ").capitalize(),
                actor=event.actor_label,
                detail=why or (f"changed: {changed}" if changed else ""),
                status=event.to_state if event.action.startswith("alert.") else "",
                url=(event.data or {}).get("url", ""),
            )
        )
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
