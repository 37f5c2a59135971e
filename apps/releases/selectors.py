from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible

from .models import Deployment, Promotion, Release


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
        Promotion.objects.select_related(
            "release", "environment", "environment__project"
        ).prefetch_related("approvals__user"),
        user,
        project_field="environment__project",
    )


def environment_matrix(*, projects) -> list[dict]:
    """For each project, each environment with the release serving there now and since when."""
    from django.db.models import OuterRef, Subquery

    from apps.projects.models import Environment

    from .choices import DeploymentStatus, PromotionStatus

    latest = Deployment.objects.filter(
        environment=OuterRef("pk"), status=DeploymentStatus.SUCCEEDED
    ).order_by("-finished_at", "-id")
    envs = (
        Environment.objects.filter(project__in=projects)
        .annotate(current_deployment_id=Subquery(latest.values("pk")[:1]))
        .order_by("project__name", "order")
    )
    deployments = Deployment.objects.select_related("release").in_bulk(
        [e.current_deployment_id for e in envs if e.current_deployment_id]
    )
    pending = {
        p.environment_id: p
        for p in Promotion.objects.filter(
            environment__in=envs, status=PromotionStatus.PENDING
        ).select_related("release")
    }
    rows: dict[int, dict] = {p.pk: {"project": p, "environments": []} for p in projects}
    for env in envs:
        rows[env.project_id]["environments"].append(
            {
                "environment": env,
                "deployment": deployments.get(env.current_deployment_id),
                "pending": pending.get(env.pk),
            }
        )
    return list(rows.values())
