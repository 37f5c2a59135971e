"""Failed sign-ins and failed API-token attempts, counted and locked out by django-axes.

Both the login form (through axes' authentication backend) and bearer tokens (through
:func:`token_attempt_allowed` / :func:`token_attempt_failed`) feed the same AccessAttempt rows, so
one admin unlock (Admin › Axes › Access attempts, or ``manage.py axes_reset_username`` /
``axes_reset_ip``) clears both. See docs/security.md.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest


def lockout_parameters(request_or_attempt: Any, credentials: dict | None = None) -> list:
    """Lock out per account and, separately, per address. An attempt naming no account (an
    unknown token) is counted per address only: a shared "no account" bucket would let one
    address lock out everyone's unknown-token attempts, and tell nothing."""
    username = (credentials or {}).get("username") or getattr(request_or_attempt, "username", None)
    return ["username", "ip_address"] if username else ["ip_address"]


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or the header named by
    ``CONTROLPLANE_CLIENT_IP_HEADER`` (set it only behind a proxy that overwrites that header)."""
    header = settings.CLIENT_IP_HEADER
    if header:
        value = request.META.get(header, "")
        if value:
            return value.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR")


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed sign-in attempts for this account or from this address: locked for "
        f"{minutes} minutes. An administrator can unlock it now (Admin › Axes › Access attempts)."
    )


def token_attempt_allowed(request: HttpRequest, *, username: str | None) -> bool:
    """False while the address (or the token's account, when the token is known) is locked out."""
    from axes.handlers.proxy import AxesProxyHandler

    if not settings.AXES_ENABLED:
        return True
    return AxesProxyHandler.is_allowed(request, {"username": username})


def token_attempt_failed(request: HttpRequest, *, username: str | None) -> bool:
    """Count one failed token attempt (an unknown, revoked or expired token); True when this
    one reached the limit. The caller answers that itself (the API's JSON 429), so axes'
    middleware is told not to swap in its HTML lockout page."""
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
    locked = bool(getattr(request, "axes_locked_out", False))
    request.axes_locked_out = False
    return locked
