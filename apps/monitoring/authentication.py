"""Ingest tokens (``Authorization: Bearer cpi_…``): a deployed service's credential, which can
post observations and labels to its own environment and nothing else.

This class comes first in ``DEFAULT_AUTHENTICATION_CLASSES`` and looks only at ``cpi_`` tokens
(API tokens, ``cpt_…``, and sessions pass on to the classes after it). An ingest token on any
other endpoint is refused with 403 whatever it is; on the ingest endpoints an unknown or
revoked one is 403 too (those views send no ``WWW-Authenticate``), and one of another
environment is refused by :class:`IngestPermission`.
"""

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from apps.accounts.choices import Role
from apps.accounts.models import hash_token
from apps.accounts.permissions import has_role

from .models import INGEST_TOKEN_PREFIX, IngestToken

ONLY_INGEST = "An ingest token can only post observations and labels of its environment."


def is_ingest_view(view) -> bool:
    return bool(getattr(view, "accepts_ingest_token", False))


class IngestTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() not in (b"bearer", b"token"):
            return None
        try:
            raw = header[1].decode()
        except UnicodeError:
            return None
        if not raw.startswith(INGEST_TOKEN_PREFIX):
            return None
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if not is_ingest_view(view):
            raise exceptions.PermissionDenied(ONLY_INGEST)
        token = (
            IngestToken.objects.select_related("environment__project")
            .filter(key_hash=hash_token(raw))
            .first()
        )
        if token is None or not token.is_active:
            raise exceptions.PermissionDenied("Invalid or revoked ingest token.")
        now = timezone.now()
        # At most one write a minute: this runs on every batch.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            IngestToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return AnonymousUser(), token

    def authenticate_header(self, request):
        # Elsewhere a missing credential stays 401 (this class is first in the list).
        return "Bearer"


class IngestPermission(permissions.BasePermission):
    """An ingest token of this environment, or a person (API token or session) with the
    developer role in its project (a backfill, a test)."""

    message = ONLY_INGEST

    def has_permission(self, request, view) -> bool:
        environment = view.get_environment()
        if isinstance(request.auth, IngestToken):
            return request.auth.environment_id == environment.pk
        user = request.user
        if not user or not user.is_authenticated:
            return False
        self.message = "You need the developer role in this project to post observations."
        return has_role(user, environment.project_id, Role.DEVELOPER)


class IngestTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI schema names ingest tokens on the two ingest endpoints only."""

    target_class = IngestTokenAuthentication
    name = "ingestToken"

    def get_security_requirement(self, auto_schema):
        return {self.name: []} if is_ingest_view(auto_schema.view) else None

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An ingest token (cpi_…) of the environment: posts observations "
            "and labels, nothing else.",
        }
