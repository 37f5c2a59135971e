from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ServiceError
from apps.projects import services as project_services
from apps.projects.models import Environment
from apps.projects.selectors import project_list

from . import selectors, services
from .choices import ApprovalChannel, ApprovalDecision, PromotionStatus
from .forms import FreezeWindowForm
from .models import Promotion, Release

REASON_MAX = 2000


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
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    items = [
        {
            "promotion": p,
            "blocker": services.promotion_decision_blocker(promotion=p, user=request.user),
        }
        for p in selectors.approval_inbox(user=request.user)
    ]
    return render(request, "releases/approvals_inbox.html", {"items": items})


def _require_role(request: HttpRequest, project_id: int, role: str) -> None:
    if not has_role(request.user, project_id, role):
        raise PermissionDenied("You do not have the role this needs in this project.")


def _release_by_key(releases, key: str) -> Release:
    """The release named ``key`` in a URL: its version, or (old links) its id."""
    release = releases.filter(version=key).first()
    if release is None and key.isdigit():
        release = releases.filter(pk=int(key)).first()
    if release is None:
        raise Http404("No such release in this project.")
    return release


def _release_or_404(request: HttpRequest, slug: str, key: str) -> Release:
    releases = selectors.release_list(user=request.user).select_related(
        "pipeline_run", "created_by"
    )
    return _release_by_key(releases.filter(project__slug=slug), key)


@login_required
def release_detail(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    release = _release_or_404(request, slug, key)
    if key != release.url_key:  # an old link by id
        return redirect(release, permanent=True)
    may_act = not release.is_blocked and has_role(request.user, release.project_id, Role.DEVELOPER)
    open_promotions = {
        p.environment_id: p for p in release.promotions.filter(status=PromotionStatus.PENDING)
    }
    environments = [
        {
            "environment": env,
            "serving": selectors.serving_deployment(env),
            "needs_approval": selectors.environment_needs_approval(env),
            "open_promotion": open_promotions.get(env.pk),
        }
        for env in release.project.environments.order_by("order", "name")
    ]
    return render(
        request,
        "releases/release_detail.html",
        {
            "release": release,
            "environments": environments,
            "may_act": may_act,
            "deployments": release.deployments.select_related("environment", "triggered_by")[:50],
            "promotions": release.promotions.select_related("environment"),
        },
    )


def _environment_of(release: Release, request: HttpRequest) -> Environment:
    pk = request.POST.get("environment", "")
    environment = release.project.environments.filter(pk=pk).first() if pk.isdigit() else None
    if environment is None:
        raise Http404("No such environment in this project.")
    return environment


@login_required
@require_POST
def release_deploy(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    release = _release_or_404(request, slug, key)
    _require_role(request, release.project_id, Role.DEVELOPER)
    environment = _environment_of(release, request)
    try:
        deployment = services.deployment_request(
            release=release,
            environment=environment,
            actor=request.user,
            reason=request.POST.get("reason", "")[:REASON_MAX],
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(release)
    messages.success(request, f"Deploying {release.version} to {environment.name}.")
    return redirect(deployment)  # its page follows the deploy live


@login_required
@require_POST
def release_promote(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    release = _release_or_404(request, slug, key)
    _require_role(request, release.project_id, Role.DEVELOPER)
    environment = _environment_of(release, request)
    try:
        promotion = services.promotion_request(
            release=release, environment=environment, actor=request.user
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(release)
    messages.success(request, f"Promotion of {release.version} to {environment.name} requested.")
    return redirect(promotion)


def _promotion_or_404(request, slug: str, pk: int) -> Promotion:
    return get_object_or_404(
        selectors.promotion_list(user=request.user).select_related(
            "release__pipeline_run",
            "release__created_by",
            "release__model_version",
            "requested_by",
        ),
        environment__project__slug=slug,
        pk=pk,
    )


def _promotion_page(
    request: HttpRequest,
    promotion: Promotion,
    *,
    error: str = "",
    comment: str = "",
    status: int = 200,
) -> HttpResponse:
    env = promotion.environment
    approvals = list(promotion.approvals.all())
    mine = next((a for a in approvals if a.user_id == request.user.pk), None)
    expired = promotion.expires_at is not None and promotion.expires_at <= timezone.now()
    # Why this user sees no approve / reject buttons; None: they may decide.
    if promotion.status != PromotionStatus.PENDING:
        refusal = f"This promotion is {promotion.get_status_display().lower()}."
    elif expired:
        refusal = "This promotion has expired."
    elif mine is not None:
        refusal = f"You have already decided on this promotion ({mine.get_decision_display()})."
    else:
        refusal = services.promotion_decision_blocker(promotion=promotion, user=request.user)
    return render(
        request,
        "releases/promotion_detail.html",
        {
            "promotion": promotion,
            "release": promotion.release,
            "environment": env,
            "approvals": approvals,
            "approvals_so_far": sum(a.decision == ApprovalDecision.APPROVE for a in approvals),
            "expired": expired,
            "refusal": refusal,
            "decision_error": error,
            "comment": comment,
            "evidence": selectors.promotion_evidence(
                promotion=promotion, serving=selectors.serving_deployment(env)
            ),
        },
        status=status,
    )


@login_required
def promotion_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _promotion_page(request, _promotion_or_404(request, slug, pk))


@login_required
@require_POST
def promotion_decision(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """The approve / reject buttons of the promotion page. A refused decision (no comment on a
    rejection, no role, decided already) shows the page again with why, and records nothing."""
    promotion = _promotion_or_404(request, slug, pk)
    decision = request.POST.get("decision")
    decide = {
        ApprovalDecision.APPROVE: services.promotion_approve,
        ApprovalDecision.REJECT: services.promotion_reject,
    }.get(decision)
    if decide is None:
        raise Http404
    comment = request.POST.get("comment", "")[:4000]
    try:
        decide(promotion=promotion, user=request.user, comment=comment, channel=ApprovalChannel.WEB)
    except ServiceError as exc:
        return _promotion_page(
            request, promotion, error=exc.message, comment=comment, status=exc.status_code
        )
    messages.success(request, f"Your decision ({decision}) is recorded.")
    return redirect(promotion)


@login_required
def deployment_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """One deployment: what, where, by whom, and its log (polled while it is not over)."""
    deployment = get_object_or_404(
        selectors.deployment_list(user=request.user).select_related(
            "triggered_by", "previous__release", "promotion"
        ),
        environment__project__slug=slug,
        pk=pk,
    )
    template = "releases/deployment_detail.html"
    if request.headers.get("HX-Request"):
        template += "#card"
    return render(
        request,
        template,
        {
            "deployment": deployment,
            "environment": deployment.environment,
            "project": deployment.environment.project,
        },
    )


def _environment_or_404(request: HttpRequest, slug: str, name: str) -> Environment:
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    return get_object_or_404(
        project.environments.select_related("project").prefetch_related("freeze_windows"),
        name=name,
    )


def _environment_page(
    request: HttpRequest,
    environment: Environment,
    *,
    freeze_form: FreezeWindowForm | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    serving = selectors.serving_deployment(environment)
    freeze = environment.active_freeze(now)
    history = Paginator(selectors.deployment_history(environment=environment), 25)
    may_freeze = has_role(request.user, environment.project_id, Role.ADMIN)
    return render(
        request,
        "releases/environment_detail.html",
        {
            "project": environment.project,
            "environment": environment,
            "serving": serving,
            "freeze": freeze,
            "freeze_ends": freeze.ends_at(now) if freeze else None,
            "freeze_windows": environment.freeze_windows.all(),
            "may_freeze": may_freeze,
            "freeze_form": (freeze_form or FreezeWindowForm()) if may_freeze else None,
            "waiting_promotions": environment.promotions.filter(
                status__in=(PromotionStatus.PENDING, PromotionStatus.APPROVED)
            ).select_related("release"),
            "page": history.get_page(request.GET.get("page")),
            "timeline": selectors.environment_timeline(environment=environment),
            "rollback_to": selectors.rollback_candidates(environment=environment, serving=serving),
            "may_deploy": has_role(request.user, environment.project_id, Role.DEVELOPER),
            "service_url_is_link": environment.service_url.startswith(("http://", "https://")),
        },
        status=status,
    )


@login_required
def environment_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    return _environment_page(request, _environment_or_404(request, slug, name))


@login_required
@require_POST
def freeze_window_add(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """Add a freeze window (the project's admin role, as in the API); a refused one shows the
    page again with the form's errors."""
    environment = _environment_or_404(request, slug, name)
    _require_role(request, environment.project_id, Role.ADMIN)
    form = FreezeWindowForm(request.POST)
    if form.is_valid():
        try:
            window = project_services.freeze_window_add(
                environment=environment, actor=request.user, **form.cleaned_data
            )
        except DjangoValidationError as exc:
            form.add_error(None, exc)  # the service's checks (cron, duration), on their fields
        else:
            messages.success(request, f"Freeze window {window.cron} for {window.duration} added.")
            return redirect(f"{environment.get_absolute_url()}#freeze-windows")
    return _environment_page(request, environment, freeze_form=form, status=400)


@login_required
@require_POST
def freeze_window_remove(
    request: HttpRequest, slug: str, name: str, window_id: int
) -> HttpResponse:
    environment = _environment_or_404(request, slug, name)
    _require_role(request, environment.project_id, Role.ADMIN)
    window = get_object_or_404(environment.freeze_windows, pk=window_id)
    project_services.freeze_window_remove(window=window, actor=request.user)
    messages.success(request, f"Freeze window {window.cron} removed.")
    return redirect(f"{environment.get_absolute_url()}#freeze-windows")


@login_required
def environment_rollback(request: HttpRequest, slug: str, name: str, key: str) -> HttpResponse:
    """Ask before redeploying an older release; the POST does it."""
    environment = _environment_or_404(request, slug, name)
    _require_role(request, environment.project_id, Role.DEVELOPER)
    release = _release_by_key(environment.project.releases.all(), key)
    error, status = "", 200
    if request.method == "POST":
        try:
            deployment = services.deployment_rollback(
                environment=environment,
                release=release,
                actor=request.user,
                reason=request.POST.get("reason", "")[:REASON_MAX],
            )
        except ServiceError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(request, f"Rolling back {environment.name} to {release.version}.")
            return redirect(deployment)  # its page follows the deploy live
    return render(
        request,
        "releases/environment_rollback.html",
        {
            "environment": environment,
            "release": release,
            "serving": selectors.serving_deployment(environment),
            "error": error,
            "reason": request.POST.get("reason", ""),
        },
        status=status,
    )


@login_required
def model_lineage(request: HttpRequest, slug: str, name: str, version: int) -> HttpResponse:
    """One model version's lineage: commit → datasets → run/job → model → gate → releases →
    images → the environments it serves in."""
    from apps.training import selectors as training_selectors

    from .lineage import model_lineage as lineage_of

    mv = get_object_or_404(
        training_selectors.model_version_detail(
            training_selectors.model_version_list(user=request.user)
        ),
        project__slug=slug,
        name=name,
        version=version,
    )
    return render(
        request,
        "releases/model_lineage.html",
        {"project": mv.project, "mv": mv, "lineage": lineage_of(model_version=mv)},
    )
