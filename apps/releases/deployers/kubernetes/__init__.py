"""The kubernetes deployer: one Deployment and one Service per environment, both named
``<project>-<environment>`` (made a DNS-1123 label), in the target's namespace, through the
official client (``AppsV1Api``, ``CoreV1Api``). See docs/kubernetes.md.

A deploy:

1. reads the Deployment: its spec is what a failed rollout goes back to (it must carry the
   control plane's ``app.kubernetes.io/managed-by`` label: someone else's is never taken over);
2. applies the Service (created, or merge-patched when its type or port changed) — first, so a
   token that may not touch Services is refused before the serving Deployment changes;
3. creates the Deployment, or replaces it (PUT with the ``resourceVersion`` just read: a change
   made meanwhile is a 409, retried on a fresh read);
4. waits for the rollout as ``kubectl rollout status`` does: ``observedGeneration`` caught up,
   every replica updated and available, no old replica left, no ``ProgressDeadlineExceeded``;
5. when that fails or ``health_timeout`` passes: puts the previous spec back, waits for it, and
   raises :class:`DeployFailed` with ``rolled_back=True``. A first deploy has nothing to go back
   to: its Deployment and Service are deleted and ``rolled_back`` is False, as with the docker
   deployer.

The rolling update has ``maxUnavailable: 0``: the old pods serve until new ones pass their
readiness probe (``health_path``), so base.py's rule — healthy before the previous release stops
serving — is kept by Kubernetes itself.

The pods get ``HOST`` (all addresses, unless the target's ``host`` or a ``HOST`` variable says
otherwise: the kubelet probes the pod's own address) and ``PORT``.

The package: ``settings`` (names, label keys, the target's keys checked), ``cluster`` (the
client and the API calls), ``manifests`` (pure builders of the Deployment and Service),
``rollout`` (apply, wait, roll back).

``stop()`` deletes the Deployment and the Service (an environment that is deleted leaves
nothing behind). ``stop()`` and ``status()`` get no target, so they use the one given to the
constructor (``KubernetesDeployer(target=..., credentials=...)``); without one, in-cluster
configuration in the ``default`` namespace.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..base import DeployError, DeployRequest, DeployResult
from .cluster import Cluster
from .manifests import image_of, is_ours, release_of, revision_of
from .rollout import DONE, FAILED, WAITING, Rollout, rollout_state
from .settings import (
    A_COMMIT,
    A_DEPLOYMENT,
    DNS_LABEL,
    L_MANAGED_BY,
    MANAGED_BY,
    REVISION_ANNOTATION,
    TOKEN_VARIABLE,
    KubeSettings,
    label_value,
    parse_settings,
    resource_name,
    token,
)

__all__ = [
    "DNS_LABEL",
    "DONE",
    "FAILED",
    "L_MANAGED_BY",
    "MANAGED_BY",
    "REVISION_ANNOTATION",
    "TOKEN_VARIABLE",
    "WAITING",
    "KubeSettings",
    "KubernetesDeployer",
    "label_value",
    "resource_name",
    "rollout_state",
]


class KubernetesDeployer:
    name = "kubernetes"

    def __init__(self, *, target: Mapping | None = None, credentials: Mapping | None = None):
        # Only for stop() and status(), whose signatures carry no target; deploy() uses the
        # request's own target and credentials.
        self.target = dict(target or {})
        self.credentials = dict(credentials or {})

    def deploy(self, request: DeployRequest) -> DeployResult:
        settings = parse_settings(request.target)
        if not request.image_ref:
            raise DeployError(
                "The release has no container image: turn on CONTROLPLANE_BUILD_IMAGES so its "
                "build job builds one (and push it where the cluster can pull it)."
            )
        with Cluster(request.target, token(request.credentials), settings.namespace) as cluster:
            return Rollout(cluster, request, settings).run()

    def stop(self, *, project: str, environment: str) -> None:
        """Delete the environment's Deployment and Service (their pods go with them)."""
        name = resource_name(project, environment)
        namespace = parse_settings(self.target).namespace
        with Cluster(self.target, token(self.credentials), namespace) as c:
            with c.explained(f"deleting {namespace}/{name}"):
                deployment = c.read_deployment(name)
                if deployment is not None and is_ours(deployment):
                    c.delete_deployment(name)
                service = c.read_service(name)
                if service is not None and is_ours(service):
                    c.delete_service(name)

    def status(self, *, project: str, environment: str) -> dict:
        name = resource_name(project, environment)
        try:
            namespace = parse_settings(self.target).namespace
            with Cluster(self.target, token(self.credentials), namespace) as cluster:
                with cluster.explained(f"reading deployment {namespace}/{name}"):
                    deployment = cluster.read_deployment(name)
        except DeployError as exc:
            return {"running": False, "release": "", "error": str(exc)}
        if deployment is None:
            return {"running": False, "release": ""}
        meta, spec = deployment.get("metadata", {}), deployment.get("spec", {})
        status = deployment.get("status") or {}
        annotations = meta.get("annotations") or {}
        state, message = rollout_state(deployment)
        return {
            "running": (status.get("availableReplicas") or 0) > 0,
            "release": release_of(deployment),
            "deployment_id": annotations.get(A_DEPLOYMENT, ""),
            "commit": annotations.get(A_COMMIT, ""),
            "namespace": namespace,
            "deployment": name,
            "image": image_of(spec.get("template") or {}),
            "replicas": spec.get("replicas", 1),
            "ready_replicas": status.get("readyReplicas") or 0,
            "available_replicas": status.get("availableReplicas") or 0,
            "updated_replicas": status.get("updatedReplicas") or 0,
            "generation": meta.get("generation"),
            "observed_generation": status.get("observedGeneration"),
            "revision": revision_of(deployment),
            "rollout": state,
            "rollout_message": message,
        }
