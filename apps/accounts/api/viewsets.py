from rest_framework import viewsets

from apps.accounts.permissions import ProjectRolePermission


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
