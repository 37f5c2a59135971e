"""The docker deployer: one container per environment, ``cp-<project>-<environment>``, running the
release's image with host networking (the service listens on ``PORT``). See docs/deployers.md.

Host networking means two containers cannot listen on one port, so a deploy is the health-gated
switch of ``switch.py``: a candidate container on a side port, then the serving container
stopped (kept) for the new one on the real port, and started again when the new one fails.
The service listens on ``HOST`` (127.0.0.1 unless the environment's ``host`` setting or a
``HOST`` variable says otherwise).
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

import requests
from docker.client import DockerClient, from_env
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from .base import (
    DEFAULT_HOST,
    DeployError,
    DeployRequest,
    DeployResult,
    require_port,
    service_host,
    target_command,
)
from .health import Health, wait_healthy
from .switch import Switch

DEFAULT_MEMORY = "1g"
DEFAULT_CPUS = 1.0
DEFAULT_PIDS_LIMIT = 4096
DEFAULT_RESTART = "unless-stopped"
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
STOP_TIMEOUT = 10  # seconds between SIGTERM (forwarded by the init process) and SIGKILL
LOG_TAIL = 40
# The suffix of the old container while the new one takes its name.
PREVIOUS = "-previous"
CANDIDATE = "-candidate"
ENGINE_ERRORS = (DockerException, requests.RequestException, OSError)


class DockerDeployer:
    name = "docker"

    def deploy(self, request: DeployRequest) -> DeployResult:
        require_port(request)
        service_host(request)  # a bad host setting fails before anything starts
        if not request.image_ref:
            raise DeployError(
                "The release has no Docker image: turn on CONTROLPLANE_BUILD_IMAGES so its "
                "build job builds one, or deploy with the process deployer."
            )
        config = _config(request.target)
        client = _client()
        try:
            try:
                image = client.images.get(request.image_ref)
            except ImageNotFound:
                raise DeployError(
                    f"The image {request.image_ref} is not on the Docker host "
                    "(there is no registry to pull from): build the release again."
                ) from None
            return _DockerSwitch(client, request, config, image.id).run()
        except APIError as exc:
            raise DeployError(f"Docker refused: {_explain(exc)}") from None
        except (requests.RequestException, OSError) as exc:
            raise DeployError(f"Lost the Docker engine during the deploy: {exc}") from None
        finally:
            client.close()

    def stop(self, *, project: str, environment: str) -> None:
        client = _client()
        try:
            for container in _containers(client, project, environment):
                _remove(container)
        finally:
            client.close()

    def status(self, *, project: str, environment: str) -> dict:
        try:
            client = _client()
        except DeployError as exc:
            return {"running": False, "release": "", "error": str(exc)}
        try:
            container = _get(client, container_name(project, environment))
            if container is None:
                return {"running": False, "release": ""}
            state = container.attrs.get("State", {})
            labels = container.labels
            return {
                "running": bool(state.get("Running")) and not state.get("Restarting"),
                "release": labels.get("controlplane.release", ""),
                "deployment_id": labels.get("controlplane.deployment", ""),
                "commit": labels.get("controlplane.commit", ""),
                "port": labels.get("controlplane.port", ""),
                "container": container.id,
                "image": container.attrs.get("Image", ""),
                "state": state.get("Status", ""),
                "started": state.get("StartedAt", ""),
                "restarts": container.attrs.get("RestartCount", 0),
            }
        except ENGINE_ERRORS as exc:
            return {"running": False, "release": "", "error": f"Docker engine: {exc}"}
        finally:
            client.close()


def container_name(project: str, environment: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"{project}-{environment}").strip("-.")
    return f"cp-{name}"


class _Started(NamedTuple):
    container: Container
    host: str  # where it listens
    restarts: int = 0  # its restart count when started: only a new restart means a crash


class _DockerSwitch(Switch[Container, _Started]):
    """The switch (``switch.py``) with containers: the candidate is ``<name>-candidate``; the
    serving one is renamed ``<name>-previous`` and stopped while the new one takes its name."""

    kind = "container"
    errors = ENGINE_ERRORS

    def __init__(self, client: DockerClient, request: DeployRequest, config: dict, image_id: str):
        self.name = container_name(request.project, request.environment)
        super().__init__(request, {"image_id": image_id, "container_name": self.name})
        self.client = client
        self.config = config

    def find_previous(self) -> Container | None:
        """The serving container; one left renamed by an interrupted deploy counts too."""
        current = _get(self.client, self.name)
        stale = _get(self.client, self.name + PREVIOUS)
        for leftover in (_get(self.client, self.name + CANDIDATE), stale if current else None):
            if leftover is not None:
                self.log(f"removing {leftover.name}, left behind by an interrupted deploy")
                _remove(leftover)
        if current is None and stale is not None:
            stale.rename(self.name)
            stale.start()  # it was stopped mid-switch; it must serve again while we check
            current = stale
        return current

    def release_of(self, previous: Container) -> str:
        return previous.labels.get("controlplane.release", "")

    def describe_previous(self, previous: Container) -> str:
        return f"{previous.name} ({self.release_of(previous)})"

    def start(self, port: int, *, candidate: bool) -> _Started:
        req, config = self.request, self.config
        role = "candidate" if candidate else "service"
        labels = {
            "controlplane.deployer": "docker",
            "controlplane.role": role,
            "controlplane.project": req.project,
            "controlplane.environment": req.environment,
            "controlplane.release": req.release,
            "controlplane.deployment": str(req.deployment_id),
            "controlplane.commit": req.commit_sha,
            "controlplane.port": str(port),
            "controlplane.host": self.host,
        }
        options: dict[str, Any] = {}
        if config["command"] is not None:
            options["command"] = config["command"]
        container = self.client.containers.run(
            req.image_ref,
            name=self.name + CANDIDATE if candidate else self.name,
            detach=True,
            environment={**req.env, "HOST": self.host, "PORT": str(port)},
            network_mode="host",  # never a Docker network: see docs/deployers.md
            init=True,  # a PID 1 that forwards SIGTERM: stops do not wait for the timeout
            mem_limit=config["memory"],
            nano_cpus=_nano_cpus(self.client, config["cpus"]),
            pids_limit=config["pids_limit"],
            restart_policy={"Name": "no" if candidate else config["restart"]},
            labels=labels,
            **options,
        )
        if not candidate:
            self.details["container_id"] = container.id
        return _Started(container, self.host)

    def check(self, running: _Started, port: int) -> Health:
        container, host, restarts = running
        return wait_healthy(
            port=port,
            path=self.request.health_path,
            timeout=self.request.health_timeout,
            died=lambda: _died(container, restarts),
            output=lambda: _logs(container),
            host=host,
        )

    def discard(self, running: _Started) -> None:
        _remove(running.container)

    def stop_previous(self, previous: Container) -> None:
        previous.rename(self.name + PREVIOUS)
        previous.stop(timeout=STOP_TIMEOUT)

    def restart_previous(self, previous: Container) -> tuple[_Started, int]:
        previous.rename(self.name)
        previous.start()
        previous.reload()
        labels = previous.labels
        port = int(labels.get("controlplane.port") or self.request.port or 0)
        host = labels.get("controlplane.host") or DEFAULT_HOST
        return _Started(previous, host, previous.attrs.get("RestartCount", 0)), port

    def commit(self, running: _Started, previous: Container | None) -> str:
        if previous is not None:
            _remove(previous)
        return f"container {running.container.short_id}"

    def error_message(self, exc: BaseException, *, candidate: bool) -> str:
        if candidate:
            return f"Docker could not start the new release: {_explain(exc)}"
        return f"Docker failed during the switch: {_explain(exc)}"


def _config(target: dict) -> dict[str, Any]:
    try:
        cpus = float(target.get("cpus", DEFAULT_CPUS))
        pids_limit = int(target.get("pids_limit", DEFAULT_PIDS_LIMIT))
    except (TypeError, ValueError):
        raise DeployError("target cpus and pids_limit must be numbers.") from None
    if cpus <= 0:
        raise DeployError("target cpus must be positive.")
    restart = str(target.get("restart", DEFAULT_RESTART))
    if restart not in RESTART_POLICIES:
        raise DeployError(f"target restart must be one of {', '.join(RESTART_POLICIES)}.")
    return {
        "memory": str(target.get("memory", DEFAULT_MEMORY)),
        "cpus": cpus,
        "pids_limit": pids_limit,
        "restart": restart,
        "command": target_command(target),
    }


def _client() -> DockerClient:
    where = os.environ.get("DOCKER_HOST") or "the local socket /var/run/docker.sock"
    try:
        client = from_env()
        client.ping()
    except ENGINE_ERRORS as exc:
        raise DeployError(
            f"The Docker engine at {where} cannot be reached ({exc.__class__.__name__}): "
            "is dockerd running and may the worker use its socket?"
        ) from None
    return client


def _get(client: DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except NotFound:
        return None


def _containers(client: DockerClient, project: str, environment: str) -> list[Container]:
    labels = [
        "controlplane.deployer=docker",
        f"controlplane.project={project}",
        f"controlplane.environment={environment}",
    ]
    return client.containers.list(all=True, filters={"label": labels})


def _remove(container: Container) -> None:
    try:
        container.remove(force=True)
    except NotFound:
        pass


def _died(container: Container, restarts: int) -> str | None:
    """How the container died, or None while it runs (a restart by its policy is a death)."""
    try:
        container.reload()
    except NotFound:
        return "the container was removed"
    state = container.attrs.get("State", {})
    restarted = container.attrs.get("RestartCount", 0) > restarts
    if state.get("Running") and not state.get("Restarting") and not restarted:
        return None
    if state.get("OOMKilled"):
        return "the container ran out of memory"
    return f"the container exited with code {state.get('ExitCode')}"


def _logs(container: Container) -> str:
    return container.logs(tail=LOG_TAIL).decode("utf-8", "replace")


def _nano_cpus(client: DockerClient, cpus: float) -> int:
    # The engine refuses more CPUs than its host has.
    available = float(client.info().get("NCPU") or cpus)
    return int(min(cpus, available) * 1e9)


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)
