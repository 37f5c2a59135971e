from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ServiceError
from apps.projects.selectors import project_list

from . import interactions, selectors, services, slack

#: Slack's interaction payloads are a few KB; anything much larger is not from Slack.
MAX_INTERACTION_BYTES = 1024 * 1024


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
    """Link or unlink your Slack account (the page Slack's "link your account" reply names)."""
    if request.method == "POST":
        try:
            if request.POST.get("action") == "unlink":
                services.slack_identity_unlink(user=request.user)
                messages.success(request, "Your Slack account is unlinked.")
            else:
                services.slack_identity_link(
                    user=request.user,
                    slack_user_id=request.POST.get("slack_user_id", ""),
                    team_id=request.POST.get("team_id", ""),
                )
                messages.success(request, "Your Slack account is linked.")
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect("notifications:slack-account")
    return render(
        request,
        "notifications/slack_account.html",
        {"identity": selectors.slack_identity_for(user=request.user)},
    )


@login_required
def project_notifications(request: HttpRequest, slug: str) -> HttpResponse:
    """A project's notification targets and its recent deliveries (read-only; change targets
    through the API)."""
    project = get_object_or_404(project_list(user=request.user), slug=slug)
    return render(
        request,
        "notifications/project.html",
        {
            "project": project,
            "targets": selectors.target_list(user=request.user).filter(project=project),
            "deliveries": selectors.delivery_list(user=request.user).filter(project=project)[:50],
            "may_change": has_role(request.user, project.pk, Role.ADMIN),
        },
    )
