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

``stop()`` deletes the Deployment and the Service (an environment that is deleted leaves
nothing behind). ``stop()`` and ``status()`` get no target, so they use the one given to the
constructor (``KubernetesDeployer(target=..., credentials=...)``); without one, in-cluster
configuration in the ``default`` namespace.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, load_incluster_config, load_kube_config

from .base import DeployError, DeployFailed, DeployRequest, DeployResult

TOKEN_VARIABLE = "DEPLOY_KUBE_TOKEN"  # noqa: S105 (the name of the variable, not a token)
DEFAULT_NAMESPACE = "default"
DEFAULT_PORT = 8080
DEFAULT_REVISION_HISTORY_LIMIT = 5
MANAGED_BY = "controlplane"
CONTAINER_NAME = "app"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
POLL_INTERVAL = 0.5  # seconds between two reads of the Deployment while it rolls out
PROGRESS_LOG_EVERY = 10.0  # seconds: an unchanged progress line is logged again after this
REQUEST_TIMEOUT = (5, 30)  # (connect, read) seconds for one API call
CONFLICT_RETRIES = 3
USER_AGENT = "controlplane-deployer"
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
TRANSIENT_STATUSES = {0, 429, 500, 502, 503, 504}
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class KubernetesDeployer:
    name = "kubernetes"

    def __init__(self, *, target: Mapping | None = None, credentials: Mapping | None = None):
        # Only for stop() and status(), whose signatures carry no target; deploy() uses the
        # request's own target and credentials.
        self.target = dict(target or {})
        self.credentials = dict(credentials or {})

    def deploy(self, request: DeployRequest) -> DeployResult:
        settings = _settings(request.target)
        if not request.image_ref:
            raise DeployError(
                "The release has no container image: turn on CONTROLPLANE_BUILD_IMAGES so its "
                "build job builds one (and push it where the cluster can pull it)."
            )
        token = _token(request.credentials)
        with _Cluster(request.target, token, settings.namespace) as cluster:
            return _Rollout(cluster, request, settings).run()

    def stop(self, *, project: str, environment: str) -> None:
        """Delete the environment's Deployment and Service (their pods go with them)."""
        name = resource_name(project, environment)
        namespace = _settings(self.target).namespace
        with _Cluster(self.target, _token(self.credentials), namespace) as c:
            with c.explained(f"deleting {namespace}/{name}"):
                deployment = c.read_deployment(name)
                if deployment is not None and _is_ours(deployment):
                    c.delete_deployment(name)
                service = c.read_service(name)
                if service is not None and _is_ours(service):
                    c.delete_service(name)

    def status(self, *, project: str, environment: str) -> dict:
        name = resource_name(project, environment)
        try:
            namespace = _settings(self.target).namespace
            with _Cluster(self.target, _token(self.credentials), namespace) as cluster:
                with cluster.explained(f"reading deployment {namespace}/{name}"):
                    deployment = cluster.read_deployment(name)
        except DeployError as exc:
            return {"running": False, "release": "", "error": str(exc)}
        if deployment is None:
            return {"running": False, "release": ""}
        meta, spec = deployment.get("metadata", {}), deployment.get("spec", {})
        status = deployment.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        state, message = rollout_state(deployment)
        return {
            "running": (status.get("availableReplicas") or 0) > 0,
            "release": labels.get(L_RELEASE, ""),
            "deployment_id": annotations.get(A_DEPLOYMENT, ""),
            "commit": annotations.get(A_COMMIT, ""),
            "namespace": namespace,
            "deployment": name,
            "image": _image(spec.get("template") or {}),
            "replicas": spec.get("replicas", 1),
            "ready_replicas": status.get("readyReplicas") or 0,
            "available_replicas": status.get("availableReplicas") or 0,
            "updated_replicas": status.get("updatedReplicas") or 0,
            "generation": meta.get("generation"),
            "observed_generation": status.get("observedGeneration"),
            "revision": annotations.get(REVISION_ANNOTATION, ""),
            "rollout": state,
            "rollout_message": message,
        }


# --- names and settings -------------------------------------------------------------------


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


def label_value(value: object) -> str:
    """A valid label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(value))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)


@dataclass(frozen=True)
class _Settings:
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


def _settings(target: Mapping) -> _Settings:
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
    command = target.get("command")
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]  # so $PORT expands, as in the docker deployer
    elif command is not None and not (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    ):
        raise DeployError("target command must be a string or a list of strings.")
    return _Settings(
        namespace=namespace,
        replicas=replicas,
        service_type=service_type,
        service_url=str(target.get("service_url") or ""),
        memory=_memory(target.get("memory")),
        cpu=_cpu(target.get("cpus")),
        revision_history_limit=history,
        command=command,
        image_pull_policy=pull_policy,
        image_pull_secret=target.get("image_pull_secret") or None,
    )


def _int(target: Mapping, key: str, default: int, *, minimum: int) -> int:
    value = target.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeployError(f"target {key} must be a whole number of at least {minimum}.")
    return value


def _memory(value: object) -> str | None:
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


def _cpu(value: object) -> str | None:
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


def _token(credentials: Mapping) -> str:
    # A token pasted with its newline would be an invalid header, refused before it is sent.
    return str(credentials.get(TOKEN_VARIABLE) or "").strip()


def _configuration(target: Mapping, token: str) -> client.Configuration:
    """A Configuration of its own for this call — never the client's global default, which
    another environment (another cluster) may be using in the same worker."""
    configuration = client.Configuration()
    api_url = str(target.get("api_url") or "").strip().rstrip("/")
    if api_url:
        configuration.host = api_url
        configuration.verify_ssl = target.get("verify_ssl", True) is not False
        if target.get("ca_cert"):
            configuration.ssl_ca_cert = str(target["ca_cert"])
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return configuration
    kubeconfig = target.get("kubeconfig")
    try:
        if kubeconfig:
            load_kube_config(
                config_file=str(kubeconfig),
                context=target.get("context"),
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = f"the kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account"
        raise DeployError(
            f"Cannot configure the Kubernetes client from {where} ({exc}). Set target api_url "
            f"and the secret variable {TOKEN_VARIABLE}, or target kubeconfig."
        ) from None
    return configuration


# --- the API ------------------------------------------------------------------------------


class _Cluster:
    """The few calls the deployer makes, in the wire format (plain dicts): reads come back
    unparsed (``_preload_content=False``) so a spec put back after a failed rollout is exactly
    what the server had."""

    def __init__(self, target: Mapping, token: str, namespace: str):
        self.configuration = _configuration(target, token)
        self.host = self.configuration.host
        self.token = token
        self.namespace = namespace
        self.api_client = client.ApiClient(self.configuration)
        self.api_client.user_agent = USER_AGENT
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    def __enter__(self) -> _Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.api_client.close()

    def explained(self, doing: str) -> _Explained:
        return _Explained(self, doing)

    def read_deployment(self, name: str) -> dict | None:
        return _missing_is_none(
            lambda: self.apps.read_namespaced_deployment(name, self.namespace, **_RAW)
        )

    def create_deployment(self, body: dict) -> dict:
        model = client.V1Deployment.from_dict(body)
        return _json(self.apps.create_namespaced_deployment(self.namespace, model, **_RAW))

    def replace_deployment(self, name: str, body: dict) -> dict:
        model = client.V1Deployment.from_dict(body)
        return _json(self.apps.replace_namespaced_deployment(name, self.namespace, model, **_RAW))

    def delete_deployment(self, name: str) -> None:
        _missing_is_none(
            lambda: self.apps.delete_namespaced_deployment(
                name, self.namespace, propagation_policy="Background", **_RAW
            )
        )

    def read_service(self, name: str) -> dict | None:
        return _missing_is_none(
            lambda: self.core.read_namespaced_service(name, self.namespace, **_RAW)
        )

    def create_service(self, body: dict) -> dict:
        model = client.V1Service.from_dict(body)
        return _json(self.core.create_namespaced_service(self.namespace, model, **_RAW))

    def patch_service(self, name: str, patch: dict) -> dict:
        # A JSON merge patch replaces the ports list whole (a strategic merge would keep an
        # old port next to the new one).
        return _json(
            self.core.patch_namespaced_service(
                name,
                self.namespace,
                patch,
                _content_type="application/merge-patch+json",
                **_RAW,
            )
        )

    def delete_service(self, name: str) -> None:
        _missing_is_none(lambda: self.core.delete_namespaced_service(name, self.namespace, **_RAW))

    def list_pods(self, selector: str) -> list[dict]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, limit=20, **_RAW
        )
        return _json(response).get("items") or []

    def explain(self, exc: BaseException, doing: str) -> DeployError:
        """An API or network error as a sentence a user can act on, without the token."""
        where = f"the Kubernetes API at {self.host}"
        where_ = where[0].upper() + where[1:]
        tls_hint = (
            "Set target ca_cert to the cluster's CA certificate file (verify_ssl: false turns "
            "the check off, for a test cluster only)."
        )
        if isinstance(exc, ApiException):
            said = _status_message(exc)
            if exc.status == 401:
                message = (
                    f"{where_} refused the credentials (401 Unauthorized) while {doing}: set a "
                    f"valid service-account token in the environment's secret variable "
                    f"{TOKEN_VARIABLE}."
                )
            elif exc.status == 403:
                message = (
                    f"{where_} forbids it (403) while {doing}: {said}. The token's service "
                    f"account needs get, create, update, patch and delete on deployments and "
                    f"services in namespace {self.namespace} (see docs/kubernetes.md)."
                )
            elif exc.status == 404:
                message = (
                    f"{where_} answered 404 while {doing}: {said}. Does namespace "
                    f"{self.namespace} exist, and is api_url the API server's address?"
                )
            elif exc.status == 0:  # the client's way of saying TLS failed
                message = f"TLS with {where} failed while {doing}: {exc.reason}. {tls_hint}"
            else:
                message = f"{where_} answered {exc.status} {exc.reason} while {doing}: {said}"
        elif isinstance(getattr(exc, "reason", exc), urllib3.exceptions.SSLError):
            message = f"TLS with {where} failed while {doing}: {_network_reason(exc)}. {tls_hint}"
        else:
            message = f"Cannot reach {where} while {doing}: {_network_reason(exc)}"
        return DeployError(self.scrub(message))

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


class _Explained:
    """``with cluster.explained("doing X"):`` turns API and network errors into DeployError."""

    def __init__(self, cluster: _Cluster, doing: str):
        self.cluster, self.doing = cluster, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, (ApiException, *NETWORK_ERRORS)):
            raise self.cluster.explain(exc, self.doing) from None
        return False


_RAW = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}


def _json(response: Any) -> dict:
    data = response.data  # reads the whole body
    if hasattr(response, "release_conn"):
        response.release_conn()  # back to the pool: read unparsed, it is not released alone
    return json.loads(data or b"{}")


def _missing_is_none(call: Any) -> dict | None:
    try:
        return _json(call())
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _status_message(exc: ApiException) -> str:
    """The ``message`` of the Status object the API server sends with an error."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "no message")


def _network_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    marker = "Failed to establish a new connection: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip() or exc.__class__.__name__


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, NETWORK_ERRORS)


def _is_ours(obj: Mapping) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(L_MANAGED_BY) == MANAGED_BY


def _image(template: Mapping) -> str:
    containers = (template.get("spec") or {}).get("containers") or []
    return containers[0].get("image", "") if containers else ""


# --- the rollout --------------------------------------------------------------------------

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


class _Rollout:
    """One deploy: apply, wait, and roll back; with its bookkeeping."""

    def __init__(self, cluster: _Cluster, request: DeployRequest, settings: _Settings):
        self.cluster = cluster
        self.request = request
        self.settings = settings
        self.log = request.log
        self.name = resource_name(request.project, request.environment)
        self.port = request.port or DEFAULT_PORT
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
        if self.previous is not None and not _is_ours(self.previous):
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
        ok, message, current = self._wait(deadline, expected_generation=_generation(applied))
        self.timings["rollout_seconds"] = round(time.monotonic() - rollout_started, 3)
        if not ok:
            self._fail(message, current)
        self.timings["total_seconds"] = round(time.monotonic() - started, 3)
        meta, status = current.get("metadata") or {}, current.get("status") or {}
        url = self.settings.service_url or (
            f"http://{self.name}.{self.settings.namespace}.svc:{self.port}"
        )
        self.log(f"kubernetes: {req.release} rolled out in {self.timings['rollout_seconds']} s")
        return DeployResult(url=url, details=self._details(meta, status))

    # The Service -----------------------------------------------------------------------------

    def _desired_service(self) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": self.name,
                "namespace": self.settings.namespace,
                # No release label: the Service outlives releases (and is not patched by each).
                "labels": self._labels(release=False),
            },
            "spec": {
                "type": self.settings.service_type,
                "selector": self._selector(),
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": self.port, "targetPort": self.port}
                ],
            },
        }

    def _apply_service(self) -> None:
        desired = self._desired_service()
        doing = f"applying service {self.where}"
        with self.cluster.explained(doing):
            existing = self.cluster.read_service(self.name)
            if existing is None:
                self.cluster.create_service(desired)
                self.service_changed = True
                self.log(f"kubernetes: created service {self.where} ({self.settings.service_type})")
                return
            if not _is_ours(existing):
                raise DeployError(
                    f"A Service {self.where} exists that the control plane did not create: "
                    "delete it or deploy to another namespace."
                )
            self.service_before = existing
            patch = _service_patch(existing, desired)
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
        except (ApiException, *NETWORK_ERRORS) as exc:
            return f" Its Service could not be put back: {self.cluster.explain(exc, 'undoing')}"

    # The Deployment --------------------------------------------------------------------------

    def _labels(self, *, release: bool = True) -> dict[str, str]:
        req = self.request
        labels = {
            L_NAME: self.name,
            L_MANAGED_BY: MANAGED_BY,
            L_PROJECT: label_value(req.project),
            L_ENVIRONMENT: label_value(req.environment),
        }
        if release:
            labels[L_RELEASE] = label_value(req.release)
        return labels

    def _selector(self) -> dict[str, str]:
        # Never the release: a Deployment's selector cannot change after it is created.
        return {L_NAME: self.name, L_MANAGED_BY: MANAGED_BY}

    def _annotations(self) -> dict[str, str]:
        return {
            A_DEPLOYMENT: str(self.request.deployment_id),
            A_COMMIT: self.request.commit_sha,
        }

    def _desired_deployment(self) -> dict:
        req, settings, port = self.request, self.settings, self.port
        env = {**req.env, "PORT": str(port)}
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
                "name": self.name,
                "namespace": settings.namespace,
                "labels": self._labels(),
                "annotations": self._annotations(),
            },
            "spec": {
                "replicas": settings.replicas,
                "revisionHistoryLimit": settings.revision_history_limit,
                "progressDeadlineSeconds": max(1, req.health_timeout),
                "selector": {"matchLabels": self._selector()},
                # No old pod stops before a new one is ready.
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": {
                    "metadata": {
                        # The deployment id makes every deploy a new rollout, a redeploy too.
                        "labels": {
                            **self._labels(),
                            L_DEPLOYMENT: label_value(req.deployment_id),
                        },
                        "annotations": self._annotations(),
                    },
                    "spec": pod_spec,
                },
            },
        }

    def _apply_deployment(self) -> dict:
        desired = self._desired_deployment()
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
                            self.name, _replacement(self.previous, desired)
                        )
                        self.log(
                            f"kubernetes: updated deployment {self.where} (generation "
                            f"{_generation(applied)}, was {self._previous_release()})"
                        )
                    return applied
                except ApiException as exc:
                    # 409: changed (or created) since it was read; read it again and retry.
                    if exc.status != 409 or attempt >= CONFLICT_RETRIES:
                        raise
                attempt += 1
                self.log(f"kubernetes: deployment {self.where} changed meanwhile, retrying")
                self.previous = self.cluster.read_deployment(self.name)
                if self.previous is not None and not _is_ours(self.previous):
                    raise DeployError(
                        f"A Deployment {self.where} was created meanwhile by someone else."
                    )

    def _previous_release(self) -> str:
        labels = ((self.previous or {}).get("metadata") or {}).get("labels") or {}
        return labels.get(L_RELEASE) or "an unlabelled release"

    # Waiting ---------------------------------------------------------------------------------

    def _wait(self, deadline: float, *, expected_generation: int) -> tuple[bool, str, dict]:
        """Poll until the rollout is done, failed, or the deadline passes."""
        last_line, last_logged, current = "", 0.0, {}
        message = "no answer from the API server yet"
        while True:
            try:
                read = self.cluster.read_deployment(self.name)
            except (ApiException, *NETWORK_ERRORS) as exc:
                error = self.cluster.explain(exc, f"waiting for deployment {self.where}")
                if not _is_transient(exc):
                    return False, str(error), current
                message = str(error)  # a blip: the next poll may get through
            else:
                if read is None:
                    return False, f"deployment {self.where} was deleted meanwhile", current
                current = read
                state, message = rollout_state(current)
                if _generation(current) < expected_generation:
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
        details = self._details(current.get("metadata") or {}, current.get("status") or {})
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
            rollback_started + req.health_timeout, expected_generation=_generation(restored)
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
                body = copy.deepcopy(previous)
                body.pop("status", None)
                meta = body.setdefault("metadata", {})
                for key in ("resourceVersion", "uid", "generation", "creationTimestamp"):
                    meta.pop(key, None)
                meta.pop("managedFields", None)
                return self.cluster.create_deployment(body)
            try:
                return self.cluster.replace_deployment(self.name, _rollback(previous, current))
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
        selector = f"{L_NAME}={self.name},{L_DEPLOYMENT}={label_value(self.request.deployment_id)}"
        try:
            pods = self.cluster.list_pods(selector)
        except (ApiException, *NETWORK_ERRORS):
            return ""
        problems: list[str] = []
        for pod in pods:
            for problem in _pod_problem_lines(pod):
                if problem not in problems:
                    problems.append(problem)
        return f" (pods: {'; '.join(problems[:3])})" if problems else ""

    def _details(self, meta: Mapping, status: Mapping) -> dict:
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
            "revision": (meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""),
            "timings": dict(self.timings),
        }


def _generation(obj: Mapping) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _replacement(current: Mapping, desired: Mapping) -> dict:
    """The desired Deployment as a PUT over ``current``: its resourceVersion (a conflict if it
    changed since), its other labels and annotations kept (the controller's revision, too)."""
    body = copy.deepcopy(dict(desired))
    meta, old = body["metadata"], current.get("metadata") or {}
    meta["resourceVersion"] = old.get("resourceVersion")
    meta["labels"] = {**(old.get("labels") or {}), **meta["labels"]}
    meta["annotations"] = {**(old.get("annotations") or {}), **meta["annotations"]}
    return body


def _rollback(previous: Mapping, current: Mapping) -> dict:
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


def _service_patch(existing: Mapping, desired: Mapping) -> dict | None:
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


def _pod_problem_lines(pod: Mapping) -> list[str]:
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
