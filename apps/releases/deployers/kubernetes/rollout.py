"""One kubernetes deploy: apply the Service and the Deployment (``manifests``), wait for the
rollout as ``kubectl rollout status`` does, and roll back when it fails (the previous spec put
back, or a first deploy's objects deleted)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from kubernetes.client.exceptions import ApiException

from ..base import DeployError, DeployFailed, DeployRequest, DeployResult
from . import manifests
from .cluster import API_ERRORS, Cluster, is_transient
from .manifests import generation, is_ours, release_of, revision_of
from .settings import L_MANAGED_BY, MANAGED_BY, KubeSettings, resource_name

POLL_INTERVAL = 0.5  # seconds between two reads of the Deployment while it rolls out
PROGRESS_LOG_EVERY = 10.0  # seconds: an unchanged progress line is logged again after this
CONFLICT_RETRIES = 3

DONE, WAITING, FAILED = "done", "waiting", "failed"


def rollout_state(deployment: Mapping) -> tuple[str, str]:
    """``(DONE | WAITING | FAILED, message)``, as ``kubectl rollout status`` judges it."""
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return WAITING, "waiting for the deployment spec update to be observed"
    conditions = status.get("conditions") or []
    for condition in conditions:
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return FAILED, f"progress deadline exceeded: {condition.get('message') or ''}".strip()
    failure = next(
        (
            c.get("message") or c.get("reason") or ""
            for c in conditions
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        ),
        "",
    )
    suffix = f" (replica failure: {failure})" if failure else ""
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    current = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < wanted:
        return WAITING, f"{updated} of {wanted} new replicas have been updated{suffix}"
    if current > updated:
        return WAITING, f"{current - updated} old replicas are pending termination{suffix}"
    if available < updated:
        return WAITING, f"{available} of {updated} updated replicas are available{suffix}"
    return DONE, "successfully rolled out"


class Rollout:
    """One deploy: apply, wait, and roll back; with its bookkeeping."""

    def __init__(self, cluster: Cluster, request: DeployRequest, settings: KubeSettings):
        self.cluster = cluster
        self.request = request
        self.settings = settings
        self.log = request.log
        self.name = resource_name(request.project, request.environment)
        self.port = manifests.service_port(request)
        self.where = f"{settings.namespace}/{self.name}"
        self.previous: dict | None = None  # the Deployment as it was before this deploy
        self.service_before: dict | None = None  # the Service as it was, None if we created it
        self.service_changed = False
        self.timings: dict[str, float] = {}

    def run(self) -> DeployResult:
        started = time.monotonic()
        req = self.request
        self.log(
            f"kubernetes: deploying {req.image_ref} to deployment {self.where} "
            f"on {self.cluster.host} ({self.settings.replicas} replica(s), port {self.port})"
        )
        with self.cluster.explained(f"reading deployment {self.where}"):
            self.previous = self.cluster.read_deployment(self.name)
        if self.previous is not None and not is_ours(self.previous):
            raise DeployError(
                f"A Deployment {self.where} exists that the control plane did not create "
                f"(no {L_MANAGED_BY}={MANAGED_BY} label): delete it or deploy to another "
                "namespace."
            )
        self._apply_service()
        try:
            applied = self._apply_deployment()
        except DeployError:
            self._undo_service()
            raise
        self.timings["apply_seconds"] = round(time.monotonic() - started, 3)

        rollout_started = time.monotonic()
        deadline = rollout_started + req.health_timeout
        ok, message, current = self._wait(deadline, expected_generation=generation(applied))
        self.timings["rollout_seconds"] = round(time.monotonic() - rollout_started, 3)
        if not ok:
            self._fail(message, current)
        self.timings["total_seconds"] = round(time.monotonic() - started, 3)
        url = self.settings.service_url or (
            f"http://{self.name}.{self.settings.namespace}.svc:{self.port}"
        )
        self.log(f"kubernetes: {req.release} rolled out in {self.timings['rollout_seconds']} s")
        return DeployResult(url=url, details=self._details(current))

    # The Service -----------------------------------------------------------------------------

    def _apply_service(self) -> None:
        desired = manifests.service(self.request, self.settings)
        doing = f"applying service {self.where}"
        with self.cluster.explained(doing):
            existing = self.cluster.read_service(self.name)
            if existing is None:
                self.cluster.create_service(desired)
                self.service_changed = True
                self.log(f"kubernetes: created service {self.where} ({self.settings.service_type})")
                return
            if not is_ours(existing):
                raise DeployError(
                    f"A Service {self.where} exists that the control plane did not create: "
                    "delete it or deploy to another namespace."
                )
            self.service_before = existing
            patch = manifests.service_patch(existing, desired)
            if patch is None:
                return
            self.cluster.patch_service(self.name, patch)
            self.service_changed = True
            self.log(f"kubernetes: updated service {self.where} (port {self.port})")

    def _undo_service(self) -> str:
        """Put the Service back as it was; a note on what happened (best effort)."""
        if not self.service_changed:
            return ""
        try:
            if self.service_before is None:
                self.cluster.delete_service(self.name)
                return " Its Service was deleted."
            spec = self.service_before.get("spec") or {}
            self.cluster.patch_service(
                self.name,
                {"spec": {k: spec.get(k) for k in ("type", "selector", "ports")}},
            )
            return " Its Service was put back."
        except API_ERRORS as exc:
            return f" Its Service could not be put back: {self.cluster.explain(exc, 'undoing')}"

    # The Deployment --------------------------------------------------------------------------

    def _apply_deployment(self) -> dict:
        desired = manifests.deployment(self.request, self.settings)
        doing = f"applying deployment {self.where}"
        with self.cluster.explained(doing):
            attempt = 1
            while True:
                try:
                    if self.previous is None:
                        applied = self.cluster.create_deployment(desired)
                        self.log(f"kubernetes: created deployment {self.where}")
                    else:
                        applied = self.cluster.replace_deployment(
                            self.name, manifests.replacement(self.previous, desired)
                        )
                        self.log(
                            f"kubernetes: updated deployment {self.where} (generation "
                            f"{generation(applied)}, was {self._previous_release()})"
                        )
                    return applied
                except ApiException as exc:
                    # 409: changed (or created) since it was read; read it again and retry.
                    if exc.status != 409 or attempt >= CONFLICT_RETRIES:
                        raise
                attempt += 1
                self.log(f"kubernetes: deployment {self.where} changed meanwhile, retrying")
                self.previous = self.cluster.read_deployment(self.name)
                if self.previous is not None and not is_ours(self.previous):
                    raise DeployError(
                        f"A Deployment {self.where} was created meanwhile by someone else."
                    )

    def _previous_release(self) -> str:
        return release_of(self.previous or {}) or "an unlabelled release"

    # Waiting ---------------------------------------------------------------------------------

    def _wait(self, deadline: float, *, expected_generation: int) -> tuple[bool, str, dict]:
        """Poll until the rollout is done, failed, or the deadline passes."""
        last_line, last_logged, current = "", 0.0, {}
        message = "no answer from the API server yet"
        while True:
            try:
                read = self.cluster.read_deployment(self.name)
            except API_ERRORS as exc:
                error = self.cluster.explain(exc, f"waiting for deployment {self.where}")
                if not is_transient(exc):
                    return False, str(error), current
                message = str(error)  # a blip: the next poll may get through
            else:
                if read is None:
                    return False, f"deployment {self.where} was deleted meanwhile", current
                current = read
                state, message = rollout_state(current)
                if generation(current) < expected_generation:
                    state = WAITING  # an old read from a lagging cache
                if state == DONE:
                    return True, message, current
                if state == FAILED:
                    return False, message, current
            now = time.monotonic()
            if message != last_line or now - last_logged >= PROGRESS_LOG_EVERY:
                self.log(f"kubernetes: waiting for rollout of {self.where}: {message}")
                last_line, last_logged = message, now
            if now >= deadline:
                timeout = self.request.health_timeout
                return False, f"not rolled out within {timeout} s: {message}", current
            time.sleep(max(0.0, min(POLL_INTERVAL, deadline - now)))

    # Failure and rollback --------------------------------------------------------------------

    def _fail(self, reason: str, current: dict) -> None:
        req = self.request
        reason += self._pod_problems()
        self.log(f"kubernetes: rollout of {req.release} failed: {reason}")
        details = self._details(current)
        details["failure"] = reason
        headline = f"{req.release} did not roll out in {self.where}: {reason}"
        if self.previous is None:
            note = self._remove_first_deploy()
            details["rollback"] = "deleted"
            # As with the docker deployer: rolled back means a previous release serves again.
            raise DeployFailed(f"{headline}\n{note}", rolled_back=False, details=details)
        previous = self._previous_release()
        self.log(f"kubernetes: rolling back to {previous}")
        try:
            with self.cluster.explained(f"rolling back deployment {self.where}"):
                restored = self._restore_previous()
        except DeployError as exc:
            details["rollback"] = "failed"
            raise DeployError(
                f"{headline}\nThe rollback to {previous} failed: {exc}{self._undo_service()}",
                rolled_back=False,
                details=details,
            ) from None
        rollback_started = time.monotonic()
        ok, message, _ = self._wait(
            rollback_started + req.health_timeout, expected_generation=generation(restored)
        )
        details["timings"]["rollback_seconds"] = round(time.monotonic() - rollback_started, 3)
        service_note = self._undo_service()
        if not ok:
            details["rollback"] = "incomplete"
            raise DeployError(
                f"{headline}\nThe previous spec ({previous}) was put back but is not rolled out "
                f"yet: {message}{service_note}",
                rolled_back=False,
                details=details,
            )
        details["rollback"] = "restored"
        self.log(f"kubernetes: {previous} serves again")
        raise DeployFailed(
            f"{headline}\nRolled back: {previous} serves again.{service_note}",
            rolled_back=True,
            details=details,
        )

    def _restore_previous(self) -> dict:
        """Replace the Deployment's spec, labels and annotations with the previous ones."""
        previous = self.previous or {}
        attempt = 1
        while True:
            current = self.cluster.read_deployment(self.name)
            if current is None:  # deleted meanwhile: create the previous one again
                return self.cluster.create_deployment(manifests.recreation(previous))
            body = manifests.rollback(previous, current)
            try:
                return self.cluster.replace_deployment(self.name, body)
            except ApiException as exc:
                if exc.status != 409 or attempt >= CONFLICT_RETRIES:
                    raise
            attempt += 1

    def _remove_first_deploy(self) -> str:
        """Nothing served before: delete what this deploy created (a scaled-to-zero leftover
        would only confuse the next deploy, which would take its bad spec as the previous)."""
        try:
            with self.cluster.explained(f"deleting deployment {self.where}"):
                self.cluster.delete_deployment(self.name)
        except DeployError as exc:
            return f"Nothing served before; deleting the new Deployment failed: {exc}"
        return "Nothing served before: the new Deployment was deleted." + self._undo_service()

    def _pod_problems(self) -> str:
        """Why the new pods are not ready, from their status (best effort: needs list pods)."""
        try:
            pods = self.cluster.list_pods(manifests.pod_selector(self.request))
        except API_ERRORS:
            return ""
        problems: list[str] = []
        for pod in pods:
            for problem in pod_problem_lines(pod):
                if problem not in problems:
                    problems.append(problem)
        return f" (pods: {'; '.join(problems[:3])})" if problems else ""

    def _details(self, deployment: Mapping) -> dict:
        """What goes on the Deployment row: where, what, and the rollout's generation."""
        meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
        return {
            "namespace": self.settings.namespace,
            "deployment": self.name,
            "service": self.name,
            "api_url": self.cluster.host,
            "image": self.request.image_ref,
            "replicas": self.settings.replicas,
            "created": self.previous is None,
            "previous_release": self._previous_release() if self.previous else None,
            "generation": meta.get("generation"),
            "observed_generation": status.get("observedGeneration"),
            "revision": revision_of(deployment),
            "timings": dict(self.timings),
        }


def pod_problem_lines(pod: Mapping) -> list[str]:
    status = pod.get("status") or {}
    lines = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            lines.append(f"unschedulable: {condition.get('message') or condition.get('reason')}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
            lines.append(f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": "))
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated:
            lines.append(
                f"last exit code {terminated.get('exitCode')} ({terminated.get('reason') or ''})"
            )
        elif not container.get("ready") and not waiting and state.get("running"):
            lines.append("running but not ready: the readiness probe fails")
    return lines
