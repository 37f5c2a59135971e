"""The alert and silence pages of a project, and Alertmanager's receiver."""

import json
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ServiceError
from apps.projects.selectors import project_list

from . import alert_selectors as selectors
from .alertmanager import Unauthorized, alertmanager_receive, check_token
from .api.alerts import AlertFilter
from .models import Alert
from .services.alerts import alert_acknowledge, silence_create, silence_expire
from .silences import matchers_from_labels, matchers_parse, matchers_text

# --- Alertmanager ---------------------------------------------------------------------------


@csrf_exempt
@require_POST
def alertmanager_webhook(request: HttpRequest) -> JsonResponse:
    """``POST /integrations/alertmanager/``: Alertmanager's webhook_config (payload v4), with
    ``authorization: {credentials: <CONTROLPLANE_ALERTMANAGER_TOKEN>}``."""
    try:
        check_token(request.headers.get("Authorization", ""))
    except Unauthorized as exc:
        response = JsonResponse({"detail": exc.message}, status=exc.status)
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="alertmanager"'
        return response
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    body = request.read(limit + 1)
    if len(body) > limit:
        return JsonResponse({"detail": "Payload too large."}, status=413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "Not JSON."}, status=400)
    try:
        result = alertmanager_receive(data=data)
    except ServiceError as exc:
        return JsonResponse({"detail": exc.message, "code": exc.code}, status=400)
    from .tasks import dispatch_alerts_task

    transaction.on_commit(dispatch_alerts_task.delay)
    return JsonResponse(result, status=200)


# --- pages ----------------------------------------------------------------------------------


def _project(request: HttpRequest, slug: str):
    return get_object_or_404(project_list(user=request.user), slug=slug)


@login_required
def alert_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    qs = selectors.alert_list(user=request.user).filter(project=project)
    data = request.GET.copy()
    if "status" not in data:
        data["status"] = "firing"  # what needs a look, unless asked otherwise
    filterset = AlertFilter(data, queryset=qs, request=request)
    filterset.form.fields.pop("project", None)
    filterset.form.fields["environment"].queryset = project.environments.all()
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    selectors.with_current_silences(list(page.object_list))
    context = {
        "project": project,
        "filter": filterset,
        "page": page,
        "may_act": has_role(request.user, project.pk, Role.DEVELOPER),
    }
    if request.htmx:
        return render(request, "monitoring/alert_list.html#table", context)
    return render(request, "monitoring/alert_list.html", context)


def _alert_or_404(request, slug: str, pk: int) -> Alert:
    return get_object_or_404(selectors.alert_list(user=request.user), project__slug=slug, pk=pk)


@login_required
def alert_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    alert = _alert_or_404(request, slug, pk)
    selectors.with_current_silences([alert])
    return render(
        request,
        "monitoring/alert_detail.html",
        {
            "alert": alert,
            "project": alert.project,
            "history": selectors.alert_history(alert=alert),
            "may_act": has_role(request.user, alert.project_id, Role.DEVELOPER),
            "silence_url": reverse("alerts:silence-new", kwargs={"slug": slug})
            + f"?alert={alert.pk}",
        },
    )


@login_required
@require_POST
def alert_ack(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    alert = _alert_or_404(request, slug, pk)
    if not has_role(request.user, alert.project_id, Role.DEVELOPER):
        raise PermissionDenied("Acknowledging needs the developer role.")
    try:
        alert_acknowledge(alert=alert, actor=request.user, comment=request.POST.get("comment", ""))
        messages.success(request, f"Acknowledged {alert.rule}.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = alert_url(alert)  # only our own pages
    return redirect(back)


def alert_url(alert: Alert) -> str:
    return reverse("alerts:detail", kwargs={"slug": alert.project.slug, "pk": alert.pk})


class SilenceForm(forms.Form):
    matchers = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="One a line: name=value, name!=value, name=~regex or name!~regex "
        '(e.g. environment=~"prod.*"). All must match.',
    )
    duration_hours = forms.FloatField(
        label="For (hours)", min_value=0.05, max_value=24 * 90, initial=2
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    def clean_matchers(self):
        try:
            return matchers_parse(self.cleaned_data["matchers"])
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from exc


@login_required
def silence_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    now = timezone.now()
    qs = selectors.silence_list(user=request.user).filter(project=project)
    show = request.GET.get("show", "active")
    if show == "active":
        qs = qs.filter(ends_at__gt=now)
    elif show == "expired":
        qs = qs.filter(ends_at__lte=now)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    for s in page.object_list:
        s.text = matchers_text(s.matchers)
        s.active_now = s.is_active(now)
    return render(
        request,
        "monitoring/silence_list.html",
        {
            "project": project,
            "page": page,
            "show": show,
            "now": now,
            "may_act": has_role(request.user, project.pk, Role.DEVELOPER),
        },
    )


@login_required
def silence_new(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    if not has_role(request.user, project.pk, Role.DEVELOPER):
        raise PermissionDenied("Silencing needs the developer role.")
    alert = None
    if request.GET.get("alert", "").isdigit():
        alert = (
            selectors.alert_list(user=request.user)
            .filter(project=project, pk=int(request.GET["alert"]))
            .first()
        )
    if request.method == "POST":
        form = SilenceForm(request.POST)
        if form.is_valid():
            try:
                silence_create(
                    project=project,
                    matchers=form.cleaned_data["matchers"],
                    reason=form.cleaned_data["reason"],
                    ends_at=timezone.now() + timedelta(hours=form.cleaned_data["duration_hours"]),
                    actor=request.user,
                )
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Silenced.")
                return redirect("alerts:silences", slug=project.slug)
    else:
        initial = {}
        if alert is not None:
            # The labels that name the alert; the value-carrying ones would make it too narrow.
            prefill = matchers_from_labels(
                alert.labels,
                [k for k in ("alertname", "project", "environment") if k in alert.labels]
                or sorted(alert.labels),
            )
            initial["matchers"] = "\n".join(matchers_text([m]) for m in prefill)
        form = SilenceForm(initial=initial)
    return render(
        request, "monitoring/silence_form.html", {"project": project, "form": form, "alert": alert}
    )


@login_required
@require_POST
def silence_end(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    silence = get_object_or_404(
        selectors.silence_list(user=request.user), project__slug=slug, pk=pk
    )
    if not has_role(request.user, silence.project_id, Role.DEVELOPER):
        raise PermissionDenied("Expiring a silence needs the developer role.")
    try:
        silence_expire(silence=silence, actor=request.user)
        messages.success(request, "Silence expired: the alerts it held back will be told.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("alerts:silences", slug=slug)
