"""A job's attempts, read from the audit rows of its transitions.

Every move into ``running`` starts an attempt and the next move out of it ends one (an
outcome, or ``queued`` again when the reaper found its worker lost), so the audit log already
records each attempt; nothing else is stored for them.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from apps.core.models import AuditEvent

from .choices import JobStatus
from .models import Job, wall_time


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime
    finished_at: datetime | None  # None: it is still running
    outcome: str  # a JobStatus; "queued" means it was taken away (worker lost)
    reason: str

    @property
    def duration(self) -> timedelta:
        return wall_time(self.started_at, self.finished_at) or timedelta(0)

    @property
    def outcome_label(self) -> str:
        return "worker lost" if self.outcome == JobStatus.QUEUED else self.outcome

    @property
    def badge(self) -> str:
        """The status style to show the outcome with."""
        return JobStatus.FAILED if self.outcome == JobStatus.QUEUED else self.outcome


def job_attempts(job: Job) -> list[Attempt]:
    """The attempts that ran, oldest first (queued attempts that never started are left out)."""
    rows = AuditEvent.objects.filter(
        Q(from_state=JobStatus.RUNNING) | Q(to_state=JobStatus.RUNNING),
        content_type=ContentType.objects.get_for_model(Job),
        object_id=str(job.pk),
    )
    attempts: list[Attempt] = []
    start: datetime | None = None
    for created, from_state, to_state, reason in rows.order_by("created", "id").values_list(
        "created", "from_state", "to_state", "reason"
    ):
        if to_state == JobStatus.RUNNING:
            start = created
        elif from_state == JobStatus.RUNNING and start is not None:
            attempts.append(Attempt(len(attempts) + 1, start, created, to_state, reason))
            start = None
    if start is not None:
        attempts.append(Attempt(len(attempts) + 1, start, None, JobStatus.RUNNING, ""))
    return attempts
