from django.db.models import QuerySet

from apps.accounts.permissions import restrict_to_visible
from apps.pipelines.models import PipelineRun

from .models import CommitStatusReport, WebhookDelivery


def delivery_list(*, user, with_payload: bool = False) -> QuerySet[WebhookDelivery]:
    """Deliveries of the projects the user may see (superusers: also those naming no project).
    Payloads (up to WEBHOOK_MAX_BODY_BYTES each) are left out unless asked for."""
    qs = WebhookDelivery.objects.select_related("project", "run", "run__project")
    if not with_payload:
        qs = qs.defer("payload")
    return restrict_to_visible(qs, user)


def commit_status_for_run(*, run: PipelineRun) -> CommitStatusReport | None:
    """The last commit status reported for a run (for the run page)."""
    return CommitStatusReport.objects.filter(run=run).first()
