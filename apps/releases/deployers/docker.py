"""The docker deployer: one container per environment, ``cp-<project>-<environment>``, running the
release's image with host networking (the service listens on ``PORT``). See docs/deployers.md.

Host networking means two containers cannot listen on one port, so the health-gated switch is:

1. a *candidate* container of the new image on a free side port must become healthy; when it
   does not, it is removed and the serving container was never touched;
2. the serving container is stopped (kept), the new one starts on the real port and must be
   healthy again; when it is not, it is removed and the old one is started again;
3. only then is the old container removed.

The service is down between the old container's stop and the new one's first healthy answer:
the *switch gap*, recorded on the result. ``target["verify_first"] = False`` skips step 1.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import requests
from docker.client import DockerClient, from_env
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from .base import DeployError, DeployFailed, DeployRequest, DeployResult
from .health import HOST, Health, free_port, wait_healthy, wait_port_free

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
        if not request.port:
            raise DeployError(
                "The environment has no service port: set one, the container listens on it."
            )
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
            return _Switch(client, request, config, image.id).run()
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


class _Switch:
    """One deploy: the steps of the health-gated switch and their bookkeeping."""

    def __init__(self, client: DockerClient, request: DeployRequest, config: dict, image_id: str):
        self.client = client
        self.request = request
        self.config = config
        self.image_id = image_id
        self.log = request.log
        self.name = container_name(request.project, request.environment)
        self.details: dict[str, Any] = {"image_id": image_id, "container_name": self.name}
        self.previous: Container | None = None

    def run(self) -> DeployResult:
        req = self.request
        previous = self.previous = self._previous()
        if previous is not None:
            self.details["previous_release"] = previous.labels.get("controlplane.release", "")
        if self.config["verify_first"]:
            self._verify_candidate()
        else:
            self.log("verify_first is off: the new container is checked on the service port only")

        gap_start = time.monotonic()
        new, failure, error_class = None, "", DeployFailed
        try:
            if previous is not None:
                self.log(f"stopping {previous.name} ({self.details['previous_release']})")
                previous.rename(self.name + PREVIOUS)
                previous.stop(timeout=STOP_TIMEOUT)
            if not wait_port_free(req.port):
                failure, error_class = f"Port {req.port} is in use by another program.", DeployError
            else:
                new = self._start(
                    self.name, req.port, role="service", restart=self.config["restart"]
                )
                self.details["container_id"] = new.id
                health = self._check(new, req.port)
                if not health.healthy:
                    self.details["health"] = health.message
                    failure = (
                        f"{req.release} failed its health check on port {req.port}: "
                        f"{health.message}"
                    )
        except ENGINE_ERRORS as exc:
            failure, error_class = f"Docker failed during the switch: {_explain(exc)}", DeployError
        if failure:
            if new is not None:
                _remove(new)
            restored = self._restore(previous)
            raise error_class(
                failure + _rollback_note(previous, restored),
                rolled_back=restored,
                details=self.details,
            )
        self.details["switch_gap_seconds"] = round(time.monotonic() - gap_start, 3)
        if previous is not None:
            _remove(previous)
        self.log(
            f"{req.release} serves on port {req.port} (container {new.short_id}, "
            f"switch gap {self.details['switch_gap_seconds']} s)"
        )
        return DeployResult(url=f"http://{HOST}:{req.port}", details=self.details)

    def _previous(self) -> Container | None:
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

    def _verify_candidate(self) -> None:
        port = free_port()
        self.details["candidate_port"] = port
        self.log(f"starting a candidate of {self.request.release} on side port {port}")
        untouched = "The serving release was not touched."
        try:
            candidate = self._start(self.name + CANDIDATE, port, role="candidate", restart="no")
        except ENGINE_ERRORS as exc:
            raise DeployError(
                f"Docker could not start the new release: {_explain(exc)}\n{untouched}",
                rolled_back=self.previous is not None,
                details=self.details,
            ) from None
        try:
            health = self._check(candidate, port)
        finally:
            _remove(candidate)
        if not health.healthy:
            self.details["health"] = health.message
            raise DeployFailed(
                f"{self.request.release} failed its health check: {health.message}\n{untouched}",
                rolled_back=self.previous is not None,
                details=self.details,
            )
        self.details["candidate_healthy_seconds"] = round(health.seconds, 3)
        self.log(f"candidate healthy after {health.seconds:.2f} s")

    def _start(self, name: str, port: int, *, role: str, restart: str) -> Container:
        req, config = self.request, self.config
        labels = {
            "controlplane.deployer": "docker",
            "controlplane.role": role,
            "controlplane.project": req.project,
            "controlplane.environment": req.environment,
            "controlplane.release": req.release,
            "controlplane.deployment": str(req.deployment_id),
            "controlplane.commit": req.commit_sha,
            "controlplane.port": str(port),
        }
        options: dict[str, Any] = {}
        if config["command"] is not None:
            options["command"] = config["command"]
        return self.client.containers.run(
            req.image_ref,
            name=name,
            detach=True,
            environment={**req.env, "PORT": str(port)},
            network_mode="host",  # never a Docker network: see docs/deployers.md
            init=True,  # a PID 1 that forwards SIGTERM: stops do not wait for the timeout
            mem_limit=config["memory"],
            nano_cpus=_nano_cpus(self.client, config["cpus"]),
            pids_limit=config["pids_limit"],
            restart_policy={"Name": restart},
            labels=labels,
            **options,
        )

    def _check(self, container: Container, port: int, restarts: int = 0) -> Health:
        return wait_healthy(
            port=port,
            path=self.request.health_path,
            timeout=self.request.health_timeout,
            died=lambda: _died(container, restarts),
            output=lambda: _logs(container),
        )

    def _restore(self, previous: Container | None) -> bool:
        """Put the old container back in service; whether it answers its health check."""
        if previous is None:
            return False
        self.log(f"starting {self.details['previous_release']} again")
        try:
            previous.rename(self.name)
            previous.start()
            previous.reload()
        except ENGINE_ERRORS as exc:
            self.log(f"could not start the previous container: {exc}")
            return False
        # Its restart count goes on from its past; only a new restart means it crashed now.
        health = self._check(previous, self.request.port, previous.attrs.get("RestartCount", 0))
        if not health.healthy:
            self.log(f"the previous release does not answer: {health.message}")
        return health.healthy


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
    command = target.get("command")
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]  # so $PORT expands, as in the process deployer
    elif command is not None and not (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    ):
        raise DeployError("target command must be a string or a list of strings.")
    return {
        "memory": str(target.get("memory", DEFAULT_MEMORY)),
        "cpus": cpus,
        "pids_limit": pids_limit,
        "restart": restart,
        "command": command,
        "verify_first": target.get("verify_first", True) is not False,
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


def _rollback_note(previous: Container | None, restored: bool) -> str:
    if previous is None:
        return "\nNothing served before: the environment has no running release."
    if restored:
        return "\nThe previous release serves again."
    return "\nThe previous release could not be started again: the environment is down."


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)
