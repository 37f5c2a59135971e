from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ServiceError
from apps.projects.models import Project
from apps.projects.selectors import project_list

from . import interactions, linking, selectors, services, slack
from .forms import TargetForm
from .models import NotificationTarget

#: Slack's interaction payloads are a few KB; anything much larger is not from Slack.
MAX_INTERACTION_BYTES = 1024 * 1024
#: Changing targets needs what the API needs (``NotificationTargetViewSet.write_role``).
CHANGE_ROLE = Role.ADMIN


@csrf_exempt
@require_POST
def slack_interactions(request: HttpRequest) -> HttpResponse:
    """``POST /integrations/slack/interactions/``: Slack's interactivity requests. No session,
    no CSRF: Slack's signature over the raw body is the credential, checked before anything
    is parsed. Answers at once (a Reject click opens the reason modal first); a worker acts and
    replies to the clicker (ephemeral)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_INTERACTION_BYTES:
        return HttpResponse(status=413)
    try:
        body = request.body
    except RequestDataTooBig:
        return HttpResponse(status=413)
    if not slack.verify_request(body=body, headers=request.headers):
        return HttpResponse("Invalid signature.", status=401, content_type="text/plain")
    try:
        payload = slack.parse_interaction(body)
    except ValueError:
        return HttpResponse("Unreadable payload.", status=400, content_type="text/plain")
    answer = interactions.slack_interaction_receive(payload=payload)
    if answer is not None:
        return JsonResponse(answer)
    return HttpResponse(status=200)


@login_required
@require_http_methods(["GET", "POST"])
def slack_account(request: HttpRequest) -> HttpResponse:
    """Link or unlink your Slack account (the page Slack's "link your account" reply names).
    Linking takes proof: the bot sends a one-time code to that Slack user, typed back here."""
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "unlink":
                services.slack_identity_unlink(user=request.user)
                messages.success(request, "Your Slack account is unlinked.")
            elif action == "confirm":
                linking.slack_link_confirm(user=request.user, code=request.POST.get("code", ""))
                messages.success(request, "Your Slack account is linked.")
            elif action == "cancel":
                linking.slack_link_cancel(user=request.user)
            else:
                sent = linking.slack_link_start(
                    user=request.user,
                    slack_user_id=request.POST.get("slack_user_id", ""),
                    team_id=request.POST.get("team_id", ""),
                )
                messages.success(
                    request,
                    f"A code was sent to {sent['slack_user_id']} in Slack: enter it below.",
                )
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect("notifications:slack-account")
    return render(
        request,
        "notifications/slack_account.html",
        {
            "identity": selectors.slack_identity_for(user=request.user),
            "pending": linking.slack_link_pending(user=request.user),
        },
    )


# --- a project's targets ----------------------------------------------------------------------


def _project(request: HttpRequest, slug: str) -> Project:
    """The project, if the user may see it (else 404: no hint that it exists)."""
    return get_object_or_404(project_list(user=request.user), slug=slug)


def _may_change(request: HttpRequest, project: Project) -> bool:
    return has_role(request.user, project.pk, CHANGE_ROLE)


def _check_may_change(request: HttpRequest, project: Project) -> None:
    if not _may_change(request, project):
        raise PermissionDenied(f"Changing notification targets needs the {CHANGE_ROLE} role.")


def _target_to_change(
    request: HttpRequest, slug: str, pk: int
) -> tuple[Project, NotificationTarget]:
    """The project and its target (404 if not visible), if the user may change it (else 403)."""
    project = _project(request, slug)
    target = get_object_or_404(selectors.target_list(user=request.user), project=project, pk=pk)
    _check_may_change(request, project)
    return project, target


@login_required
def project_notifications(request: HttpRequest, slug: str) -> HttpResponse:
    """A project's notification targets (admins add, edit, disable and delete them here or
    through the API) and its recent deliveries."""
    project = _project(request, slug)
    return render(
        request,
        "notifications/project.html",
        {
            "project": project,
            "targets": selectors.target_list(user=request.user).filter(project=project),
            "deliveries": selectors.delivery_list(user=request.user).filter(project=project)[:50],
            "may_change": _may_change(request, project),
        },
    )


def _form_page(
    request: HttpRequest, project: Project, form: TargetForm, target: NotificationTarget | None
) -> HttpResponse:
    return render(
        request,
        "notifications/target_form.html",
        {"project": project, "form": form, "target": target},
        status=400 if form.is_bound else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def target_add(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    _check_may_change(request, project)
    form = TargetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            target = services.target_create(
                project=project, actor=request.user, **form.cleaned_data
            )
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Target {target.name or target.get_kind_display()} added.")
            return redirect("notifications:project", slug=project.slug)
    return _form_page(request, project, form, None)


@login_required
@require_http_methods(["GET", "POST"])
def target_edit(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project, target = _target_to_change(request, slug, pk)
    form = TargetForm(request.POST or None, target=target)
    if request.method == "POST" and form.is_valid():
        try:
            services.target_update(target=target, actor=request.user, **form.changes())
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Target saved.")
            return redirect("notifications:project", slug=project.slug)
    return _form_page(request, project, form, target)


@login_required
@require_POST
def target_enabled(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Enable (``enabled=1``) or disable a target; htmx gets the table row back."""
    project, target = _target_to_change(request, slug, pk)
    enabled = request.POST.get("enabled") == "1"
    try:
        target = services.target_update(target=target, actor=request.user, enabled=enabled)
    except ServiceError as exc:
        messages.error(request, exc.message)
    if request.htmx:
        context = {"project": project, "t": target, "may_change": True}
        return render(request, "notifications/project.html#target_row", context)
    return redirect("notifications:project", slug=project.slug)


@login_required
@require_POST
def target_remove(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project, target = _target_to_change(request, slug, pk)
    services.target_delete(target=target, actor=request.user)
    if request.htmx:
        return HttpResponse("")  # the row is swapped out
    messages.success(request, "Target deleted; its deliveries stay in the ledger.")
    return redirect("notifications:project", slug=project.slug)


@login_required
@require_POST
def target_send_test(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project, target = _target_to_change(request, slug, pk)
    try:
        services.target_test(target=target, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Test notification queued: see the deliveries below.")
    return redirect("notifications:project", slug=project.slug)
