import fnmatch
from datetime import datetime, timedelta

from croniter import CroniterBadDateError, croniter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.urls import reverse
from django.utils.timezone import now as tz_now

from apps.accounts.choices import Role
from apps.core.fields import EncryptedTextField
from apps.core.models import TimeStampedModel

from .choices import ApproverRole, Deployer, GitProvider
from .repositories import validate_repository_url

# Sane maxima for what people type (docs/security.md): past them a value is a mistake, and
# date arithmetic with it overflows. The spec schema has the same ones (approval_ttl_hours, port).
MAX_APPROVAL_TTL = timedelta(hours=8760)
MAX_FREEZE_DURATION = timedelta(days=366)
MAX_PORT = 65535

env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "Use letters, digits and underscores; do not start with a digit."
)


class Project(TimeStampedModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    repository_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_repository_url],
        help_text="Clone URL: https://, ssh://, git@host:path or git:// (file:// and paths only "
        "where the install allows local repositories).",
    )
    default_branch = models.CharField(max_length=200, default="main")
    release_branch = models.CharField(
        max_length=200,
        blank=True,
        help_text="A succeeded pipeline on this branch makes a release. Empty: the default branch.",
    )
    git_provider = models.CharField(
        max_length=16, choices=GitProvider.choices, default=GitProvider.GENERIC
    )
    # Runs of these refs get protected variables (docs/secrets.md). Empty: the default branch
    # and the release branch.
    protected_refs = models.CharField(
        max_length=500,
        blank=True,
        help_text="Branches and tags whose runs get protected variables: space-separated "
        "patterns, e.g. 'main release/* v*'. Empty: the default and the release branch.",
    )
    # Shared secret that signs incoming push webhooks (GitLab: the secret token).
    webhook_secret = EncryptedTextField(blank=True)
    # GitLab's signing token (Standard Webhooks, whsec_…): checked apart from the secret token.
    webhook_signing_token = EncryptedTextField(blank=True)
    # Which pushes start a pipeline: space-separated glob patterns, empty = all.
    branch_filter = models.CharField(
        max_length=500, blank=True, help_text="e.g. 'main release/*'. Empty: every branch."
    )
    tag_filter = models.CharField(
        max_length=500, blank=True, help_text="e.g. 'v*'. Empty: every tag."
    )
    # Commit statuses are reported back when the API URL and token are set.
    git_api_url = models.CharField(
        max_length=500, blank=True, help_text="e.g. https://api.github.com"
    )
    git_repository = models.CharField(
        max_length=300,
        blank=True,
        help_text="Repository on the Git server: owner/name (GitHub, Gitea) or the project "
        "path or id (GitLab).",
    )
    git_api_token = EncryptedTextField(blank=True)
    max_concurrent_runs = models.PositiveSmallIntegerField(default=5)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="IANA time zone of the project's schedules, e.g. Europe/Paris.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("projects:detail", kwargs={"slug": self.slug})

    @property
    def releases_from(self) -> str:
        return self.release_branch or self.default_branch

    def ref_allowed(self, ref_type: str, name: str) -> bool:
        """Whether a push to this branch (``ref_type="branch"``) or tag starts a pipeline."""
        patterns = (self.branch_filter if ref_type == "branch" else self.tag_filter).split()
        return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)

    @property
    def protected_ref_patterns(self) -> list[str]:
        return self.protected_refs.split() or list(
            dict.fromkeys([self.default_branch, self.releases_from])
        )

    def ref_protected(self, name: str) -> bool:
        """Whether runs of the branch or tag ``name`` may be given protected variables (the
        run's commit must also be on that ref: see ``apps.pipelines.services.run_prepare``)."""
        return bool(name) and any(fnmatch.fnmatchcase(name, p) for p in self.protected_ref_patterns)


class Environment(TimeStampedModel):
    """A deploy stage of a project (dev → staging → production), in ``order``."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    name = models.SlugField(max_length=50)
    order = models.PositiveSmallIntegerField(default=0)
    auto_deploy = models.BooleanField(
        default=False, help_text="Deploy every release that reaches this stage without approval."
    )
    required_approvals = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(10)]
    )
    approver_role = models.CharField(
        max_length=16, choices=ApproverRole.choices, default=ApproverRole.APPROVER
    )
    allow_self_approval = models.BooleanField(
        default=False,
        help_text="Let the requester and the commit author approve their own release.",
    )
    approval_ttl = models.DurationField(default=timedelta(hours=72))
    # Where and how it deploys.
    deployer = models.CharField(max_length=16, choices=Deployer.choices, default=Deployer.PROCESS)
    service_port = models.PositiveIntegerField(null=True, blank=True)
    service_url = models.CharField(max_length=500, blank=True)
    health_check_path = models.CharField(max_length=200, default="/healthz")
    health_check_timeout = models.PositiveSmallIntegerField(default=60, help_text="Seconds.")
    target = models.JSONField(
        default=dict,
        blank=True,
        help_text="Deployer settings: e.g. docker host, memory limit, Kubernetes namespace.",
    )
    # The commit of the release serving here (written by the deployment that switched to it):
    # this environment's scheduled pipelines run the pipeline definitions of that commit.
    pipeline_commit_sha = models.CharField(max_length=64, blank=True)
    # Runs in this environment consume look-alike data generated from each dataset's profile
    # instead of the real rows (docs/datasets.md). Off unless set: no name implies it.
    synthetic_data = models.BooleanField(
        default=False,
        help_text="Runs here consume generated data with the real schema, never a real row.",
    )
    # Automatic rollback (docs/monitoring-rollback.md): an alert of one of these rules (e.g.
    # "service_down", "error_rate") firing within ``rollback_watch`` after a deployment
    # succeeded rolls back to the previous release; later, or with an empty list, only alerts.
    rollback_on = models.JSONField(
        default=list,
        blank=True,
        help_text="Alert rules that roll a fresh deployment back, e.g. service_down, error_rate.",
    )
    rollback_watch = models.DurationField(
        default=timedelta(minutes=15),
        help_text="How long after a deployment such an alert rolls it back.",
    )

    class Meta:
        ordering = ["project_id", "order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="environment_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse(
            "projects:environment", kwargs={"slug": self.project.slug, "name": self.name}
        )

    def clean(self) -> None:
        errors = {}
        ttl = self.approval_ttl
        if ttl is not None and not (timedelta(minutes=1) <= ttl <= MAX_APPROVAL_TTL):
            errors["approval_ttl"] = "Between 1 minute and 365 days (8760 hours)."
        if self.service_port is not None and not (1 <= self.service_port <= MAX_PORT):
            errors["service_port"] = f"A TCP port: 1 to {MAX_PORT}."
        if errors:
            raise ValidationError(errors)

    @property
    def approver_min_role(self) -> str:
        return Role.ADMIN if self.approver_role == ApproverRole.ADMIN else Role.APPROVER

    def active_freeze(self, at: datetime) -> "FreezeWindow | None":
        for window in self.freeze_windows.all():
            if window.is_active(at):
                return window
        return None


def next_fire(cron: str, *, years: int = 5) -> datetime | None:
    """The next time ``cron`` fires within ``years``, or None: a day that never comes (31
    February, 30 February) is valid cron syntax but opens nothing."""
    now = tz_now()
    try:
        fire = croniter(cron, now, max_years_between_matches=years).get_next(datetime)
    except (CroniterBadDateError, ValueError, KeyError):
        return None
    return fire if fire - now <= timedelta(days=366 * years) else None


class FreezeWindow(models.Model):
    """Deploys are held while a window is open: it opens at each ``cron`` time for ``duration``."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="freeze_windows"
    )
    cron = models.CharField(max_length=100, help_text="When the freeze starts, e.g. '0 17 * * 5'.")
    duration = models.DurationField(help_text="How long it lasts, e.g. 2 days 15:00:00.")
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["environment_id", "id"]

    def __str__(self) -> str:
        return f"freeze {self.cron} for {self.duration} on {self.environment}"

    def clean(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ValidationError({"cron": f"'{self.cron}' is not a valid cron expression."})
        if self.duration <= timedelta(0):
            raise ValidationError({"duration": "The duration must be positive."})
        if self.duration > MAX_FREEZE_DURATION:
            raise ValidationError({"duration": "At most 366 days."})
        if next_fire(self.cron) is None:
            raise ValidationError(
                {"cron": f"'{self.cron}' never fires (e.g. 31 February): no freeze would open."}
            )

    def is_active(self, at: datetime) -> bool:
        last_start = croniter(self.cron, at).get_prev(datetime)
        return last_start <= at < last_start + self.duration

    def ends_at(self, at: datetime) -> datetime:
        return croniter(self.cron, at).get_prev(datetime) + self.duration


class Variable(TimeStampedModel):
    """A variable handed to jobs and deployments. Values are encrypted at rest, always;
    ``is_secret`` additionally hides the value in the UI and API and masks it in job logs;
    ``protected`` gives it only to runs of protected refs and to deployments (docs/secrets.md).
    An environment's variables reach only that environment's runs and deployments."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="variables")
    environment = models.ForeignKey(
        Environment,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="variables",
        help_text="Empty: every environment and every pipeline job.",
    )
    key = models.CharField(max_length=100, validators=[env_var_name])
    value = EncryptedTextField(blank=True)
    is_secret = models.BooleanField(default=False)
    protected = models.BooleanField(
        default=False,
        help_text="Only runs of protected branches and tags, and deployments, get it.",
    )

    class Meta:
        ordering = ["project_id", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "environment", "key"], name="variable_unique_scoped_key"
            ),
            models.UniqueConstraint(
                fields=["project", "key"],
                condition=models.Q(environment__isnull=True),
                name="variable_unique_project_key",
            ),
        ]

    def __str__(self) -> str:
        scope = self.environment.name if self.environment_id else "*"
        return f"{self.project.slug}:{scope}:{self.key}"
