import ipaddress
import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.accounts.choices import Role
from apps.accounts.permissions import has_role
from apps.core.exceptions import ServiceError
from apps.projects.selectors import project_list

from . import selectors, services
from .api.filters import DeliveryFilter
from .models import WebhookDelivery
from .providers import PROVIDERS

#: How much of a payload the detail page shows inline (the whole is a download away).
PAYLOAD_PREVIEW_CHARS = 200_000


# --- receivers ------------------------------------------------------------------------------


@csrf_exempt
@require_POST
def receive(request: HttpRequest, provider: str, slug: str) -> JsonResponse:
    """``POST /hooks/<provider>/<slug>/``: no session, no CSRF; the signature is the credential."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    remote_addr = _ip_or_none(request.META.get("REMOTE_ADDR"))
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    body = b""
    if declared <= limit:
        # TRICKY: read the stream, capped, rather than request.body: that refuses anything over
        # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) and trusts the length the sender claims.
        body = request.read(limit + 1)
    if declared > limit or len(body) > limit:
        reply = services.delivery_refuse_oversize(
            provider=provider,
            slug=slug,
            headers=request.headers,
            size=max(declared, len(body)),
            remote_addr=remote_addr,
        )
    else:
        reply = services.delivery_receive(
            provider=provider,
            slug=slug,
            headers=request.headers,
            body=body,
            content_type=request.content_type or "",
            remote_addr=remote_addr,
        )
    return JsonResponse(reply.body, status=reply.status_code)


def _ip_or_none(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value or ""))
    except ValueError:
        return None


# --- pages ----------------------------------------------------------------------------------


@login_required
def delivery_list(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """Deliveries of one project (``/p/<slug>/webhooks/``) or of every project you can see."""
    qs = selectors.delivery_list(user=request.user)
    project = None
    if slug is not None:
        project = get_object_or_404(project_list(user=request.user), slug=slug)
        qs = qs.filter(project=project)
    filterset = DeliveryFilter(request.GET, queryset=qs)
    if project is not None:
        filterset.form.fields.pop("project")
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    context = {"project": project, "filter": filterset, "page": page}
    if request.htmx:
        return render(request, "webhooks/delivery_list.html#table", context)
    if project is not None:
        context["receiver_urls"] = {
            name: settings.SITE_URL
            + reverse("hooks:receive", kwargs={"provider": name, "slug": project.slug})
            for name in PROVIDERS
        }
    return render(request, "webhooks/delivery_list.html", context)


def _delivery_or_404(request, slug: str, pk: int, *, with_payload=False) -> WebhookDelivery:
    return get_object_or_404(
        selectors.delivery_list(user=request.user, with_payload=with_payload),
        project__slug=slug,
        pk=pk,
    )


@login_required
def delivery_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    delivery = _delivery_or_404(request, slug, pk, with_payload=True)
    payload = ""
    if delivery.payload is not None:
        payload = json.dumps(delivery.payload, indent=2, ensure_ascii=False)
    return render(
        request,
        "webhooks/delivery_detail.html",
        {
            "delivery": delivery,
            "project": delivery.project,
            "payload": payload[:PAYLOAD_PREVIEW_CHARS],
            "payload_truncated": len(payload) > PAYLOAD_PREVIEW_CHARS,
            "response_body": json.dumps(delivery.response_body, indent=2, ensure_ascii=False),
            "redeliveries": delivery.redeliveries.select_related("run", "run__project")[:50],
            "commit_status": (
                selectors.commit_status_for_run(run=delivery.run) if delivery.run else None
            ),
            "may_redeliver": delivery.can_redeliver
            and has_role(request.user, delivery.project_id, Role.DEVELOPER),
        },
    )


@login_required
def delivery_payload(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    delivery = _delivery_or_404(request, slug, pk, with_payload=True)
    response = JsonResponse(delivery.payload, safe=False, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="delivery-{delivery.pk}.json"'
    return response


@login_required
@require_POST
def delivery_redeliver(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    delivery = _delivery_or_404(request, slug, pk)
    if not has_role(request.user, delivery.project_id, Role.DEVELOPER):
        raise PermissionDenied("Redelivering needs the developer role.")
    try:
        new = services.delivery_redeliver(delivery=delivery, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(delivery)
    level = messages.SUCCESS if new.http_status < 400 else messages.ERROR
    messages.add_message(request, level, f"Redelivered: {new.get_status_display()}. {new.detail}")
    return redirect(new)
