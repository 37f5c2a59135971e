"""The kubernetes deployer's names and settings: resource names, label keys, and the target's
deployer keys checked into a :class:`KubeSettings` (a wrong key is a DeployError naming it)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from apps.core.kube import label_value  # noqa: F401 (re-exported: manifests, __init__)

from ..base import DeployError, target_command

TOKEN_VARIABLE = "DEPLOY_KUBE_TOKEN"  # noqa: S105 (the name of the variable, not a token)
DEFAULT_NAMESPACE = "default"
DEFAULT_PORT = 8080
DEFAULT_REVISION_HISTORY_LIMIT = 5
MANAGED_BY = "controlplane"
CONTAINER_NAME = "app"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# Label and annotation keys: Kubernetes' recommended ones, and the control plane's own (the same
# names as on the docker deployer's containers).
L_NAME = "app.kubernetes.io/name"
L_MANAGED_BY = "app.kubernetes.io/managed-by"
L_PROJECT = "controlplane.project"
L_ENVIRONMENT = "controlplane.environment"
L_RELEASE = "controlplane.release"
L_DEPLOYMENT = "controlplane.deployment"
A_DEPLOYMENT = "controlplane.deployment-id"
A_COMMIT = "controlplane.commit"

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([munkMGTPE]|[KMGTPE]i|[eE][0-9]+)?")
DOCKER_MEMORY = re.compile(r"([0-9]+)([bkmg])")  # the docker deployer's "512m", "1g": binary
DOCKER_UNITS = {"b": "", "k": "Ki", "m": "Mi", "g": "Gi"}


def resource_name(project: str, environment: str) -> str:
    """``<project>-<environment>`` when that is already a DNS-1035 label (what a Service name
    must be); otherwise a cleaned form plus a hash of the original, so two environments that
    clean to the same text ("Prod", "prod") never share a Deployment."""
    raw = f"{project}-{environment}"
    if len(raw) <= 63 and DNS_LABEL.fullmatch(raw) and raw[0].isalpha():
        return raw
    cleaned = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"cp-{cleaned}".rstrip("-")
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{cleaned[:54].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class KubeSettings:
    namespace: str
    replicas: int
    service_type: str
    service_url: str
    memory: str | None
    cpu: str | None
    revision_history_limit: int
    command: list[str] | None
    image_pull_policy: str | None
    image_pull_secret: str | None


def parse_settings(target: Mapping) -> KubeSettings:
    """The target's deployer keys, checked; a wrong one is a DeployError naming it."""
    namespace = str(target.get("namespace") or DEFAULT_NAMESPACE)
    if len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        raise DeployError(f"target namespace {namespace!r} is not a valid Kubernetes namespace.")
    replicas = _int(target, "replicas", 1, minimum=1)
    history = _int(target, "revision_history_limit", DEFAULT_REVISION_HISTORY_LIMIT, minimum=0)
    service_type = str(target.get("service_type") or "ClusterIP")
    if service_type not in SERVICE_TYPES:
        raise DeployError(f"target service_type must be one of {', '.join(SERVICE_TYPES)}.")
    pull_policy = target.get("image_pull_policy")
    if pull_policy is not None and pull_policy not in PULL_POLICIES:
        raise DeployError(f"target image_pull_policy must be one of {', '.join(PULL_POLICIES)}.")
    return KubeSettings(
        namespace=namespace,
        replicas=replicas,
        service_type=service_type,
        service_url=str(target.get("service_url") or ""),
        memory=memory_quantity(target.get("memory")),
        cpu=cpu_quantity(target.get("cpus")),
        revision_history_limit=history,
        command=target_command(target),
        image_pull_policy=pull_policy,
        image_pull_secret=target.get("image_pull_secret") or None,
    )


def _int(target: Mapping, key: str, default: int, *, minimum: int) -> int:
    value = target.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeployError(f"target {key} must be a whole number of at least {minimum}.")
    return value


def memory_quantity(value: object) -> str | None:
    """A Kubernetes quantity ("512Mi", "1G"); the docker deployer's lowercase "512m" / "1g"
    are binary units and become "512Mi" / "1Gi" (in Kubernetes "512m" is 0.512 bytes)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    docker = DOCKER_MEMORY.fullmatch(text)
    if docker:
        return docker.group(1) + DOCKER_UNITS[docker.group(2)]
    if not QUANTITY.fullmatch(text) or text.endswith(("m", "u", "n")):
        raise DeployError(f"target memory {text!r} is not a quantity such as 512Mi or 1Gi.")
    return text


def cpu_quantity(value: object) -> str | None:
    """``cpus`` as in the docker deployer (1.5 → "1500m"), or a quantity such as "500m"."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]+m", value.strip()):
        return value.strip()
    try:
        cpus = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DeployError(f"target cpus must be a number, not {value!r}.") from None
    if cpus <= 0:
        raise DeployError("target cpus must be positive.")
    return f"{max(1, round(cpus * 1000))}m"


def token(credentials: Mapping) -> str:
    # A token pasted with its newline would be an invalid header, refused before it is sent.
    return str(credentials.get(TOKEN_VARIABLE) or "").strip()
