"""The Deployment and Service of an environment, and the bodies that change them: pure
functions from a release and the environment's settings to the wire format (plain dicts, what
the API server sends and takes). No API call here; ``rollout`` sends them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..base import DeployRequest, service_host
from .settings import (
    A_COMMIT,
    A_DEPLOYMENT,
    CONTAINER_NAME,
    DEFAULT_PORT,
    L_DEPLOYMENT,
    L_ENVIRONMENT,
    L_MANAGED_BY,
    L_NAME,
    L_PROJECT,
    L_RELEASE,
    MANAGED_BY,
    REVISION_ANNOTATION,
    KubeSettings,
    label_value,
    resource_name,
)

ALL_ADDRESSES = "0.0.0.0"  # noqa: S104 - inside its pod: the kubelet probes the pod's address


def service_port(request: DeployRequest) -> int:
    return request.port or DEFAULT_PORT


def is_ours(obj: Mapping) -> bool:
    """Whether the control plane made it (someone else's is never taken over)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(L_MANAGED_BY) == MANAGED_BY


def release_of(obj: Mapping) -> str:
    """The release an object was deployed for ("" when it has no release label)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(L_RELEASE, "")


def revision_of(obj: Mapping) -> str:
    """The Deployment controller's revision number ("" before it set one)."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "")


def pod_selector(request: DeployRequest) -> str:
    """The label selector of the pods this deploy started (a label query, for listing)."""
    name = resource_name(request.project, request.environment)
    return f"{L_NAME}={name},{L_DEPLOYMENT}={label_value(request.deployment_id)}"


def image_of(template: Mapping) -> str:
    containers = (template.get("spec") or {}).get("containers") or []
    return containers[0].get("image", "") if containers else ""


def service(request: DeployRequest, settings: KubeSettings) -> dict:
    """The environment's Service: ``port`` to the pods' ``port``, selecting its pods."""
    name, port = resource_name(request.project, request.environment), service_port(request)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            # No release label: the Service outlives releases (and is not patched by each).
            "labels": labels(request, release=False),
        },
        "spec": {
            "type": settings.service_type,
            "selector": selector(name),
            "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}],
        },
    }


def labels(request: DeployRequest, *, release: bool = True) -> dict[str, str]:
    """What every object of the environment carries; the release too, unless ``release`` is
    False (the Service, which outlives releases)."""
    req = request
    result = {
        L_NAME: resource_name(req.project, req.environment),
        L_MANAGED_BY: MANAGED_BY,
        L_PROJECT: label_value(req.project),
        L_ENVIRONMENT: label_value(req.environment),
    }
    if release:
        result[L_RELEASE] = label_value(req.release)
    return result


def selector(name: str) -> dict[str, str]:
    # Never the release: a Deployment's selector cannot change after it is created.
    return {L_NAME: name, L_MANAGED_BY: MANAGED_BY}


def annotations(request: DeployRequest) -> dict[str, str]:
    return {A_DEPLOYMENT: str(request.deployment_id), A_COMMIT: request.commit_sha}


def deployment(request: DeployRequest, settings: KubeSettings) -> dict:
    """The environment's Deployment of ``request.release``: its pods listen on ``HOST`` (all
    addresses unless the environment says otherwise: the kubelet probes the pod's address)
    and ``PORT``, and no old pod stops before a new one is ready."""
    req, port = request, service_port(request)
    name = resource_name(req.project, req.environment)
    env = {**req.env, "HOST": service_host(req, default=ALL_ADDRESSES), "PORT": str(port)}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": req.image_ref,
        # Sorted: the same variables in another order must not start a new rollout.
        "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": req.health_path, "port": port},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        # Only after the time the release is given to become healthy: a slow start (a big
        # model loading) is not killed by its liveness probe.
        "livenessProbe": {
            "httpGet": {"path": req.health_path, "port": port},
            "initialDelaySeconds": max(1, req.health_timeout),
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
    }
    resources = {
        key: value
        for key, value in (("memory", settings.memory), ("cpu", settings.cpu))
        if value is not None
    }
    if resources:
        container["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    if settings.command is not None:
        container["command"] = settings.command
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    pod_spec: dict[str, Any] = {
        "containers": [container],
        # The model service has no business with the Kubernetes API.
        "automountServiceAccountToken": False,
    }
    if settings.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": str(settings.image_pull_secret)}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels(req),
            "annotations": annotations(req),
        },
        "spec": {
            "replicas": settings.replicas,
            "revisionHistoryLimit": settings.revision_history_limit,
            "progressDeadlineSeconds": max(1, req.health_timeout),
            "selector": {"matchLabels": selector(name)},
            # No old pod stops before a new one is ready.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    # The deployment id makes every deploy a new rollout, a redeploy too.
                    "labels": {**labels(req), L_DEPLOYMENT: label_value(req.deployment_id)},
                    "annotations": annotations(req),
                },
                "spec": pod_spec,
            },
        },
    }


def generation(obj: Mapping) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def replacement(current: Mapping, desired: Mapping) -> dict:
    """The desired Deployment as a PUT over ``current``: its resourceVersion (a conflict if it
    changed since), its other labels and annotations kept (the controller's revision, too)."""
    body = copy.deepcopy(dict(desired))
    meta, old = body["metadata"], current.get("metadata") or {}
    meta["resourceVersion"] = old.get("resourceVersion")
    meta["labels"] = {**(old.get("labels") or {}), **meta["labels"]}
    meta["annotations"] = {**(old.get("annotations") or {}), **meta["annotations"]}
    return body


def rollback(previous: Mapping, current: Mapping) -> dict:
    """``current`` with the previous spec, labels and annotations: the previous pod template
    again, so the controller scales the previous ReplicaSet back up."""
    old, now = previous.get("metadata") or {}, current.get("metadata") or {}
    annotations = dict(old.get("annotations") or {})
    revision = (now.get("annotations") or {}).get(REVISION_ANNOTATION)
    if revision:
        annotations[REVISION_ANNOTATION] = revision  # the controller's, not ours to set
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **{k: v for k, v in now.items() if k not in ("labels", "annotations")},
            "labels": dict(old.get("labels") or {}),
            "annotations": annotations,
        },
        "spec": copy.deepcopy(previous.get("spec") or {}),
    }


def recreation(previous: Mapping) -> dict:
    """``previous`` as a body to create again (it was deleted meanwhile): without what the
    server sets on an object it has."""
    body = copy.deepcopy(dict(previous))
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    for key in ("resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"):
        meta.pop(key, None)
    return body


def service_patch(existing: Mapping, desired: Mapping) -> dict | None:
    """A merge patch that makes ``existing`` serve like ``desired``; None when it already does.
    A NodePort already allocated to the same port is kept (else the server picks a new one)."""
    old_spec, new_spec = existing.get("spec") or {}, copy.deepcopy(desired["spec"])
    old_ports = {p.get("port"): p for p in old_spec.get("ports") or []}
    for port in new_spec["ports"]:
        node_port = (old_ports.get(port["port"]) or {}).get("nodePort")
        if node_port and new_spec["type"] != "ClusterIP":
            port["nodePort"] = node_port

    def shape(spec: Mapping) -> tuple:
        ports = [
            (p.get("port"), p.get("targetPort"), p.get("protocol", "TCP"))
            for p in spec.get("ports") or []
        ]
        return spec.get("type", "ClusterIP"), ports, spec.get("selector") or {}

    old_labels = (existing.get("metadata") or {}).get("labels") or {}
    new_labels = desired["metadata"]["labels"]
    if shape(old_spec) == shape(new_spec) and all(
        old_labels.get(k) == v for k, v in new_labels.items()
    ):
        return None
    return {"metadata": {"labels": new_labels}, "spec": new_spec}
