"""The one interface every deployer implements (docker, process, kubernetes).

The orchestration (``apps.releases.services`` / ``tasks``) builds a :class:`DeployRequest` from a
Deployment, calls :meth:`Deployer.deploy` inside the per-environment lock, and records what comes
back. Deployers never touch the database: they get plain values and report through ``log``.

Rules all deployers keep:

* the new release must pass the health check (HTTP GET ``health_path`` answering 2xx, retried
  until ``health_timeout`` seconds) before the previous one stops serving;
* when it does not, the new one is removed, the previous release keeps (or goes back to)
  serving, and :class:`DeployFailed` is raised with ``rolled_back=True``;
* deploying the release that already serves is allowed (a redeploy / rollback target).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class DeployRequest:
    project: str  # project slug
    environment: str  # environment name
    deployment_id: int
    release: str  # release version, e.g. "r12-1a2b3c4d"
    commit_sha: str
    image_ref: str  # docker / kubernetes: the image built for the release
    image_digest: str
    bundle_path: Path | None  # process: the release's content-addressed bundle (tar.gz)
    bundle_digest: str
    port: int | None  # where the service listens (PORT in its environment)
    health_path: str  # e.g. "/healthz"
    health_timeout: int  # seconds the new release gets to become healthy
    command: str  # serve command from the spec ("python -m model.serve --port $PORT"); may be ""
    env: dict[str, str] = field(default_factory=dict)  # variables for the service (no PORT)
    target: dict = field(default_factory=dict)  # Environment.target: deployer settings
    # Deployer credentials (e.g. a Kubernetes token) from the environment's secret variables
    # named DEPLOY_*, never passed to the service itself.
    credentials: dict[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = print  # one progress line at a time


@dataclass
class DeployResult:
    url: str = ""  # where the new release answers, e.g. http://127.0.0.1:8101
    details: dict = field(default_factory=dict)  # container id, pid, revision, timings...


class DeployError(Exception):
    """The deploy could not be done. ``rolled_back`` says whether the previous release is
    serving again (or never stopped); ``details`` goes on the Deployment."""

    def __init__(self, message: str, *, rolled_back: bool = False, details: dict | None = None):
        super().__init__(message)
        self.rolled_back = rolled_back
        self.details = details or {}


class DeployFailed(DeployError):
    """The new release failed its health check (or crashed) and was removed."""


class Deployer(Protocol):
    name: str

    def deploy(self, request: DeployRequest) -> DeployResult:
        """Put ``request.release`` in service or raise :class:`DeployError`."""

    def stop(self, *, project: str, environment: str) -> None:
        """Stop what serves in the environment (environment deleted, tests tidying up)."""

    def status(self, *, project: str, environment: str) -> dict:
        """What serves now: ``{"running": bool, "release": str, ...}`` (for the UI)."""


# --- settings every deployer reads the same way --------------------------------------------

#: Where a service listens unless the environment says otherwise: only this host may reach it.
DEFAULT_HOST = "127.0.0.1"
_ADDRESS = re.compile(r"[A-Za-z0-9:][A-Za-z0-9.:-]*")  # an IPv4 or IPv6 address, a host name


def require_port(request: DeployRequest) -> int:
    """The environment's service port; a deploy without one cannot say where to listen."""
    if not request.port:
        raise DeployError(
            "The environment has no service port: set one, the service listens on it."
        )
    return request.port


def service_host(request: DeployRequest, default: str = DEFAULT_HOST) -> str:
    """The address the service listens on, given to it as ``HOST``: the target's ``host``
    setting, else a ``HOST`` variable of the environment, else ``default``."""
    host = request.target.get("host") or request.env.get("HOST") or default
    if not isinstance(host, str) or not _ADDRESS.fullmatch(host):
        raise DeployError(
            f"The service's host {host!r} (target host, or the HOST variable) is not an address "
            "such as 127.0.0.1 or 0.0.0.0."
        )
    return host


def target_command(target: Mapping) -> list[str] | None:
    """``target["command"]``, which overrides the image's: a string runs in a shell (so $PORT
    expands, as in the process deployer), a list runs as it is; None keeps the image's."""
    command = target.get("command")
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    if command is not None and not (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    ):
        raise DeployError("target command must be a string or a list of strings.")
    return command
