"""Per-project role checks: the one place that decides who may do what.

Views, API permission classes and services all ask :func:`has_role`; nothing else compares roles.
"""

from typing import Any

from django.db.models import QuerySet
from rest_framework import permissions

from .choices import ROLE_RANK, Role
from .models import Membership


def project_role(user: Any, project_id: int) -> str | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    # Every role of the user in one query, kept on the user object (one per request): a page
    # that checks a role per row (the approvals badge on every page, the inbox) makes one
    # query, not one per project. ``project_roles_forget`` drops it when a membership changes.
    cache = user.__dict__.get("_project_roles")
    if cache is None:
        cache = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
        user.__dict__["_project_roles"] = cache
    return cache.get(project_id)


def project_roles_forget(user: Any) -> None:
    """Drop the roles :func:`project_role` keeps on ``user`` (after a membership change)."""
    user.__dict__.pop("_project_roles", None)


def has_role(user: Any, project_id: int, role: str) -> bool:
    held = project_role(user, project_id)
    return held is not None and ROLE_RANK[held] >= ROLE_RANK[role]


def visible_project_ids(user: Any) -> QuerySet | None:
    """Ids of projects the user may see; ``None`` means all (superuser)."""
    if user.is_superuser:
        return None
    return Membership.objects.filter(user=user).values("project_id")


def restrict_to_visible(qs: QuerySet, user: Any, project_field: str = "project") -> QuerySet:
    if not user.is_authenticated:
        return qs.none()
    ids = visible_project_ids(user)
    if ids is None:
        return qs
    lookup = "pk__in" if project_field == "" else f"{project_field}__in"
    return qs.filter(**{lookup: ids})


class ProjectRolePermission(permissions.BasePermission):
    """Reading needs ``viewer``; writing needs the view's ``write_role`` (default developer).

    A view may set ``action_roles = {"approve": Role.APPROVER, ...}`` for its actions, and must
    implement ``get_permission_project_id(obj)`` (objects) and, for creation,
    ``get_create_project_id(request)``.
    """

    message = "You do not have the role this needs in this project."

    def required_role(self, request, view) -> str:
        roles = getattr(view, "action_roles", {})
        action = getattr(view, "action", None)
        if action in roles:
            return roles[action]
        if request.method in permissions.SAFE_METHODS:
            return Role.VIEWER
        return getattr(view, "write_role", Role.DEVELOPER)

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if getattr(view, "action", None) == "create":
            project_id = view.get_create_project_id(request)
            if project_id is None:
                # Validation (a 400) will say what is missing; creating a project is open.
                return True
            return has_role(request.user, project_id, self.required_role(request, view))
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        project_id = view.get_permission_project_id(obj)
        return has_role(request.user, project_id, self.required_role(request, view))
