"""Commit statuses back to the Git server: queueing one after a run changes
(:func:`commit_status_enqueue`), sending it (:func:`commit_status_report`, the task
``webhooks.report_commit_status``) with the one HTTP call per Git server
(:func:`build_status_request`), and recording what the server answered (``CommitStatusReport``).

Transient failures (no answer, a timeout, 5xx, 408, 425, 429: :mod:`apps.core.transient`) raise
:class:`~apps.core.transient.TransientError` and the task retries with ``RETRY_TRANSIENT``; any
other answer is final and recorded on the report, with the token scrubbed.
"""

import logging
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.core.transient import TransientError, is_transient, is_transient_status
from apps.pipelines.models import PipelineRun
from apps.projects.models import Project

from .choices import COMMIT_STATES, COMMIT_STATUS_CONTEXT, Provider
from .models import CommitStatusReport

logger = logging.getLogger(__name__)

USER_AGENT = "controlplane-commit-status"


@dataclass(frozen=True)
class StatusRequest:
    url: str
    headers: dict[str, str]
    json: dict[str, str]
    #: Values to scrub out of anything logged or stored.
    secrets: tuple[str, ...] = field(default=(), repr=False)


def repository_path(repository: str) -> str:
    """``owner/name`` from ``owner/name``, ``https://host/owner/name.git`` or ``/owner/name/``."""
    value = repository.strip()
    if "://" in value:
        value = urlsplit(value).path
    value = value.strip("/")
    return value.removesuffix(".git")


def _owner_repo(repository: str) -> str:
    return "/".join(quote(part, safe="") for part in repository_path(repository).split("/"))


def build_status_request(
    *,
    provider: str,
    api_url: str,
    repository: str,
    token: str,
    sha: str,
    state: str,
    description: str,
    target_url: str,
    ref: str = "",
) -> StatusRequest:
    base = api_url.rstrip("/")
    sha = quote(sha, safe="")
    description = description[:140]
    common = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    if provider == Provider.GITHUB:
        return StatusRequest(
            url=f"{base}/repos/{_owner_repo(repository)}/statuses/{sha}",
            headers={
                **common,
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            json={
                "state": state,
                "target_url": target_url,
                "description": description,
                "context": COMMIT_STATUS_CONTEXT,
            },
            secrets=(token,),
        )
    if provider == Provider.GITLAB:
        # GitLab takes the numeric id or the URL-encoded full path (group%2Fsub%2Fname).
        project_id = quote(repository_path(repository), safe="")
        body = {
            "state": state,
            "name": COMMIT_STATUS_CONTEXT,
            "target_url": target_url,
            "description": description,
        }
        if ref:
            body["ref"] = ref
        return StatusRequest(
            url=f"{base}/projects/{project_id}/statuses/{sha}",
            headers={**common, "PRIVATE-TOKEN": token, "Accept": "application/json"},
            json=body,
            secrets=(token,),
        )
    if provider == Provider.GITEA:
        return StatusRequest(
            url=f"{base}/repos/{_owner_repo(repository)}/statuses/{sha}",
            headers={**common, "Authorization": f"token {token}", "Accept": "application/json"},
            json={
                "state": state,
                "target_url": target_url,
                "description": description,
                "context": COMMIT_STATUS_CONTEXT,
            },
            secrets=(token,),
        )
    raise ValueError(f"No commit status API for provider '{provider}'.")


def scrub(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "********")
    return message


# --- sending and recording ----------------------------------------------------------------


def commit_status_configured(project: Project) -> bool:
    return bool(
        project.git_provider in COMMIT_STATES
        and project.git_api_url
        and project.git_api_token
        and project.git_repository
    )


def commit_status_enqueue(*, run: PipelineRun) -> bool:
    """Have a worker tell the Git server the run's status, after commit. Returns whether the
    project reports statuses at all."""
    if not run.commit_sha or not commit_status_configured(run.project):
        return False
    run_id = run.pk
    transaction.on_commit(lambda: _send_status_task(run_id))
    return True


def _send_status_task(run_id: int) -> None:
    from .tasks import report_commit_status_task

    try:
        report_commit_status_task.delay(run_id)
    except Exception:
        # A missed status is cosmetic; the next transition reports the then current state.
        logger.exception("Could not queue the commit status of run %s", run_id)


def commit_status_report(*, run_id: int) -> CommitStatusReport | None:
    """Send the run's current status to the Git server (the task calls this).

    Reports the status the run has *now*, so a late or retried task never sets an older state
    over a newer one. Transient failures raise :class:`TransientError` (the task retries);
    other answers are final: logged and recorded on the report, with the token scrubbed.
    """
    run = PipelineRun.objects.select_related("project").filter(pk=run_id).first()
    if run is None or not run.commit_sha or not commit_status_configured(run.project):
        return None
    project = run.project
    provider = project.git_provider
    state = COMMIT_STATES[provider][run.status]
    report = _status_report_for(run, provider)
    if report.reported_at is not None and report.run_status == run.status:
        return report  # already told
    request = build_status_request(
        provider=provider,
        api_url=project.git_api_url,
        repository=project.git_repository,
        token=project.git_api_token,
        sha=run.commit_sha,
        state=state,
        description=f"Pipeline #{run.number} {run.get_status_display().lower()}",
        target_url=settings.SITE_URL + run.get_absolute_url(),
        ref=run.ref,
    )
    CommitStatusReport.objects.filter(pk=report.pk).update(attempts=F("attempts") + 1)
    try:
        response = requests.post(
            request.url,
            json=request.json,
            headers=request.headers,
            timeout=settings.COMMIT_STATUS_TIMEOUT,
            # A redirect could carry PRIVATE-TOKEN to another host; treat it as a failure.
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", request.secrets)
        _status_failed(report, None, message)
        if is_transient(exc):
            logger.warning("Commit status for %s not sent (will retry): %s", run, message)
            raise TransientError(message) from None  # the scrubbed message only
        logger.warning("Commit status for %s not sent: %s", run, message)
        report.refresh_from_db()
        return report
    code = response.status_code
    if 200 <= code < 300:
        CommitStatusReport.objects.filter(pk=report.pk).update(
            provider=provider,
            run_status=run.status,
            state=state,
            description=request.json["description"],
            target_url=request.json["target_url"][:500],
            reported_at=timezone.now(),
            http_status=code,
            error_message="",
        )
        report.refresh_from_db()
        return report
    message = scrub(f"HTTP {code}: {response.text[:500]}", request.secrets)
    _status_failed(report, code, message)
    if is_transient_status(code):
        logger.warning("Commit status for %s refused for now (will retry): %s", run, message)
        raise TransientError(message, response_code=code)
    logger.warning("Commit status for %s refused by the Git server: %s", run, message)
    report.refresh_from_db()
    return report


def _status_report_for(run: PipelineRun, provider: str) -> CommitStatusReport:
    report = CommitStatusReport.objects.filter(run=run).first()
    if report is not None:
        return report
    try:
        with transaction.atomic():
            return CommitStatusReport.objects.create(run=run, provider=provider)
    except IntegrityError:  # another task created it meanwhile
        return CommitStatusReport.objects.get(run=run)


def _status_failed(report: CommitStatusReport, code: int | None, message: str) -> None:
    CommitStatusReport.objects.filter(pk=report.pk).update(
        http_status=code, error_message=message[:2000]
    )
