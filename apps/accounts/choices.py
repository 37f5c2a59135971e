from django.db import models


class Role(models.TextChoices):
    """Per-project roles. Each includes what the ones before it may do."""

    VIEWER = "viewer", "Viewer"
    DEVELOPER = "developer", "Developer"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Admin"


ROLE_RANK: dict[str, int] = {role.value: rank for rank, role in enumerate(Role, start=1)}
