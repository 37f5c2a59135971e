"""Health endpoints for load balancers and compose, the system page, error pages."""

import logging
import sys
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .database import is_database_unavailable, unavailable_response
from .models import WorkerPing
from .services import worker_ping_create

logger = logging.getLogger(__name__)


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and serving. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return str(exc)
    return None


def _check_broker() -> str | None:
    from controlplane.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return str(exc)
    return None


@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready to take traffic: the database and the broker answer."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    failed = {name: err for name, err in checks.items() if err}
    for name, err in failed.items():
        logger.warning("readiness check %s failed: %s", name, err)
    body = {
        "status": "fail" if failed else "ok",
        "checks": {name: ("fail" if err else "ok") for name, err in checks.items()},
    }
    return JsonResponse(body, status=503 if failed else 200)


def staff_required(view):
    """Signed in (else the login page) and staff (else 403): pages about the install itself."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Only staff may see or use the system page.")
        return view(request, *args, **kwargs)

    return wrapped


@staff_required
def system(request: HttpRequest) -> HttpResponse:
    from django_celery_beat.models import PeriodicTask

    pings = WorkerPing.objects.all()[:10]
    context = {
        "pings": pings,
        "periodic_tasks": PeriodicTask.objects.order_by("name"),
        "broker": settings.CELERY_BROKER_URL.split("://", 1)[0],
        "database": connection.vendor,
    }
    if request.htmx:
        return render(request, "core/system.html#pings", context)
    return render(request, "core/system.html", context)


@staff_required
@require_POST
def system_ping(request: HttpRequest) -> HttpResponse:
    worker_ping_create(user=request.user)
    return redirect("system")


def error_404(request, exception=None):
    return render(request, "404.html", status=404)


def error_500(request):
    """Django's handler500, called while the uncaught exception is being handled: a database
    that is away (restarted, unreachable) is a 503 with Retry-After, not a server error —
    whichever middleware or view ran into it (apps/core/database.py)."""
    if is_database_unavailable(sys.exc_info()[1]):
        return unavailable_response(request)
    return render(request, "500.html", status=500)
