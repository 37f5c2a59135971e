from rest_framework import viewsets

from apps.accounts.permissions import ProjectRolePermission


def body_slug(request, key: str = "project") -> str | None:
    """The project slug a request body names, or None when it names none a slug could be
    (not a string, or with a NUL, which PostgreSQL refuses in a query: a 500, not a 400)."""
    value = request.data.get(key) if hasattr(request.data, "get") else None
    if not isinstance(value, str | int) or isinstance(value, bool) or "\x00" in str(value):
        return None
    return str(value)


class ProjectScopedViewSet(viewsets.GenericViewSet):
    """A viewset over objects that belong to a project: the list shows only projects the user
    is a member of, and every object is checked against the user's role in its project."""

    permission_classes = [ProjectRolePermission]
    #: path from the model to its project, e.g. "run__project"
    project_path = "project"

    def get_permission_project_id(self, obj) -> int:
        target = obj
        for part in self.project_path.split("__"):
            target = getattr(target, part)
        return target.pk

    def get_create_project_id(self, request) -> int | None:
        return None
