from django.db import models


class GitProvider(models.TextChoices):
    GITHUB = "github", "GitHub"
    GITLAB = "gitlab", "GitLab"
    GITEA = "gitea", "Gitea / Forgejo"
    GENERIC = "generic", "Generic JSON"


class Deployer(models.TextChoices):
    PROCESS = "process", "Local process (virtualenv)"
    DOCKER = "docker", "Docker"
    KUBERNETES = "kubernetes", "Kubernetes"


class ApproverRole(models.TextChoices):
    APPROVER = "approver", "Approver (or admin)"
    ADMIN = "admin", "Admin only"


DEFAULT_ENVIRONMENTS = (
    # name, auto_deploy, required approvals
    ("dev", True, 0),
    ("staging", True, 0),
    ("production", False, 1),
)
