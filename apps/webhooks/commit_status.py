"""The one HTTP call per Git server that sets a commit status. Builds the request; sending, retrying
and recording are in :func:`apps.webhooks.services.commit_status_report`."""

from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from .choices import COMMIT_STATUS_CONTEXT, Provider

USER_AGENT = "controlplane-commit-status"


class TransientStatusError(Exception):
    """The Git server failed in a way worth retrying (5xx, 429)."""


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
