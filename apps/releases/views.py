from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.permissions import has_role
from apps.core.exceptions import ServiceError
from apps.projects.selectors import project_list

from . import selectors, services
from .choices import ApprovalChannel, ApprovalDecision, PromotionStatus
from .models import Promotion


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    projects = list(project_list(user=request.user).prefetch_related("environments"))
    matrix = selectors.environment_matrix(projects=projects)
    pending = selectors.promotion_list(user=request.user).filter(status=PromotionStatus.PENDING)
    return render(
        request,
        "releases/dashboard.html",
        {
            "matrix": matrix,
            "pending_promotions": pending[:20],
        },
    )


@login_required
def release_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    release = get_object_or_404(
        selectors.release_list(user=request.user), project__slug=slug, pk=pk
    )
    return render(
        request,
        "releases/release_detail.html",
        {
            "release": release,
            "deployments": release.deployments.select_related("environment")[:50],
            "promotions": release.promotions.select_related("environment"),
        },
    )


def _promotion_or_404(request, slug: str, pk: int) -> Promotion:
    return get_object_or_404(
        selectors.promotion_list(user=request.user), environment__project__slug=slug, pk=pk
    )


@login_required
def promotion_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    promotion = _promotion_or_404(request, slug, pk)
    env = promotion.environment
    return render(
        request,
        "releases/promotion_detail.html",
        {
            "promotion": promotion,
            "release": promotion.release,
            "may_decide": promotion.status == PromotionStatus.PENDING
            and has_role(request.user, env.project_id, env.approver_min_role),
        },
    )


@login_required
@require_POST
def promotion_decide(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    promotion = _promotion_or_404(request, slug, pk)
    decision = request.POST.get("decision")
    if decision not in ApprovalDecision.values:
        raise Http404
    try:
        services.promotion_decide(
            promotion=promotion,
            user=request.user,
            decision=decision,
            comment=request.POST.get("comment", "")[:4000],
            channel=ApprovalChannel.WEB,
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Your decision ({decision}) is recorded.")
    return redirect(promotion)
