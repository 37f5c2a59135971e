"""What Prometheus reads from the control plane: ``/metrics`` and the HTTP service discovery
of the deployed services (``/api/v1/monitoring/targets/``), both behind the same guard: a
bearer token (``CONTROLPLANE_METRICS_TOKEN``) or an allow-list of client addresses
(``CONTROLPLANE_METRICS_ALLOW``). Neither set: both answer 403 (docs/monitoring-prometheus.md).
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from apps.projects.models import Environment
from apps.releases.choices import DeploymentStatus
from apps.releases.models import Deployment

from . import metrics


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOW]


def scrape_allowed(request: HttpRequest) -> bool:
    """A valid bearer token, or a client address in the allow-list. The address is the TCP
    peer (REMOTE_ADDR), never a forwarded header a client could write itself."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    networks = _allowed_networks()
    if networks:
        try:
            addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(addr in net for net in networks)
    return False


def scrape_guard(view):
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not scrape_allowed(request):
            response = HttpResponse(
                "Forbidden: send Authorization: Bearer <CONTROLPLANE_METRICS_TOKEN> "
                "or scrape from an address in CONTROLPLANE_METRICS_ALLOW.\n",
                status=403,
                content_type="text/plain",
            )
            response["WWW-Authenticate"] = "Bearer"
            return response
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@scrape_guard
def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)


def service_targets() -> list[dict[str, Any]]:
    """Every environment's serving deployment as a Prometheus http_sd target group: its
    address, ``__scheme__`` and ``__metrics_path__`` from the deployment's URL, and the labels
    project / environment / release / model_version / deployer. Two queries."""
    serving = Deployment.objects.filter(
        environment=OuterRef("pk"), status=DeploymentStatus.SUCCEEDED
    ).order_by("-finished_at", "-pk")
    ids = [
        pk
        for pk in Environment.objects.annotate(d=Subquery(serving.values("pk")[:1]))
        .exclude(d=None)
        .values_list("d", flat=True)
    ]
    groups = []
    deployments = Deployment.objects.select_related("release", "environment__project").filter(
        pk__in=ids
    )
    for d in sorted(deployments, key=lambda d: (d.environment.project.slug, d.environment.order)):
        url = d.url or d.environment.service_url
        parts = urlsplit(url) if url else None
        if not parts or not parts.netloc:
            continue  # a deployer that gave no address (nothing to scrape)
        labels = {
            "project": d.environment.project.slug,
            "environment": d.environment.name,
            "release": d.release.version,
            "model_version": str(d.release.model_version_id or ""),
            "deployer": d.deployer or d.environment.deployer,
            "__scheme__": parts.scheme or "http",
            "__metrics_path__": parts.path.rstrip("/") + "/metrics",
        }
        groups.append({"targets": [parts.netloc], "labels": labels})
    return groups


@require_GET
@scrape_guard
def targets_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(service_targets(), safe=False)
